"""GOCA loss against a numpy hand computation; metrics; queue helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedvssl_jax.losses import goca


def np_sinkhorn(s, eps, iters, prior=None, eps2=0.0, sign=1):
  b, k = s.shape
  kern = s / eps if prior is None else (s + sign * eps2 * np.log(np.maximum(prior, 1e-30) / b)) / (eps + eps2)
  q = np.exp(kern - kern.max()).T
  q /= q.sum()
  for _ in range(iters):
    q /= q.sum(axis=1, keepdims=True) * k
    q /= q.sum(axis=0, keepdims=True) * b
  return (q * b).T


def np_log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def np_goca_loss(s_rgb, s_flow, assign, tau, eps, eps2, iters, use_prior, sign, divide_twice, queue=None, cycle=1):
  """Section 4.1 of the reference notes, written out with loops (`cycle` = GOCA's --sinkhorn_cycle 1 or 2)."""
  s_rgb = s_rgb.astype(np.float64)
  s_flow = s_flow.astype(np.float64)
  v, b, _ = s_rgb.shape
  total = 0.0
  for i, t in enumerate(assign):
    a_r, a_f = s_rgb[t], s_flow[t]
    if queue is not None:
      a_r = np.concatenate([queue[0, i], a_r])
      a_f = np.concatenate([queue[1, i], a_f])
    if use_prior:
      p_f, p_r = np_sinkhorn(a_f, eps, iters), np_sinkhorn(a_r, eps, iters)
      if cycle == 1:
        q_r = np_sinkhorn(a_r, eps, iters, p_f, eps2, sign)
        q_f = np_sinkhorn(a_f, eps, iters, p_r, eps2, sign)
      else:  # train_utils.py: q_rgb_tmp_2, q_flow_tmp_2, then each guided by the other's second code
        q_r2 = np_sinkhorn(a_r, eps, iters, p_f, eps2, sign)
        q_f2 = np_sinkhorn(a_f, eps, iters, p_r, eps2, sign)
        q_r = np_sinkhorn(a_r, eps, iters, q_f2, eps2, sign)
        q_f = np_sinkhorn(a_f, eps, iters, q_r2, eps2, sign)
    else:
      q_r, q_f = np_sinkhorn(a_r, eps, iters), np_sinkhorn(a_f, eps, iters)
    q_r, q_f = q_r[-b:], q_f[-b:]
    l_r = l_f = 0.0
    for u in range(v):
      if u == t:
        continue
      l_r += -np.mean(np.sum(q_r * np_log_softmax(s_rgb[u] / tau), axis=1))
      l_f += -np.mean(np.sum(q_f * np_log_softmax(s_flow[u] / tau), axis=1))
    total += (l_r / (v - 1) + l_f / (v - 1)) / 2
  total /= len(assign)
  if divide_twice:
    total /= len(assign)
  return total


def _views(seed, v=6, b=8, k=12, d=8):
  rng = np.random.default_rng(seed)
  c = rng.normal(size=(k, d))
  c /= np.linalg.norm(c, axis=1, keepdims=True)
  out = []
  for _ in range(2):
    z = rng.normal(size=(v, b, d))
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    out.append((z @ c.T).astype(np.float32))
  return out


@pytest.mark.parametrize("use_prior,sign,divide_twice", [(False, 1, False), (True, 1, False), (True, -1, True)])
def test_loss_matches_numpy(use_prior, sign, divide_twice):
  s_rgb, s_flow = _views(0)
  kw = dict(assign_views=(0, 1), temperature=0.1, epsilon=0.05, epsilon2=0.03, num_iters=3)
  loss, metrics = goca.goca_loss(jnp.asarray(s_rgb), jnp.asarray(s_flow), use_prior=use_prior, prior_sign=sign,
                                 divide_twice=divide_twice, **kw)
  ref = np_goca_loss(s_rgb, s_flow, (0, 1), 0.1, 0.05, 0.03, 3, use_prior, sign, divide_twice)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["loss"]), ref, rtol=1e-5)
  np.testing.assert_allclose((float(metrics["loss_rgb"]) + float(metrics["loss_flow"])) / 2, ref, rtol=1e-5)


def test_divide_twice_is_extra_factor():
  s_rgb, s_flow = map(jnp.asarray, _views(1))
  a, _ = goca.goca_loss(s_rgb, s_flow, assign_views=(0, 1), epsilon=0.05, epsilon2=0.01, num_iters=3,
                        use_prior=True, prior_sign=1)
  b, _ = goca.goca_loss(s_rgb, s_flow, assign_views=(0, 1), epsilon=0.05, epsilon2=0.01, num_iters=3,
                        use_prior=True, prior_sign=1, divide_twice=True)
  np.testing.assert_allclose(float(b), float(a) / 2, rtol=1e-6)


def test_gradient_only_through_predictions():
  s_rgb, s_flow = map(jnp.asarray, _views(2))

  def f(sr, sf):
    return goca.goca_loss(sr, sf, assign_views=(0,), epsilon=0.05, epsilon2=0.01, num_iters=3, use_prior=True,
                          prior_sign=1)[0]

  g_rgb, g_flow = jax.grad(f, argnums=(0, 1))(s_rgb, s_flow)
  # View 0 is only used for codes (stop-gradient) when it is the only assigned view.
  assert float(jnp.abs(g_rgb[0]).max()) == 0.0 and float(jnp.abs(g_flow[0]).max()) == 0.0
  assert float(jnp.abs(g_rgb[1:]).max()) > 0 and float(jnp.abs(g_flow[1:]).max()) > 0


def test_metrics_agreement_and_collapse():
  s_rgb, _ = _views(3, b=16, k=12)
  _, m = goca.goca_loss(jnp.asarray(s_rgb), jnp.asarray(s_rgb), epsilon=0.05, epsilon2=0.01, num_iters=3,
                        use_prior=False, prior_sign=1)
  assert float(m["agreement"]) == 1.0  # identical streams agree everywhere
  assert int(m["protos_used_rgb"]) > 6
  # Collapsed embeddings: every sample has the same scores -> one prototype.
  collapsed = jnp.broadcast_to(jnp.asarray(s_rgb[:, :1]), s_rgb.shape)
  _, m2 = goca.goca_loss(collapsed, collapsed, epsilon=0.05, epsilon2=0.01, num_iters=3, use_prior=False,
                         prior_sign=1)
  assert int(m2["protos_used_rgb"]) == 1 and int(m2["protos_used_pred_flow"]) <= 6
  # Agreement is a fraction, computed from the codes.
  s_a, s_b = _views(4, b=16, k=12)
  _, m3 = goca.goca_loss(jnp.asarray(s_a), jnp.asarray(s_b), epsilon=0.05, epsilon2=0.01, num_iters=3,
                         use_prior=False, prior_sign=1, assign_views=(0,))
  q_a = np_sinkhorn(s_a[0].astype(np.float64), 0.05, 3)
  q_b = np_sinkhorn(s_b[0].astype(np.float64), 0.05, 3)
  np.testing.assert_allclose(float(m3["agreement"]), np.mean(q_a.argmax(1) == q_b.argmax(1)), atol=1e-6)


def test_queue_prepend_and_fifo():
  v, b, k, d, length = 6, 4, 10, 8, 12
  rng = np.random.default_rng(5)
  c = rng.normal(size=(k, d)).astype(np.float32)
  c /= np.linalg.norm(c, axis=1, keepdims=True)
  z_rgb = rng.normal(size=(v, b, d)).astype(np.float32)
  z_flow = rng.normal(size=(v, b, d)).astype(np.float32)
  q = goca.init_queue(length, 2, d)
  assert q.shape == (2, 2, length, d) and not goca.queue_is_full(q)
  q1 = goca.update_queue(q, jnp.asarray(z_rgb), jnp.asarray(z_flow), (0, 1))
  np.testing.assert_array_equal(np.asarray(q1[0, 1, :b]), z_rgb[1])
  np.testing.assert_array_equal(np.asarray(q1[1, 0, :b]), z_flow[0])
  q2 = goca.update_queue(q1, jnp.asarray(z_rgb + 1), jnp.asarray(z_flow + 1), (0, 1))
  np.testing.assert_array_equal(np.asarray(q2[0, 0, b:2 * b]), z_rgb[0])  # older entries move back
  np.testing.assert_array_equal(np.asarray(q2[0, 0, :b]), z_rgb[0] + 1)
  q3 = goca.update_queue(q2, jnp.asarray(z_rgb), jnp.asarray(z_flow), (0, 1))
  assert goca.queue_is_full(q3)

  qs = np.asarray(goca.queue_scores(q3, jnp.asarray(c)))
  assert qs.shape == (2, 2, length, k)
  s_rgb = (z_rgb @ c.T).astype(np.float32)
  s_flow = (z_flow @ c.T).astype(np.float32)
  loss, _ = goca.goca_loss(jnp.asarray(s_rgb), jnp.asarray(s_flow), epsilon=0.05, epsilon2=0.01, num_iters=3,
                           use_prior=True, prior_sign=1, queue=jnp.asarray(qs))
  ref = np_goca_loss(s_rgb, s_flow, (0, 1), 0.1, 0.05, 0.01, 3, True, 1, False, queue=qs.astype(np.float64))
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  no_queue, _ = goca.goca_loss(jnp.asarray(s_rgb), jnp.asarray(s_flow), epsilon=0.05, epsilon2=0.01, num_iters=3,
                               use_prior=True, prior_sign=1)
  assert abs(float(no_queue) - float(loss)) > 1e-5


def test_bad_input():
  with pytest.raises(ValueError, match="V, B, K"):
    goca.goca_loss(jnp.zeros((6, 4, 3)), jnp.zeros((6, 4, 2)), epsilon=0.05, epsilon2=0.01, num_iters=3,
                   use_prior=True, prior_sign=1)
  with pytest.raises(ValueError, match="assign_views"):
    goca.goca_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), assign_views=(0, 5), epsilon=0.05, epsilon2=0.01,
                   num_iters=3, use_prior=True, prior_sign=1)


def np_swav_loss(s, assign, tau, eps, iters):
  """GOCA's compute_ot_loss for one stream (--video_channels rgb) or the averaged streams (AvgRgbFlow)."""
  s = s.astype(np.float64)
  v = s.shape[0]
  total = 0.0
  for t in assign:
    q = np_sinkhorn(s[t], eps, iters)
    total += sum(-np.mean(np.sum(q * np_log_softmax(s[u] / tau), axis=1)) for u in range(v) if u != t) / (v - 1)
  return total / len(assign)


def test_sinkhorn_cycle_2_matches_numpy():
  s_rgb, s_flow = _views(3)
  kw = dict(assign_views=(0, 1), temperature=0.1, epsilon=0.05, epsilon2=0.03, num_iters=3, use_prior=True)
  two, _ = goca.goca_loss(jnp.asarray(s_rgb), jnp.asarray(s_flow), sinkhorn_cycle=2, **kw)
  one, _ = goca.goca_loss(jnp.asarray(s_rgb), jnp.asarray(s_flow), sinkhorn_cycle=1, **kw)
  np.testing.assert_allclose(float(two), np_goca_loss(s_rgb, s_flow, (0, 1), 0.1, 0.05, 0.03, 3, True, 1, False,
                                                      cycle=2), rtol=1e-5)
  assert abs(float(two) - float(one)) > 1e-5
  with pytest.raises(ValueError, match="sinkhorn_cycle"):
    goca.goca_loss(jnp.asarray(s_rgb), jnp.asarray(s_flow), sinkhorn_cycle=0, **kw)


def test_swav_loss_matches_numpy_and_queue():
  s, _ = _views(4)
  loss, metrics = goca.swav_loss(jnp.asarray(s), assign_views=(0, 1), temperature=0.1, epsilon=0.05, num_iters=3)
  np.testing.assert_allclose(float(loss), np_swav_loss(s, (0, 1), 0.1, 0.05, 3), rtol=1e-5)
  assert 1 <= int(metrics["protos_used"]) <= 12
  # With the prior off, goca_loss is the mean of the two streams' SwAV losses.
  s2, _ = _views(5)
  both, _ = goca.goca_loss(jnp.asarray(s), jnp.asarray(s2), assign_views=(0, 1), epsilon=0.05, num_iters=3,
                           use_prior=False)
  np.testing.assert_allclose(float(both), (np_swav_loss(s, (0, 1), 0.1, 0.05, 3)
                                           + np_swav_loss(s2, (0, 1), 0.1, 0.05, 3)) / 2, rtol=1e-5)
  # A queue [T, L, K] is prepended before Sinkhorn; the codes are the last B rows.
  queue = np.stack([s2[2], s2[3]])
  with_q, _ = goca.swav_loss(jnp.asarray(s), assign_views=(0, 1), epsilon=0.05, num_iters=3,
                             queue=jnp.asarray(queue))
  ref = 0.0
  for i, t in enumerate((0, 1)):
    q = np_sinkhorn(np.concatenate([queue[i], s[t]]).astype(np.float64), 0.05, 3)[-s.shape[1]:]
    ref += sum(-np.mean(np.sum(q * np_log_softmax(s[u] / 0.1), axis=1)) for u in range(6) if u != t) / 5
  np.testing.assert_allclose(float(with_q), ref / 2, rtol=1e-5)


def test_push_queue_single_set():
  rng = np.random.default_rng(0)
  queue = jnp.zeros((1, 2, 8, 3))
  z = jnp.asarray(rng.normal(size=(4, 4, 3)), jnp.float32)
  q1 = goca.push_queue(queue, (z,), (0, 1))
  np.testing.assert_array_equal(np.asarray(q1[0, :, :4]), np.asarray(z[:2]))
  q2 = goca.push_queue(q1, (z + 1,), (0, 1))
  np.testing.assert_array_equal(np.asarray(q2[0, :, 4:]), np.asarray(z[:2]))
  with pytest.raises(ValueError, match="embedding sets"):
    goca.push_queue(queue, (z, z), (0, 1))
