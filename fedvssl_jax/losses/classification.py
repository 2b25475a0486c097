"""Classification losses and metrics (pure functions on arrays)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _check(logits: jax.Array, labels: jax.Array) -> None:
  if logits.ndim < 1 or labels.shape != logits.shape[:-1]:
    raise ValueError(f"fedvssl_jax/losses/classification.py: logits {logits.shape} need labels of shape "
                     f"{logits.shape[:-1]}, got {labels.shape}")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy (PyTorch `F.cross_entropy`, mean reduction).

  Args:
    logits: [..., num_classes] unnormalised scores.
    labels: [...] integer class indices in [0, num_classes).

  Returns:
    float32 scalar, mean over all leading positions.
  """
  labels = jnp.asarray(labels)
  _check(logits, labels)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels.astype(jnp.int32))
  return jnp.mean(losses)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Top-1 accuracy in [0, 1]: mean of `argmax(logits) == labels` (float32 scalar)."""
  labels = jnp.asarray(labels)
  _check(logits, labels)
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


def topk_accuracy(logits: jax.Array, labels: jax.Array, k: int = 5) -> jax.Array:
  """Top-k accuracy in [0, 1]: fraction of rows whose label is among the k largest logits.

  Ties are broken like `jax.lax.top_k` (lower index first). `k` larger than the number of classes counts every
  row as correct.
  """
  labels = jnp.asarray(labels)
  _check(logits, labels)
  if k < 1:
    raise ValueError(f"fedvssl_jax/losses/classification.py: k must be >= 1, got {k}")
  k = min(k, logits.shape[-1])
  _, top = jax.lax.top_k(logits, k)
  hit = jnp.any(top == labels[..., None], axis=-1)
  return jnp.mean(hit.astype(jnp.float32))
