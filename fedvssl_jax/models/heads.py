"""Classification heads on pooled backbone features."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

FC_INIT_STD = 0.001  # CtP's TSN head (`SimpleClsHead`, init_std=0.001 in the recognizer configs).


class ClassifierHead(nnx.Module):
  """The TSN classifier of CtP: dropout -> fc. Pooling is the backbone's pooled output.

  Args:
    in_features: feature size D (the backbone's `feature_dim`).
    num_classes: number of classes K.
    dropout_rate: dropout probability (active in `model.train()`, off in `model.eval()`).
    param_dtype: fc parameter dtype.
    rngs: init randomness (fc kernel ~ N(0, 0.001), bias 0) and the `dropout` stream.

  Param paths: `fc/kernel` [D, K], `fc/bias` [K].
  """

  def __init__(self, in_features: int, num_classes: int, dropout_rate: float = 0.5, *,
               param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
    self.in_features = int(in_features)
    self.num_classes = int(num_classes)
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
    self.fc = nnx.Linear(self.in_features, self.num_classes, kernel_init=nnx.initializers.normal(FC_INIT_STD),
                         bias_init=nnx.initializers.zeros, param_dtype=param_dtype, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    """features [N, D] -> float32 logits [N, K]."""
    if features.ndim != 2 or features.shape[-1] != self.in_features:
      raise ValueError(f"ClassifierHead expects [N, {self.in_features}] features, got shape {tuple(features.shape)}")
    return self.fc(self.dropout(features)).astype(jnp.float32)
