"""Hyperspherical prototypes (Mettes et al., NeurIPS 2019), as GOCA pre-computes them (`prots/prototypes.py`).

K unit vectors in R^d are spread out by minimising each one's largest cosine to the others,
  L_sep(C) = mean_i max_{j != i} (c_i . c_j + 1),
as GOCA's script does it: the first step is an Adam step (lr 0.1; on a fresh Adam state it moves every coordinate by
lr * g / (|g| + 1e-8), i.e. about lr * sign(g)), every later step plain SGD (GOCA re-creates
`SGD(lr=0.1, momentum=0.9)` after every step, so the momentum buffer is always fresh and the step is lr * g), and the
rows are re-normalised after every step. GOCA uses K=1000, d=128, 50000 steps, seed 300; the result is loaded as the
fixed prototype matrix C. When C is learnable instead, `separation_loss` is GOCA's optional `use_protreg` term.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np


def normalize_rows(c: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows scaled to unit L2 norm. [K, d] -> [K, d]."""
  return c / jnp.maximum(jnp.linalg.norm(c, axis=-1, keepdims=True), eps)


def separation_loss(c: jax.Array) -> jax.Array:
  """mean_i max_{j != i} (c_i . c_j + 1) for rows c_i of C [K, d] (unit rows expected). Scalar in [0, 2]."""
  if c.ndim != 2 or c.shape[0] < 2:
    raise ValueError(f"separation_loss: prototypes must be [K >= 2, d], got {c.shape}")
  prod = c @ c.T + 1.0
  prod = jnp.where(jnp.eye(c.shape[0], dtype=bool), -1.0, prod)  # the diagonal never wins (GOCA subtracts 2*diag)
  return jnp.mean(jnp.max(prod, axis=1))


def max_pairwise_cosine(c: jax.Array) -> jax.Array:
  """Largest cosine between two different rows of C [K, d] (rows normalised here)."""
  c = normalize_rows(c)
  cos = c @ c.T
  return jnp.max(jnp.where(jnp.eye(c.shape[0], dtype=bool), -jnp.inf, cos))


ADAM_EPS = 1e-8  # torch.optim.Adam's default


def adam_first_step(c: jax.Array, lr: float) -> jax.Array:
  """GOCA's first step: one step of a fresh torch Adam (betas 0.9 / 0.999, eps 1e-8), then rows re-normalised.

  With bias correction, the first Adam update is lr * m_hat / (sqrt(v_hat) + eps) = lr * g / (|g| + eps). [K, d].
  """
  g = jax.grad(separation_loss)(c)
  return normalize_rows(c - lr * g / (jnp.abs(g) + ADAM_EPS))


def make_prototypes(num_prototypes: int = 1000, dim: int = 128, steps: int = 50000, seed: int = 300,
                    lr: float = 0.1, log_every: int = 1000,
                    log_fn: Optional[Callable[[str], None]] = None, init: Optional[np.ndarray] = None) -> np.ndarray:
  """Optimise K unit prototypes that are spread out on S^(dim-1).

  Args:
    num_prototypes: K.
    dim: d.
    steps: optimisation steps, the first one Adam, the others SGD (GOCA: 50000).
    seed: initialisation seed; C0 ~ N(0, 1) with rows normalised.
    lr: Adam and SGD learning rate (0.1).
    log_every: steps between progress lines (the steps in between run in one jitted `fori_loop`).
    log_fn: where progress lines go (default: print to stderr).
    init: optional C0 [K, d] (rows are normalised) instead of the seeded normal draw.

  Returns:
    float32 array [K, d] with unit rows.
  """
  if num_prototypes < 2 or dim < 1 or steps < 0:
    raise ValueError(f"make_prototypes: need num_prototypes >= 2, dim >= 1, steps >= 0; got {num_prototypes}, "
                     f"{dim}, {steps}")
  if log_fn is None:
    log_fn = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
  if init is not None:
    c = jnp.asarray(np.asarray(init), jnp.float32)
    if c.shape != (num_prototypes, dim):
      raise ValueError(f"make_prototypes: init has shape {c.shape}, expected ({num_prototypes}, {dim})")
    c = normalize_rows(c)
  else:
    c = normalize_rows(jax.random.normal(jax.random.key(seed), (num_prototypes, dim), jnp.float32))
  grad_fn = jax.grad(separation_loss)

  def step(_, c):
    return normalize_rows(c - lr * grad_fn(c))

  @jax.jit
  def run_chunk(c, n):
    c = jax.lax.fori_loop(0, n, step, c)
    return c, separation_loss(c), max_pairwise_cosine(c)

  log_fn(f"prototypes: K={num_prototypes} d={dim} steps={steps} seed={seed} "
         f"start loss={float(separation_loss(c)):.4f} max cos={float(max_pairwise_cosine(c)):.4f}")
  done = 0
  if steps > 0:
    c = jax.jit(adam_first_step, static_argnums=1)(c, float(lr))
    done = 1
  chunk = max(int(log_every), 1)
  t0 = time.time()
  while done < steps:
    n = min(chunk - done % chunk, steps - done)
    c, loss, mcos = run_chunk(c, n)
    done += n
    rate = done / max(time.time() - t0, 1e-9)
    log_fn(f"prototypes: step {done}/{steps} loss={float(loss):.4f} max cos={float(mcos):.4f} "
           f"({rate:.0f} steps/s, eta {(steps - done) / rate:.0f}s)")
  return np.asarray(c, np.float32)


def save_prototypes(path: str, c: np.ndarray) -> None:
  """Writes C as a float32 `.npy` (directories created, written atomically)."""
  c = np.asarray(c, np.float32)
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  tmp = os.path.join(d, f".{os.path.basename(path)}.tmp{os.getpid()}")
  with open(tmp, "wb") as f:
    np.save(f, c, allow_pickle=False)
  os.replace(tmp, path)


def load_prototypes(path: str, num: int, dim: int) -> np.ndarray:
  """Loads a prototype matrix saved by `make_prototypes.py` and checks it.

  Args:
    path: `.npy` file holding a float [num, dim] array (no pickle).
    num: expected number of prototypes K.
    dim: expected embedding size d.

  Returns:
    float32 [num, dim] with rows re-normalised to unit length.

  Raises:
    FileNotFoundError / ValueError naming the file when it is missing, not a plain array, of the wrong shape, or
    has non-finite or zero rows.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"prototype file {path!r} does not exist (make one with scripts/make_prototypes.py)")
  try:
    c = np.load(path, allow_pickle=False)
  except Exception as e:  # noqa: BLE001 - re-raised with the file name
    raise ValueError(f"prototype file {path!r} is not a readable .npy array: {e}") from e
  if not isinstance(c, np.ndarray) or c.dtype.kind != "f":
    raise ValueError(f"prototype file {path!r}: expected a float array, got dtype {getattr(c, 'dtype', type(c))}")
  if c.shape != (num, dim):
    raise ValueError(f"prototype file {path!r} has shape {c.shape}, expected ({num}, {dim}) "
                     "(num_prototypes, embed_dim)")
  if not np.all(np.isfinite(c)):
    raise ValueError(f"prototype file {path!r} contains non-finite values")
  norms = np.linalg.norm(c.astype(np.float64), axis=1, keepdims=True)
  if np.any(norms < 1e-6):
    raise ValueError(f"prototype file {path!r} has all-zero rows")
  return (c / norms).astype(np.float32)
