"""S3D (separable 3D Inception, Xie et al. ECCV 2018) without gating, in Flax NNX. NTHWC in, 1024-d pooled out.

Structure used (the S3D paper's Figure / the TF and common PyTorch S3D ports, gating off as in GOCA's `s3dg.py`):

| unit | op | out channels | stride (T,H,W) |
|---|---|---|---|
| Conv_1a | SepConv k=7, p=3 | 64 | (2,2,2) |
| MaxPool_2a | max (1,3,3), p=(0,1,1) | 64 | (1,2,2) |
| Conv_2b | BasicConv 1x1x1 | 64 | 1 |
| Conv_2c | SepConv k=3, p=1 | 192 | 1 |
| MaxPool_3a | max (1,3,3), p=(0,1,1) | 192 | (1,2,2) |
| Mixed_3b, Mixed_3c | Inception | 256, 480 | 1 |
| MaxPool_4a | max (3,3,3), p=1 | 480 | (2,2,2) |
| Mixed_4b..Mixed_4f | Inception | 512, 512, 512, 528, 832 | 1 |
| MaxPool_5a | max (2,2,2), p=0 | 832 | (2,2,2) |
| Mixed_5b, Mixed_5c | Inception | 832, 1024 | 1 |

* BasicConv: conv (no bias) -> `bn` -> ReLU; param paths `<unit>/conv`, `<unit>/bn`.
* SepConv(k, s, p): `conv_s` (1,k,k)/(1,s,s) pad (0,p,p) -> `bn_s` -> ReLU -> `conv_t` (k,1,1)/(s,1,1) pad (p,0,0)
  -> `bn_t` -> ReLU.
* Inception (Mixed) block with channels (b0, b1a, b1b, b2a, b2b, b3): `branch0` = BasicConv 1x1x1 -> b0;
  `branch1` = [BasicConv 1x1x1 -> b1a, SepConv k=3 p=1 -> b1b]; `branch2` = [BasicConv 1x1x1 -> b2a,
  SepConv k=3 p=1 -> b2b]; `branch3` = MaxPool 3x3x3 s=1 p=1 then BasicConv 1x1x1 -> b3; outputs concatenated on
  channels (b0 + b1b + b2b + b3). Branch lists are `nnx.List`s: `Mixed_3b/branch1/0/conv/kernel`,
  `Mixed_3b/branch1/1/conv_s/kernel`, ...
* Max pools pad with -inf as PyTorch. Output: global average pool (or `pool_size` adaptive pool) of Mixed_5c.
* BN eps defaults to 1e-3 (the TF S3D / common PyTorch S3D ports); momentum in Flax convention.
* Spatio-temporal size: T' = ceil-ish T/8, H' = H/32 (e.g. 16x128x128 -> 2x4x4 with 1024 channels).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fedvssl_jax.models import layers
from fedvssl_jax.models.resnet3d import OUTPUTS, _BNFactory

# (b0, b1a, b1b, b2a, b2b, b3) of every Inception block.
MIXED = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)
# Max pool placed before a unit: name -> (kernel, stride, padding).
POOLS = {
    "MaxPool_2a": ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
    "MaxPool_3a": ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
    "MaxPool_4a": ((3, 3, 3), (2, 2, 2), (1, 1, 1)),
    "MaxPool_5a": ((2, 2, 2), (2, 2, 2), (0, 0, 0)),
}


class BasicConv(nnx.Module):
  """conv (no bias) -> bn -> relu."""

  def __init__(self, cin: int, cout: int, k, s, p, f: _BNFactory):
    self.conv = f.conv(cin, cout, k, s, p)
    self.bn = f.bn(cout)

  def __call__(self, x):
    return nnx.relu(self.bn(self.conv(x)))


class SepConv(nnx.Module):
  """Separable conv: conv_s (1,k,k) -> bn_s -> relu -> conv_t (k,1,1) -> bn_t -> relu."""

  def __init__(self, cin: int, cout: int, k: int, s: int, p: int, f: _BNFactory):
    self.conv_s = f.conv(cin, cout, (1, k, k), (1, s, s), (0, p, p))
    self.bn_s = f.bn(cout)
    self.conv_t = f.conv(cout, cout, (k, 1, 1), (s, 1, 1), (p, 0, 0))
    self.bn_t = f.bn(cout)

  def __call__(self, x):
    x = nnx.relu(self.bn_s(self.conv_s(x)))
    return nnx.relu(self.bn_t(self.conv_t(x)))


class Mixed(nnx.Module):
  """Inception block without gating; channels (b0, b1a, b1b, b2a, b2b, b3) -> out b0 + b1b + b2b + b3."""

  def __init__(self, cin: int, ch: Sequence[int], f: _BNFactory):
    b0, b1a, b1b, b2a, b2b, b3 = ch
    self.branch0 = BasicConv(cin, b0, 1, 1, 0, f)
    self.branch1 = nnx.List([BasicConv(cin, b1a, 1, 1, 0, f), SepConv(b1a, b1b, 3, 1, 1, f)])
    self.branch2 = nnx.List([BasicConv(cin, b2a, 1, 1, 0, f), SepConv(b2a, b2b, 3, 1, 1, f)])
    self.branch3 = BasicConv(cin, b3, 1, 1, 0, f)
    self.out_channels = b0 + b1b + b2b + b3

  def __call__(self, x):
    y0 = self.branch0(x)
    y1 = self.branch1[1](self.branch1[0](x))
    y2 = self.branch2[1](self.branch2[0](x))
    y3 = self.branch3(layers.max_pool3d(x, 3, 1, 1))
    return jnp.concatenate([y0, y1, y2, y3], axis=-1)


class S3D(nnx.Module):
  """S3D backbone without gating (see module docstring).

  Args:
    in_channels, width_multiplier, bn_epsilon (default 1e-3), bn_momentum, output ("pooled" | "feature_map"),
    pool_size (None = global mean -> 1024-d), dtype, param_dtype, rngs: as for the ResNets.

  Attributes:
    feature_dim: pooled output size (1024 at full width, global pool); out_channels: Mixed_5c channels.
  """

  def __init__(self, *, in_channels: int = 3, width_multiplier: float = 1.0, bn_epsilon: float = 1e-3,
               bn_momentum: float = 0.9, output: str = "pooled", pool_size: Optional[Sequence[int]] = None,
               dtype: Any = None, param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
    if output not in OUTPUTS:
      raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    self.in_channels = int(in_channels)
    self.output = output
    self.pool_size = None if pool_size is None else layers.triple(pool_size)
    self.dtype = layers.canonical_dtype(dtype)
    f = _BNFactory(float(bn_epsilon), float(bn_momentum), self.dtype, layers.canonical_dtype(param_dtype), rngs)
    sc = lambda c: layers.scale_channels(c, float(width_multiplier))  # noqa: E731
    self.Conv_1a = SepConv(self.in_channels, sc(64), 7, 2, 3, f)
    self.Conv_2b = BasicConv(sc(64), sc(64), 1, 1, 0, f)
    self.Conv_2c = SepConv(sc(64), sc(192), 3, 1, 1, f)
    cin = sc(192)
    for name, ch in MIXED:
      block = Mixed(cin, [sc(c) for c in ch], f)
      setattr(self, name, block)
      cin = block.out_channels
    self.out_channels = cin
    self.feature_dim = layers.pooled_dim(cin, self.pool_size)

  def features(self, x: jax.Array) -> jax.Array:
    """Mixed_5c feature map [N, T', H', W', out_channels] (compute dtype) for NTHWC input x."""
    layers.check_input(x, self.in_channels, "S3D")
    if self.dtype is not None:
      x = x.astype(self.dtype)
    x = self.Conv_1a(x)
    x = layers.max_pool3d(x, *POOLS["MaxPool_2a"])
    x = self.Conv_2c(self.Conv_2b(x))
    x = layers.max_pool3d(x, *POOLS["MaxPool_3a"])
    for name, _ in MIXED:
      if name == "Mixed_4b":
        x = layers.max_pool3d(x, *POOLS["MaxPool_4a"])
      elif name == "Mixed_5b":
        x = layers.max_pool3d(x, *POOLS["MaxPool_5a"])
      x = getattr(self, name)(x)
    return x

  def __call__(self, x: jax.Array) -> jax.Array:
    """NTHWC clip -> pooled float32 [N, feature_dim] or the feature map, according to `output`."""
    return layers.backbone_output(self.features(x), self.output, self.pool_size)


def s3d(*, rngs: nnx.Rngs, **kwargs) -> S3D:
  """S3D without gating; rejects the ResNet-only stride kwargs with a clear error."""
  for key in ("spatial_downsample", "temporal_downsample"):
    if key in kwargs:
      raise TypeError(f"s3d does not take {key!r} (its strides are fixed by the architecture)")
  return S3D(rngs=rngs, **kwargs)
