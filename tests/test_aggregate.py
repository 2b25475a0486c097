"""FedVSSL aggregation rules (fedvssl_jax.federated.aggregate) against direct computations."""

import math

import numpy as np
import pytest

from fedvssl_jax.federated import aggregate

SHAPES = {
    "backbone/conv/kernel": (3, 3, 2, 4),
    "backbone/bn/mean": (4,),
    "backbone/bn/var": (4,),
    "head/fc/kernel": (4, 5),
    "head/fc/bias": (5,),
}


def _clients(rng, k=3):
  return [{name: rng.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()} for _ in range(k)]


def _direct(clients, n, losses, alpha, beta, previous):
  """The paper's formula written out per element, independently of the library."""
  e = [math.exp(-l) for l in losses]
  soft = [x / sum(e) for x in e]
  avg = [x / sum(n) for x in n]
  out = {}
  for name in SHAPES:
    loss_part = sum(soft[k] * clients[k][name].astype(np.float64) for k in range(len(clients)))
    avg_part = sum(avg[k] * clients[k][name].astype(np.float64) for k in range(len(clients)))
    theta = alpha * loss_part + (1 - alpha) * avg_part
    if beta == 1 and previous is not None:
      theta = 0.5 * theta + 0.5 * previous[name].astype(np.float64)
    out[name] = theta
  return out


@pytest.mark.parametrize("alpha,beta", [(0, 0), (1, 0), (0, 1), (1, 1), (0.9, 0), (0.9, 1)])
def test_fedvssl_three_rounds_match_direct_computation(alpha, beta):
  rng = np.random.default_rng(0)
  previous_lib = previous_ref = None
  for _ in range(3):
    clients = _clients(rng)
    n = [int(x) for x in rng.integers(5, 50, size=3)]
    losses = [float(x) for x in rng.uniform(0.1, 3.0, size=3)]
    got = aggregate.fedvssl_aggregate(clients, n, losses, alpha, beta, previous_global=previous_lib)
    want = _direct(clients, n, losses, alpha, beta, previous_ref)
    assert list(got) == list(SHAPES)
    for name in SHAPES:
      assert got[name].dtype == np.float32
      assert got[name].shape == SHAPES[name]
      np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
    previous_lib, previous_ref = got, {k: v.astype(np.float32) for k, v in want.items()}


def test_beta_uses_previous_and_ema_factor():
  rng = np.random.default_rng(1)
  clients = _clients(rng, 2)
  prev = {k: np.full(s, 10.0, np.float32) for k, s in SHAPES.items()}
  no_prev = aggregate.fedvssl_aggregate(clients, [1, 1], [0.0, 0.0], 0.0, 1, previous_global=None)
  with_prev = aggregate.fedvssl_aggregate(clients, [1, 1], [0.0, 0.0], 0.0, 1, previous_global=prev, ema_factor=0.25)
  beta0 = aggregate.fedvssl_aggregate(clients, [1, 1], [0.0, 0.0], 0.0, 0, previous_global=prev)
  for k in SHAPES:
    np.testing.assert_allclose(with_prev[k], 0.25 * no_prev[k] + 0.75 * 10.0, rtol=1e-6)
    np.testing.assert_array_equal(beta0[k], no_prev[k])


def test_alpha0_beta0_is_fedavg_and_not_a_concatenation():
  rng = np.random.default_rng(2)
  clients = _clients(rng, 4)
  n = [3, 10, 7, 1]
  losses = [0.5, 2.0, 1.0, 0.1]
  fv = aggregate.fedvssl_aggregate(clients, n, losses, 0.0, 0)
  fa = aggregate.fedavg_aggregate(clients, n)
  assert len(fv) == len(SHAPES) == len(fa)
  for k in SHAPES:
    np.testing.assert_allclose(fv[k], fa[k], rtol=1e-6, atol=1e-7)
    assert fa[k].shape == SHAPES[k] and fa[k].dtype == np.float32
    want = sum(w / sum(n) * c[k].astype(np.float64) for w, c in zip(n, clients))
    np.testing.assert_allclose(fa[k], want, rtol=1e-5, atol=1e-6)
  # Mixed alpha: same number of arrays and shapes, values = element-wise sum of the two averages.
  mixed = aggregate.fedvssl_aggregate(clients, n, losses, 0.9, 0)
  lb = aggregate.fedvssl_aggregate(clients, n, losses, 1.0, 0)
  assert len(mixed) == len(SHAPES)
  for k in SHAPES:
    assert mixed[k].shape == SHAPES[k]
    np.testing.assert_allclose(mixed[k], 0.9 * lb[k].astype(np.float64) + 0.1 * fa[k], rtol=1e-5, atol=1e-6)


def test_loss_weights_are_softmax_of_negative_loss_and_stable():
  w = aggregate.loss_weights([1000.0, 1001.0])
  np.testing.assert_allclose(w, [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))], rtol=1e-12)
  with pytest.raises(ValueError, match="finite"):
    aggregate.loss_weights([1.0, float("nan")])


def test_float32_output_from_float64_input():
  clients = [{"a": np.ones(3, np.float64) * i} for i in range(1, 3)]
  out = aggregate.fedvssl_aggregate(clients, [1, 1], [1.0, 1.0], 0.5, 0)
  assert out["a"].dtype == np.float32
  np.testing.assert_allclose(out["a"], 1.5)


def test_mismatch_errors_name_key_and_client():
  rng = np.random.default_rng(3)
  clients = _clients(rng, 3)
  clients[2]["head/fc/bias"] = np.zeros(6, np.float32)
  with pytest.raises(ValueError, match=r"'head/fc/bias'.*client 2"):
    aggregate.fedvssl_aggregate(clients, [1, 1, 1], [0, 0, 0], 0.5, 0)
  clients = _clients(rng, 3)
  del clients[1]["backbone/bn/var"]
  with pytest.raises(ValueError, match=r"client 1.*'backbone/bn/var'"):
    aggregate.fedavg_aggregate(clients, [1, 1, 1])
  clients = _clients(rng, 2)
  clients[1]["extra"] = np.zeros(1, np.float32)
  with pytest.raises(ValueError, match=r"client 1.*'extra'"):
    aggregate.fedavg_aggregate(clients, [1, 1])
  clients = _clients(rng, 2)
  prev = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
  prev["backbone/bn/mean"] = np.zeros(5, np.float32)
  with pytest.raises(ValueError, match="previous_global.*'backbone/bn/mean'|'backbone/bn/mean'.*previous_global"):
    aggregate.fedvssl_aggregate(clients, [1, 1], [0, 0], 0.0, 1, previous_global=prev)


def test_bad_arguments():
  clients = [{"a": np.ones(2, np.float32)}]
  with pytest.raises(ValueError, match="alpha"):
    aggregate.fedvssl_aggregate(clients, [1], [0.0], 1.5, 0)
  with pytest.raises(ValueError, match="beta"):
    aggregate.fedvssl_aggregate(clients, [1], [0.0], 0.5, 2)
  with pytest.raises(ValueError, match="num_examples"):
    aggregate.fedavg_aggregate(clients, [0])
  with pytest.raises(ValueError, match="at least one client"):
    aggregate.fedavg_aggregate([], [])


def test_flower_baseline_reproduces_the_concatenation_bug():
  rng = np.random.default_rng(4)
  clients = _clients(rng, 3)
  n = [10, 20, 30]
  losses = [0.5, 1.0, 2.0]
  out1 = aggregate.flower_baseline_aggregate(clients, n, losses, mix_coeff=0.9, swbeta=1, previous=None)
  num = len(SHAPES)
  assert len(out1) == 2 * num  # a concatenation of two lists, not a sum
  fa = aggregate.fedavg_aggregate(clients, n)
  lb = aggregate.fedvssl_aggregate(clients, n, losses, 1.0, 0)
  for i, k in enumerate(SHAPES):
    np.testing.assert_allclose(out1[i], 0.9 * fa[k], rtol=1e-5, atol=1e-6)  # what the clients load
    np.testing.assert_allclose(out1[num + i], 0.1 * lb[k], rtol=1e-5, atol=1e-6)  # never used
  clients2 = _clients(rng, 3)
  out2 = aggregate.flower_baseline_aggregate(clients2, n, losses, mix_coeff=0.9, swbeta=1, previous=out1)
  fa2 = aggregate.fedavg_aggregate(clients2, n)
  for i, k in enumerate(SHAPES):  # 0.45 * FedAvg_r + 0.5 * g_{r-1}: coefficients do not sum to 1
    np.testing.assert_allclose(out2[i], 0.45 * fa2[k] + 0.5 * out1[i], rtol=1e-5, atol=1e-6)
