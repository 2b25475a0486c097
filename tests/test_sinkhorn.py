"""Sinkhorn-Knopp (plain and prior-guided): marginals, a dense reference, sharding, prior sign, stability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from fedvssl_jax.losses import goca


def dense_sinkhorn(scores, epsilon, num_iters, prior=None, epsilon2=0.0, sign=1):
  """SwAV's `distributed_sinkhorn` on one device, written out densely in float64 (the reference)."""
  s = np.asarray(scores, np.float64)
  b, k = s.shape
  if prior is None:
    kern = s / epsilon
  else:
    p = np.maximum(np.asarray(prior, np.float64), 1e-30)
    kern = (s + sign * epsilon2 * np.log(p / b)) / (epsilon + epsilon2)
  q = np.exp(kern - kern.max()).T  # K x B; the constant shift cancels in the first normalisation
  q /= q.sum()
  for _ in range(num_iters):
    q /= q.sum(axis=1, keepdims=True)
    q /= k
    q /= q.sum(axis=0, keepdims=True)
    q /= b
  return (q * b).T


def _scores(seed, b, k, scale=1.0):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(b, 16))
  c = rng.normal(size=(k, 16))
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  c /= np.linalg.norm(c, axis=1, keepdims=True)
  return (scale * z @ c.T).astype(np.float32)


@pytest.mark.parametrize("epsilon,iters", [(0.05, 3), (0.02, 3), (0.1, 1), (0.05, 0)])
def test_matches_dense_reference(epsilon, iters):
  s = _scores(0, 32, 10)
  q = np.asarray(goca.sinkhorn(jnp.asarray(s), epsilon, iters))
  ref = dense_sinkhorn(s, epsilon, iters)
  np.testing.assert_allclose(q, ref, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("sign", [1, -1])
def test_prior_matches_dense_reference(sign):
  s = _scores(1, 24, 8)
  prior = np.asarray(goca.sinkhorn(jnp.asarray(_scores(2, 24, 8)), 0.05, 3))
  q = np.asarray(goca.sinkhorn_with_prior(jnp.asarray(s), jnp.asarray(prior), 0.05, 0.03, 3, prior_sign=sign))
  ref = dense_sinkhorn(s, 0.05, 3, prior=prior, epsilon2=0.03, sign=sign)
  np.testing.assert_allclose(q, ref, rtol=2e-4, atol=1e-6)


def test_marginals():
  b, k = 40, 8
  s = jnp.asarray(_scores(3, b, k))
  q = np.asarray(goca.sinkhorn(s, 0.05, 3))
  np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)
  assert np.all(q >= 0)
  # With enough iterations the prototype masses converge to B/K (equipartition).
  q = np.asarray(goca.sinkhorn(s, 0.05, 200))
  np.testing.assert_allclose(q.sum(axis=0), b / k, rtol=1e-3)
  np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)


def test_bfloat16_input_and_stop_gradient():
  s = jnp.asarray(_scores(4, 16, 8))
  q = goca.sinkhorn(s.astype(jnp.bfloat16), 0.05, 3)
  assert q.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(q).sum(axis=1), 1.0, rtol=1e-5)
  g = jax.grad(lambda x: jnp.sum(goca.sinkhorn(x, 0.05, 3) * x))(s)
  # Only the explicit `* x` contributes: d/dx sum(q * x) = q when q is stop-gradient.
  np.testing.assert_allclose(np.asarray(g), np.asarray(goca.sinkhorn(s, 0.05, 3)), rtol=1e-6)


def test_no_overflow_with_large_scores_and_small_epsilon():
  s = jnp.asarray(_scores(5, 32, 10, scale=50.0))
  q = goca.sinkhorn(s, 0.02, 3)
  assert bool(jnp.all(jnp.isfinite(q)))
  np.testing.assert_allclose(np.asarray(q).sum(axis=1), 1.0, rtol=1e-5)
  # A one-hot-ish prior with exact zeros (underflow) must not produce inf / NaN in either sign.
  prior = jax.nn.one_hot(jnp.argmax(s, axis=1), 10)
  for sign in (1, -1):
    qp = goca.sinkhorn_with_prior(s, prior, 0.02, 0.03, 3, prior_sign=sign)
    assert bool(jnp.all(jnp.isfinite(qp))), sign
    np.testing.assert_allclose(np.asarray(qp).sum(axis=1), 1.0, rtol=1e-5)


def test_sharded_equals_single_device():
  n = jax.device_count()
  assert n == 8, "conftest sets 8 emulated devices"
  mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharding = NamedSharding(mesh, P("data"))
  s = _scores(6, 64, 12)
  prior = np.asarray(goca.sinkhorn(jnp.asarray(_scores(7, 64, 12)), 0.05, 3))

  def f(x, p):
    return goca.sinkhorn(x, 0.05, 3), goca.sinkhorn_with_prior(x, p, 0.05, 0.03, 3, prior_sign=1)

  single = jax.jit(f)(jnp.asarray(s), jnp.asarray(prior))
  xs = jax.device_put(jnp.asarray(s), sharding)
  ps = jax.device_put(jnp.asarray(prior), sharding)
  sharded = jax.jit(f)(xs, ps)
  assert sharded[0].sharding.is_equivalent_to(sharding, 2) or len(sharded[0].sharding.device_set) == n
  for a, b in zip(single, sharded):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
  # A per-device (local) Sinkhorn would differ: the equipartition must be global.
  local = np.concatenate([dense_sinkhorn(s[i * 8:(i + 1) * 8], 0.05, 3) for i in range(n)])
  assert not np.allclose(local, np.asarray(single[0]), atol=1e-4)

  # shard_map bodies use explicit collectives over axis_name.
  def body(x, p):
    return (goca.sinkhorn(x, 0.05, 3, axis_name="data"),
            goca.sinkhorn_with_prior(x, p, 0.05, 0.03, 3, prior_sign=1, axis_name="data"))

  mapped = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P("data"), P("data")),
                                 out_specs=(P("data"), P("data"))))(xs, ps)
  for a, b in zip(single, mapped):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_prior_sign_effect_on_agreement():
  # GOCA script values: epsilon 0.02, epsilon2 0.03.
  b, k = 256, 20
  s_rgb = jnp.asarray(_scores(8, b, k))
  s_flow = jnp.asarray(_scores(9, b, k))
  p_flow = goca.sinkhorn(s_flow, 0.02, 3)
  target = np.asarray(jnp.argmax(p_flow, axis=1))

  def agree(q):
    return float(np.mean(np.asarray(jnp.argmax(q, axis=1)) == target))

  base = agree(goca.sinkhorn(s_rgb, 0.02, 3))
  plus = agree(goca.sinkhorn_with_prior(s_rgb, p_flow, 0.02, 0.03, 3, prior_sign=1))
  minus = agree(goca.sinkhorn_with_prior(s_rgb, p_flow, 0.02, 0.03, 3, prior_sign=-1))
  assert plus > base + 0.1, (base, plus)
  assert minus < base - 0.02, (base, minus)


def test_bad_input():
  with pytest.raises(ValueError, match="scores"):
    goca.sinkhorn(jnp.zeros((2, 3, 4)), 0.05, 3)
  with pytest.raises(ValueError, match="prior shape"):
    goca.sinkhorn_with_prior(jnp.zeros((4, 3)), jnp.zeros((4, 2)), 0.05, 0.01, 3)
  with pytest.raises(ValueError, match="prior_sign"):
    goca.sinkhorn_with_prior(jnp.zeros((4, 3)), jnp.ones((4, 3)), 0.05, 0.01, 3, prior_sign=0)
