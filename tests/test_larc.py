"""apex-LARC transform, GOCA optimiser (LARC + SGD momentum, frozen leaves) and schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fedvssl_jax.goca import larc as larc_lib


def _tree(seed):
  rng = np.random.default_rng(seed)
  return {
      "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 4)), jnp.float32),
               "bias": jnp.asarray(rng.normal(size=(4,)) * 0.1, jnp.float32)},
      "zero": jnp.zeros((5,), jnp.float32),
  }


def np_larc(g, w, trust, wd, eps, clip=False, lr=None):
  g = np.asarray(g, np.float64)
  w = np.asarray(w, np.float64)
  wn, gn = np.linalg.norm(w), np.linalg.norm(g)
  if wn == 0 or gn == 0:
    return g
  local = trust * wn / (gn + wd * wn + eps)
  if clip:
    local = min(local / lr, 1.0)
  return (g + wd * w) * local


def test_larc_matches_formula():
  params, grads = _tree(0), _tree(1)
  tx = larc_lib.larc(trust_coefficient=0.001, weight_decay=1e-4)
  upd, _ = tx.update(grads, tx.init(params), params)
  for path in [("conv", "kernel"), ("conv", "bias")]:
    g = grads[path[0]][path[1]]
    w = params[path[0]][path[1]]
    np.testing.assert_allclose(np.asarray(upd[path[0]][path[1]]), np_larc(g, w, 0.001, 1e-4, 1e-8), rtol=1e-5)
  # Zero weights: apex leaves the gradient untouched (no adaptation, no weight decay).
  np.testing.assert_array_equal(np.asarray(upd["zero"]), np.asarray(grads["zero"]))


def test_larc_clip_mode():
  params, grads = _tree(2), _tree(3)
  for lr in (1e-5, 10.0):  # clipped (local/lr > 1 -> 1) and unclipped
    tx = larc_lib.larc(trust_coefficient=0.02, clip=True, weight_decay=1e-4, learning_rate=lr)
    upd, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(upd["conv"]["kernel"]),
                               np_larc(grads["conv"]["kernel"], params["conv"]["kernel"], 0.02, 1e-4, 1e-8, True, lr),
                               rtol=1e-5)
  with pytest.raises(ValueError, match="learning_rate"):
    larc_lib.larc(clip=True)


def test_goca_optimizer_two_steps_against_numpy():
  params, g1, g2 = _tree(4), _tree(5), _tree(6)
  sched = lambda step: 0.5 / (1.0 + step)  # noqa: E731
  tx = larc_lib.goca_optimizer(sched, momentum=0.9, weight_decay=1e-4, trust=0.001)
  state = tx.init(params)
  p = params
  w = np.asarray(params["conv"]["kernel"], np.float64)
  buf = np.zeros_like(w)
  for step, g in enumerate([g1, g2]):
    upd, state = tx.update(g, state, p)
    p = optax.apply_updates(p, upd)
    buf = 0.9 * buf + np_larc(g["conv"]["kernel"], w, 0.001, 1e-4, 1e-8)
    w = w - sched(step) * buf
    np.testing.assert_allclose(np.asarray(p["conv"]["kernel"]), w, rtol=1e-5)


def test_frozen_mask_on_nnx_state():
  class Tiny(nnx.Module):

    def __init__(self, rngs):
      self.lin = nnx.Linear(4, 3, rngs=rngs)
      self.prototypes = nnx.Param(jnp.ones((5, 3)) / np.sqrt(3))

  model = Tiny(nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  tx = larc_lib.goca_optimizer(0.1, frozen_mask=larc_lib.path_mask)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  upd, _ = tx.update(grads, state, params)
  upd = nnx.to_pure_dict(upd)
  assert float(jnp.abs(upd["prototypes"]).max()) == 0.0
  assert float(jnp.abs(upd["lin"]["kernel"]).max()) > 0.0


def test_schedule():
  sched = larc_lib.goca_schedule(base_lr=0.15, global_batch=64, warmup_steps=11, total_steps=111,
                                 start_warmup=0.3, final_lr=0.0006)
  peak = 0.15 * 8
  np.testing.assert_allclose(float(sched(0)), 0.3, rtol=1e-6)
  np.testing.assert_allclose(float(sched(5)), 0.3 + (peak - 0.3) * 0.5, rtol=1e-6)
  np.testing.assert_allclose(float(sched(10)), peak, rtol=1e-6)
  np.testing.assert_allclose(float(sched(11)), peak, rtol=1e-6)  # cosine starts at the peak
  np.testing.assert_allclose(float(sched(61)), (peak + 0.0006) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(sched(111)), 0.0006, rtol=1e-4)
  np.testing.assert_allclose(float(sched(500)), 0.0006, rtol=1e-4)
  lrs = np.array([float(sched(s)) for s in range(11, 112)])
  assert np.all(np.diff(lrs) <= 1e-7)
  with pytest.raises(ValueError, match="warmup_steps"):
    larc_lib.goca_schedule(0.1, 8, 20, 10)
