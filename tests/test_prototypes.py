"""Hyperspherical prototypes: optimisation spreads them, loading checks the file, the script writes a .npy."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedvssl_jax.goca import prototypes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_separation_loss_value():
  c = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]])
  # Largest off-diagonal cosines: 0.707, 0.707, 0.707 -> loss = 1.707.
  np.testing.assert_allclose(float(prototypes.separation_loss(c)), 1.0 + np.sqrt(0.5), rtol=1e-6)
  np.testing.assert_allclose(float(prototypes.max_pairwise_cosine(c)), np.sqrt(0.5), rtol=1e-6)


def test_optimisation_lowers_max_cosine():
  lines = []
  c0 = prototypes.make_prototypes(64, 8, steps=0, seed=1, log_fn=lines.append)
  c = prototypes.make_prototypes(64, 8, steps=300, seed=1, log_every=100, log_fn=lines.append)
  assert c.dtype == np.float32 and c.shape == (64, 8)
  np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-5)
  before = float(prototypes.max_pairwise_cosine(c0))
  after = float(prototypes.max_pairwise_cosine(c))
  assert after < before - 0.05, (before, after)
  assert float(prototypes.separation_loss(jnp.asarray(c))) < float(prototypes.separation_loss(jnp.asarray(c0)))
  assert any("step 300/300" in line for line in lines)


def test_load_prototypes(tmp_path):
  c = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
  path = str(tmp_path / "c.npy")
  prototypes.save_prototypes(path, c)
  loaded = prototypes.load_prototypes(path, 10, 4)
  np.testing.assert_allclose(np.linalg.norm(loaded, axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(loaded, c / np.linalg.norm(c, axis=1, keepdims=True), rtol=1e-6)
  with pytest.raises(ValueError, match=r"c\.npy.*shape"):
    prototypes.load_prototypes(path, 10, 5)
  with pytest.raises(FileNotFoundError, match="missing"):
    prototypes.load_prototypes(str(tmp_path / "missing.npy"), 10, 4)
  bad = np.array(c)
  bad[0, 0] = np.nan
  np.save(tmp_path / "nan.npy", bad)
  with pytest.raises(ValueError, match="non-finite"):
    prototypes.load_prototypes(str(tmp_path / "nan.npy"), 10, 4)
  np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match="obj.npy"):
    prototypes.load_prototypes(str(tmp_path / "obj.npy"), 1, 1)


def test_script(tmp_path):
  out = tmp_path / "sub" / "p.npy"
  res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_prototypes.py"), "--num_prototypes",
                        "20", "--dim", "6", "--steps", "50", "--seed", "3", "--log_every", "25", "--out", str(out)],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert res.returncode == 0, res.stderr
  assert "step 50/50" in res.stderr
  c = np.load(out, allow_pickle=False)
  assert c.shape == (20, 6) and c.dtype == np.float32


def test_first_step_is_adam_then_sgd():
  """GOCA's prots/prototypes.py: step 1 = fresh Adam (lr 0.1), every later step = a fresh SGD(momentum 0.9), whose
  first step is plain lr * g; rows re-normalised after each step."""
  c0 = np.random.default_rng(0).normal(size=(12, 5))
  c0 /= np.linalg.norm(c0, axis=1, keepdims=True)
  lr = 0.1

  def sep_grad(c):
    return np.asarray(jax.grad(prototypes.separation_loss)(jnp.asarray(c, jnp.float32)), np.float64)

  def norm(c):
    return c / np.linalg.norm(c, axis=1, keepdims=True)

  g = sep_grad(c0)
  expect = norm(c0 - lr * g / (np.abs(g) + 1e-8))
  for _ in range(3):
    expect = norm(expect - lr * sep_grad(expect))
  got = prototypes.make_prototypes(12, 5, steps=4, init=c0, lr=lr, log_fn=lambda _: None)
  np.testing.assert_allclose(got, expect, atol=2e-5)
  # The old plain-SGD-only path ends elsewhere (the test can fail).
  plain = norm(c0 - lr * g)
  for _ in range(3):
    plain = norm(plain - lr * sep_grad(plain))
  assert np.abs(got - plain).max() > 1e-3


def test_matches_goca_torch_loop():
  """The released loop (Adam, then `SGD(lr, momentum=0.9)` re-created every iteration) run in torch."""
  torch = pytest.importorskip("torch")
  c0 = np.random.default_rng(1).normal(size=(16, 6)).astype(np.float32)
  c0 /= np.linalg.norm(c0, axis=1, keepdims=True)
  protos = torch.nn.Parameter(torch.nn.functional.normalize(torch.tensor(c0), p=2, dim=1))
  opt = torch.optim.Adam([protos], lr=0.1)
  for _ in range(20):
    prod = protos @ protos.t() + 1
    prod = prod - 2.0 * torch.diag(torch.diag(prod))
    loss = prod.max(dim=1)[0].mean()
    loss.backward()
    opt.step()
    protos = torch.nn.Parameter(torch.nn.functional.normalize(protos.detach(), p=2, dim=1))
    opt = torch.optim.SGD([protos], lr=0.1, momentum=0.9)
  got = prototypes.make_prototypes(16, 6, steps=20, init=c0, lr=0.1, log_fn=lambda _: None)
  np.testing.assert_allclose(got, protos.detach().numpy(), atol=1e-4)
