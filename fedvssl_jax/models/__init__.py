"""Video backbones (Flax NNX, NTHWC input) and their registry.

`build_backbone(name, *, rngs, **kwargs)` with names `r3d_18`, `r2plus1d_18`, `r2plus1d_18_ctp`, `s3d`; kwargs as in
docs/design.md (in_channels, width_multiplier, spatial_downsample, temporal_downsample, bn_epsilon, bn_momentum,
output, pool_size, dtype, param_dtype). Every backbone has `feature_dim` and `out_channels`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

from fedvssl_jax.models import resnet3d, s3d
from fedvssl_jax.models.heads import ClassifierHead
from fedvssl_jax.registry import Registry

BACKBONES = Registry("backbone")
BACKBONES.register("r3d_18")(resnet3d.r3d_18)
BACKBONES.register("r2plus1d_18")(resnet3d.r2plus1d_18)
BACKBONES.register("r2plus1d_18_ctp")(resnet3d.r2plus1d_18_ctp)
BACKBONES.register("s3d")(s3d.s3d)
# The backbones that take `residual_frames` (resnet3d.VideoResNet; S3D does not).
RESIDUAL_FRAME_BACKBONES = ("r3d_18", "r2plus1d_18", "r2plus1d_18_ctp")


def build_backbone(name: str, *, rngs: nnx.Rngs, **kwargs: Any) -> nnx.Module:
  """Builds the registered backbone `name` (KeyError listing the known names if unknown).

  `dtype` / `param_dtype` may be given by name ("bfloat16"), as they are in configs and exported model.json files.
  """
  for key in ("dtype", "param_dtype"):
    if isinstance(kwargs.get(key), str):
      kwargs[key] = jnp.dtype(kwargs[key])
  return BACKBONES.get(name)(rngs=rngs, **kwargs)


def abstract_backbone(name: str, **kwargs: Any) -> nnx.Module:
  """The backbone with `jax.ShapeDtypeStruct` leaves (no allocation), for shapes and parameter counts."""
  return nnx.eval_shape(lambda: build_backbone(name, rngs=nnx.Rngs(0), **kwargs))


__all__ = ["BACKBONES", "build_backbone", "abstract_backbone", "ClassifierHead"]
