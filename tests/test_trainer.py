"""The sharded train step: 8 devices == 1 device, batch divisibility errors, optimiser and schedules."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from fedvssl_jax.config_utils import ConfigError
from fedvssl_jax.core import mesh as mesh_lib
from fedvssl_jax.core import optim
from fedvssl_jax.core import state as state_lib


class TinyVideoNet(nnx.Module):
  """Conv3d + BatchNorm + dropout + linear: every kind of state a real backbone has."""

  def __init__(self, rngs: nnx.Rngs):
    self.conv = nnx.Conv(3, 4, kernel_size=(3, 3, 3), padding=[(1, 1)] * 3, use_bias=False, rngs=rngs)
    self.bn = nnx.BatchNorm(4, momentum=0.9, epsilon=1e-5, rngs=rngs)
    self.fc = nnx.Linear(4, 5, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.bn(self.conv(x)))
    return self.fc(x.mean(axis=(1, 2, 3)))


def _loss(model, batch, rng):
  del rng
  logits = model(batch["video"])
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), {}


def _run_two_steps(num_devices: int):
  mesh = mesh_lib.make_mesh([("data", num_devices)])
  model = TinyVideoNet(nnx.Rngs(0))
  model.train()
  cfg = ml_collections.ConfigDict(dict(lr=0.1, momentum=0.9, weight_decay=1e-4, grad_clip_norm=40.0,
                                       schedule="constant"))
  tx = optim.make_optimizer(cfg, optim.make_schedule(cfg, 10, 10))
  graphdef, state = state_lib.create_train_state(model, tx, mesh)
  step = state_lib.make_train_step(graphdef, tx, _loss, mesh)
  rng = np.random.default_rng(0)
  for i in range(2):
    batch = {"video": rng.normal(size=(8, 4, 6, 6, 3)).astype(np.float32),
             "label": rng.integers(0, 5, size=(8,)).astype(np.int32)}
    state, _ = step(state, mesh_lib.put_batch(batch, mesh), jax.random.key(i))
  return jax.device_get(state)


def test_eight_devices_equal_one_device():
  assert jax.device_count() == 8
  one = _run_two_steps(1)
  eight = _run_two_steps(8)
  flat_one = jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(one.params))
  flat_eight = dict(jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(eight.params)))
  for path, value in flat_one:
    np.testing.assert_allclose(value, flat_eight[path], atol=1e-5, rtol=1e-5, err_msg=str(path))
  bn_one, bn_eight = nnx.to_pure_dict(one.rest)["bn"], nnx.to_pure_dict(eight.rest)["bn"]
  for key in ("mean", "var"):
    # The statistics moved away from their initial values, so the comparison is meaningful.
    assert not np.allclose(bn_one[key], 0.0 if key == "mean" else 1.0)
    np.testing.assert_allclose(bn_one[key], bn_eight[key], atol=1e-5, rtol=1e-5)


def test_batch_not_divisible_by_devices_is_a_clear_error():
  mesh = mesh_lib.make_mesh([("data", -1)])
  with pytest.raises(ConfigError, match="not divisible by the 8 devices"):  # a one-line error in main
    mesh_lib.check_batch_size(12, mesh)
  with pytest.raises(ValueError, match="'video' has 6 rows, not divisible"):
    mesh_lib.put_batch({"video": np.zeros((6, 2), np.float32)}, mesh)


def test_mesh_spec_errors():
  with pytest.raises(ValueError, match="needs 16 devices"):
    mesh_lib.make_mesh([("data", 16)])
  assert mesh_lib.make_mesh([("data", 2)]).shape["data"] == 2


def test_sgd_matches_pytorch_update_rule():
  """clip -> + wd * w -> momentum buffer -> w -= lr * buf, as torch SGD behind mmcv's OptimizerHook."""
  cfg = ml_collections.ConfigDict(dict(lr=0.5, momentum=0.9, weight_decay=0.1, grad_clip_norm=1.0,
                                       schedule="constant"))
  tx = optim.make_optimizer(cfg, optim.make_schedule(cfg, 1, 1))
  w = {"w": jnp.array([1.0, -2.0])}
  g = {"w": jnp.array([3.0, 4.0])}  # norm 5 -> clipped to norm 1
  opt_state = tx.init(w)
  buf = np.zeros(2)
  w_ref = np.array([1.0, -2.0])
  for _ in range(2):
    updates, opt_state = tx.update(g, opt_state, w)
    w = optax.apply_updates(w, updates)
    d = np.array([3.0, 4.0]) / 5.0 + 0.1 * w_ref
    buf = 0.9 * buf + d
    w_ref = w_ref - 0.5 * buf
    np.testing.assert_allclose(w["w"], w_ref, rtol=1e-5, atol=1e-6)


def test_adamw_matches_pytorch_update_rule():
  """clip -> torch AdamW: w -= lr * wd * w; m, v moments; w -= lr * m_hat / (sqrt(v_hat) + eps)."""
  cfg = ml_collections.ConfigDict(dict(name="adamw", lr=0.1, weight_decay=0.01, grad_clip_norm=1.0,
                                       schedule="constant"))
  tx = optim.make_optimizer(cfg, optim.make_schedule(cfg, 1, 1))
  w = {"w": jnp.array([1.0, -2.0])}
  opt_state = tx.init(w)
  w_ref, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
  for t, g in enumerate(([3.0, 4.0], [0.3, -0.1], [-1.0, 0.5]), start=1):
    updates, opt_state = tx.update({"w": jnp.array(g)}, opt_state, w)
    w = optax.apply_updates(w, updates)
    g = np.array(g) / max(1.0, float(np.linalg.norm(g)))
    w_ref = w_ref - 0.1 * 0.01 * w_ref
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    w_ref = w_ref - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(w["w"], w_ref, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="config.optim.name.*known: sgd, adamw"):
    optim.make_optimizer(ml_collections.ConfigDict(dict(name="adam", lr=1.0)), optax.constant_schedule(1.0))


def test_local_trainer_schedule_counts_the_clients_epochs():
  """A federated client's `warmup_epochs` / `step_epochs` are epochs of its own videos, not fractions of the round
  (5 steps per epoch, a 4-epoch round of 20 steps: the warm-up of 1 epoch ends at step 5)."""
  from fedvssl_jax.federated.task_trainer import TaskLocalTrainer, TaskSpec

  config = ml_collections.ConfigDict(dict(
      seed=0, mesh=[("data", 1)], batch_size=2,
      optim=dict(name="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, grad_clip_norm=0.0, schedule="warmup_cosine",
                 warmup_epochs=1.0, warmup_start_lr=0.0, final_lr=0.0)))
  trainer = TaskLocalTrainer(config, TaskSpec(make_model=lambda rngs: nnx.Linear(2, 2, rngs=rngs), loss_fn=None,
                                              builder=None))
  _, schedule = trainer._tx_and_schedule(steps_per_epoch=5, total_steps=20)
  np.testing.assert_allclose([schedule(0), schedule(5), schedule(20)], [0.0, 1.0, 0.0], atol=1e-6)
  config.optim.update(dict(schedule="step", step_epochs=[2], step_factor=0.1))
  _, schedule = trainer._tx_and_schedule(steps_per_epoch=5, total_steps=20)
  np.testing.assert_allclose([schedule(9), schedule(10)], [1.0, 0.1], rtol=1e-6)


def test_schedules():
  cfg = ml_collections.ConfigDict(dict(lr=0.01, schedule="step", step_epochs=[2, 4], step_factor=0.1))
  s = optim.make_schedule(cfg, steps_per_epoch=10, total_steps=60)
  np.testing.assert_allclose([s(0), s(19), s(20), s(39), s(40)], [0.01, 0.01, 0.001, 0.001, 0.0001], rtol=1e-6)
  cfg = ml_collections.ConfigDict(dict(lr=1.0, schedule="warmup_cosine", warmup_epochs=1, warmup_start_lr=0.0,
                                       final_lr=0.1))
  s = optim.make_schedule(cfg, steps_per_epoch=10, total_steps=100)
  assert float(s(0)) == 0.0 and abs(float(s(10)) - 1.0) < 1e-6 and abs(float(s(100)) - 0.1) < 1e-6
  with pytest.raises(ValueError, match="config.optim.schedule"):
    optim.make_schedule(ml_collections.ConfigDict(dict(lr=1.0, schedule="cosnie")), 1, 1)


class _NoiseClips:
  """A clip builder that ignores the video's frames: rng noise [4, 6, 6, 3] and the record's label mod 5."""
  min_frames = 1

  def build(self, reader, record, rng):
    del reader
    return {"video": rng.normal(size=(4, 6, 6, 3)).astype(np.float32), "label": np.int32(record["label"] % 5)}


def test_federated_client_on_eight_devices_equals_one_device(synthetic_videos, tmp_path):
  """A SuperNode's local trainer owning several devices: the client's batch split over 8 devices with global
  BatchNorm statistics gives the 1-device round (same data order, same updated arrays)."""
  from fedvssl_jax.config_utils import data_config, federated_config
  from fedvssl_jax.federated.task_trainer import TaskLocalTrainer, TaskSpec

  results = []
  for devices in (1, 8):
    config = ml_collections.ConfigDict(dict(
        seed=0, mesh=[("data", devices)], batch_size=8, data=data_config("synthetic"), federated=federated_config(True),
        optim=dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, grad_clip_norm=0.0, schedule="constant")))
    config.data.update(dict(synthetic_preset="test", cache_dir=str(synthetic_videos), num_workers=0))
    config.federated.max_steps_per_round = 2
    trainer = TaskLocalTrainer(config, TaskSpec(make_model=TinyVideoNet, loss_fn=_loss, builder=_NoiseClips(),
                                                batch_keys=("video", "label")))
    assert trainer.mesh.devices.size == devices
    init = trainer.initial_arrays()
    results.append(trainer.train(0, init, server_round=1, local_epochs=4, workdir=str(tmp_path)))
  one, eight = results
  assert one.metrics["steps"] == eight.metrics["steps"] == 2
  np.testing.assert_allclose(eight.mean_loss, one.mean_loss, rtol=1e-5)
  assert one.arrays.keys() == eight.arrays.keys()
  for k in one.arrays:
    np.testing.assert_allclose(eight.arrays[k], one.arrays[k], rtol=1e-5, atol=1e-5, err_msg=k)
  changed = {k for k in init if not np.array_equal(one.arrays[k], init[k])}
  assert {k for k in init if "kernel" in k or "mean" in k} <= changed, sorted(changed)  # trained, BN stats updated
