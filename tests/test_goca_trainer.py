"""The GOCA trainer's step: prior / queue variants, the SwAV queue fills FIFO and then joins the Sinkhorn step."""

import importlib.util
import os

import jax
import numpy as np
from flax import nnx

from fedvssl_jax.goca import runner as goca_trainer
from fedvssl_jax.core import mesh as mesh_lib
from fedvssl_jax.core import state as state_lib

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


def _goca_queue_use(epoch_queue_starts, queue_length, batch, steps_per_epoch, epochs):
  """GOCA's ssv_main.py / compute_ot_loss, step by step: the zero queue is made at the start of the first epoch
  >= epoch_queue_starts, is used once its last row is non-zero (checked before this step's push), then pushed."""
  queue, used, pushed = None, [], []
  for epoch in range(epochs):
    if queue_length > 0 and epoch >= epoch_queue_starts and queue is None:
      queue = np.zeros(queue_length)
    use_the_queue = False
    for _ in range(steps_per_epoch):
      use = queue is not None and (use_the_queue or bool(queue[-1] != 0))
      use_the_queue = use_the_queue or use
      used.append(use)
      pushed.append(queue is not None)
      if queue is not None:
        queue = np.concatenate([np.ones(batch), queue[:-batch]])
  return used, pushed


def test_queue_start_matches_goca():
  """Queue pushed from epoch_queue_starts, used from epoch_queue_starts * steps_per_epoch + L / B (GOCA), not from
  max(epoch_queue_starts * steps_per_epoch, L / B)."""
  config = _config()
  for starts, length in ((1, 16), (0, 16), (2, 24), (1, 8)):
    config.goca.update(dict(epoch_queue_starts=starts, queue_length=length))
    used, pushed = _goca_queue_use(starts, length, config.batch_size, steps_per_epoch=4, epochs=5)
    variants = [goca_trainer.step_variant(config, n, 4, 20) for n in range(20)]
    assert [v[2] for v in variants] == used, (starts, length)
    assert [v[1] for v in variants] == pushed, (starts, length)
  config.goca.queue_length = 0
  assert not any(goca_trainer.step_variant(config, n, 4, 20)[1] for n in range(20))


def test_single_stream_and_avg_merge_losses():
  """modality=rgb|flow: one backbone, SwAV on its scores; merge=avg (AvgRgbFlow): SwAV on the scores of
  head((h_rgb + h_flow) / 2). Each loss equals `swav_loss` of the scores the model gives."""
  from fedvssl_jax.losses import goca as goca_losses

  rng = np.random.default_rng(3)
  batch = _batch(rng)
  prototypes = rng.normal(size=(16, 8)).astype(np.float32)
  for modality, merge in (("rgb", "prior"), ("flow", "prior"), ("rgb_flow", "avg")):
    config = _config()
    config.goca.update(dict(modality=modality, merge=merge, queue_length=0))
    model = goca_trainer.build_model(config, nnx.Rngs(0), prototypes=prototypes)
    streams = goca_trainer.model_streams(config)
    assert set(nnx.to_pure_dict(nnx.state(model))["backbone"]) == set(streams)
    rgb_keys, flow_keys = goca_trainer.view_keys(config)
    assert bool(rgb_keys) == ("rgb" in streams) and bool(flow_keys) == ("flow" in streams)
    model.eval()  # BN on running statistics, so two calls give the same scores
    loss, metrics = goca_trainer.make_loss_fn(config, use_prior=True)(model, batch, None)
    out = model([batch[k] for k in rgb_keys] or None, [batch[k] for k in flow_keys] or None)
    scores = out["scores"] if merge == "avg" else out[f"scores_{modality}"]
    ref, _ = goca_losses.swav_loss(scores, assign_views=(0, 1), epsilon=config.goca.epsilon, num_iters=3)
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-5)
    assert "protos_used" in metrics
    if merge == "avg":
      h = (out["h_rgb"] + out["h_flow"]) / 2
      z = model.head(h.reshape(-1, h.shape[-1]))
      z = z / np.linalg.norm(z, axis=-1, keepdims=True)
      c = prototypes / np.linalg.norm(prototypes, axis=1, keepdims=True)
      np.testing.assert_allclose(np.asarray(scores).reshape(-1, 16), np.asarray(z) @ c.T, atol=1e-5)


def test_rgb_only_train_step_with_queue():
  config = _config()
  config.goca.update(dict(modality="rgb", queue_length=16, epoch_queue_starts=0))
  mesh = mesh_lib.make_mesh([("data", -1)])
  model = goca_trainer.build_model(config, nnx.Rngs(0), prototypes=np.eye(16, 8, dtype=np.float32) + 0.1)
  goca_trainer.add_queue(model, config)
  model.train()
  tx, _ = goca_trainer.make_tx(config, steps_per_epoch=4, total_steps=8)
  graphdef, state = state_lib.create_train_state(model, tx, mesh)
  step = goca_trainer.make_step_dispatch(config, graphdef, tx, mesh, steps_per_epoch=4, total_steps=8)
  batch = {k: v for k, v in _batch(np.random.default_rng(2)).items() if k.startswith("rgb")}
  state, metrics = step(state, mesh_lib.put_batch(batch, mesh), jax.random.key(0))
  queue = np.asarray(jax.device_get(nnx.to_pure_dict(state.rest)["queue"]))
  assert queue.shape == (1, 2, 16, 8) and queue[:, :, :8].any(axis=-1).all() and not queue[:, :, 8:].any()
  assert np.isfinite(float(metrics["loss"]))


def test_config_variants():
  spec = importlib.util.spec_from_file_location("goca_config", os.path.join(REPO, "configs", "goca.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  rgb = module.get_config("demo,modality=rgb")
  assert rgb.goca.modality == "rgb" and not rgb.data.with_flow and goca_trainer.model_streams(rgb) == ("rgb",)
  flow = module.get_config("demo,modality=flow")
  assert flow.data.with_flow and goca_trainer.model_streams(flow) == ("flow",)
  avg = module.get_config("demo,merge=avg")
  assert avg.goca.merge == "avg" and goca_trainer.queue_streams(avg) == 1
  assert module.get_config("demo").goca.sinkhorn_cycle == 1
  import pytest
  with pytest.raises(ValueError, match="modality"):
    module.get_config("demo,modality=depth")
  bad = module.get_config("demo,modality=rgb")
  bad.goca.merge = "avg"
  with pytest.raises(Exception, match="merge"):
    goca_trainer.model_streams(bad)


def test_knn_model_features_head_and_prototypes():
  """knn.feature=head|prototypes: GOCA's KNN_all `x` (normalised projection) and `prots` (x C^T); two streams give
  [avg (head of the averaged backbone features, shared head), rgb, flow]."""
  config = _config()
  mesh = mesh_lib.make_mesh([("data", -1)])
  rng = np.random.default_rng(5)
  protos = rng.normal(size=(16, 8)).astype(np.float32)
  model = goca_trainer.build_model(config, nnx.Rngs(0), prototypes=protos)
  batch = {"video": rng.normal(size=(8, 2, 4, 16, 16, 3)).astype(np.float32),
           "flow": rng.normal(size=(8, 2, 4, 16, 16, 3)).astype(np.float32)}
  head = np.asarray(goca_trainer.model_view_features(model, "head", mesh)(mesh_lib.put_batch(batch, mesh)))
  prots = np.asarray(goca_trainer.model_view_features(model, "prototypes", mesh)(mesh_lib.put_batch(batch, mesh)))
  assert head.shape == (8, 2, 3, 8) and prots.shape == (8, 2, 3, 16)
  np.testing.assert_allclose(np.linalg.norm(head, axis=-1), 1.0, rtol=1e-5)
  c = protos / np.linalg.norm(protos, axis=1, keepdims=True)
  np.testing.assert_allclose(prots, head @ c.T, atol=1e-5)
  model.eval()
  h_r = model.backbone.rgb(batch["video"].reshape(16, 4, 16, 16, 3))
  h_f = model.backbone.flow(batch["flow"].reshape(16, 4, 16, 16, 3))
  z = np.asarray(model.head((h_r + h_f) / 2))
  np.testing.assert_allclose(head[:, :, 0].reshape(16, 8), z / np.linalg.norm(z, axis=-1, keepdims=True), atol=1e-5)
  z_r = np.asarray(model.head(h_r))
  np.testing.assert_allclose(head[:, :, 1].reshape(16, 8), z_r / np.linalg.norm(z_r, axis=-1, keepdims=True),
                             atol=1e-5)
