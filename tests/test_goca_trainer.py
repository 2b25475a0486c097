"""The GOCA trainer's step: prior / queue variants, the SwAV queue fills FIFO and then joins the Sinkhorn step."""

import importlib.util
import os

import jax
import numpy as np
from flax import nnx

from fedvssl_jax.train import goca as goca_trainer
from fedvssl_jax.train import mesh as mesh_lib
from fedvssl_jax.train import state as state_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  spec = importlib.util.spec_from_file_location("goca_config", os.path.join(REPO, "configs", "goca.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("demo")
  config.model.arch = "r3d_18"
  config.model.backbone_kwargs.width_multiplier = 0.0625
  config.model.backbone_kwargs.pool_size = None
  config.model.update(dict(num_prototypes=16, embed_dim=8, hidden_dim=16))
  config.views.update(dict(clip_lens=(4, 2), num_clips=(2, 2), crop_size=16))
  config.batch_size = 8
  config.goca.update(dict(queue_length=16, epoch_queue_starts=0, prior_start_epoch=0))
  return config


def _batch(rng):
  return {"rgb_4": rng.normal(size=(8, 2, 4, 16, 16, 3)).astype(np.float32),
          "rgb_2": rng.normal(size=(8, 2, 2, 16, 16, 3)).astype(np.float32),
          "flow_4": rng.normal(size=(8, 2, 4, 16, 16, 3)).astype(np.float32),
          "flow_2": rng.normal(size=(8, 2, 2, 16, 16, 3)).astype(np.float32)}


def test_queue_fills_fifo_then_joins_sinkhorn():
  config = _config()
  mesh = mesh_lib.make_mesh([("data", -1)])
  prototypes = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
  model = goca_trainer.build_model(config, nnx.Rngs(0), prototypes=prototypes)
  goca_trainer.add_queue(model, config)
  model.train()
  tx, _ = goca_trainer.make_tx(config, steps_per_epoch=4, total_steps=8)
  graphdef, state = state_lib.create_train_state(model, tx, mesh)
  step = goca_trainer.make_step_dispatch(config, graphdef, tx, mesh, steps_per_epoch=4, total_steps=8)
  rng = np.random.default_rng(1)
  queue_of = lambda s: np.asarray(jax.device_get(nnx.to_pure_dict(s.rest)["queue"]))  # noqa: E731

  assert not queue_of(state).any()
  state, _ = step(state, mesh_lib.put_batch(_batch(rng), mesh), jax.random.key(0))
  first = queue_of(state)
  assert first[:, :, :8].any(axis=-1).all() and not first[:, :, 8:].any()   # newest batch at the front
  state, _ = step(state, mesh_lib.put_batch(_batch(rng), mesh), jax.random.key(1))
  second = queue_of(state)
  np.testing.assert_array_equal(second[:, :, 8:], first[:, :, :8])           # FIFO: the older batch moved back
  np.testing.assert_allclose(np.linalg.norm(second, axis=-1), 1.0, rtol=1e-5)  # unit embeddings

  # From step 2 on the queue (full, epoch_queue_starts=0) is part of the Sinkhorn input: the loss differs from the
  # same step without it.
  batch = mesh_lib.put_batch(_batch(rng), mesh)
  with_queue = goca_trainer.make_loss_fn(config, use_prior=True, use_queue=True)
  without = goca_trainer.make_loss_fn(config, use_prior=True, use_queue=False)
  losses = [float(jax.jit(lambda s, b, fn=fn: fn(nnx.merge(graphdef, s.params, s.rest, copy=True), b, None)[0])(
      state, batch)) for fn in (with_queue, without)]
  assert np.isfinite(losses).all() and abs(losses[0] - losses[1]) > 1e-6
  state, metrics = step(state, batch, jax.random.key(2))
  # The dispatch picked the queue variant for step 2 (from its host-side step count, no device sync).
  np.testing.assert_allclose(float(metrics["loss"]), losses[0], rtol=1e-5, atol=1e-6)
  assert abs(float(metrics["loss"]) - losses[1]) > 10 * abs(float(metrics["loss"]) - losses[0])
