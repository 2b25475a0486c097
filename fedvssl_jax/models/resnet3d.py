"""ResNet-18 video backbones: R3D-18 and R(2+1)D-18 (torchvision and CtP variants) in Flax NNX.

Structure (PyTorch's, see /work/shared/reference/pretext_tasks.md §1), input NTHWC:

* stem, 3d (R3D): `conv` Conv(Cin->64, k=(3,7,7), s=(1,2,2), p=(1,3,3)) -> `bn` -> ReLU.
* stem, 2.5d (R(2+1)D): `conv_s` Conv(Cin->45, k=(1,7,7), s=(1,2,2), p=(0,3,3)) -> `bn_s` -> ReLU ->
  `conv_t` Conv(45->64, k=(3,1,1), p=(1,0,0)) -> `bn_t` -> ReLU.
* 4 stages `layer1..layer4` of 2 `BasicBlock`s, channels (64, 128, 256, 512). The first block of stage i has stride
  (st, ss, ss) with st = 2 if `temporal_downsample[i]` and ss = 2 if `spatial_downsample[i]`.
* BasicBlock: out = relu(bn1(conv1(x))); out = bn2(conv2(out)); out = relu(out + downsample_bn(downsample(x)))
  (identity when stride 1 and Cin == Cout). `downsample` is a plain 1x1x1 conv with the block stride.
* conv1/conv2: a 3x3x3 conv (`conv`, padding 1) for R3D, or a (2+1)D conv for R(2+1)D:
  `conv_s` Conv(Cin->M, k=(1,3,3), s=(1,ss,ss), p=(0,1,1)) -> `bn_s` -> ReLU -> `conv_t` Conv(M->Cout, k=(3,1,1),
  s=(st,1,1), p=(1,0,0)). All convs have no bias.
* Mid-planes M: torchvision computes M = (Cin*Cout*27) // (Cin*9 + 3*Cout) once per block from (inplanes, planes) and
  reuses it for conv2; CtP recomputes M = int(27*Cin*Cout / (9*Cin + 3*Cout)) per conv from that conv's own Cin.
  Both are applied to the width-scaled channel counts.

Parameter paths (`nnx.to_pure_dict(nnx.state(model))`) follow CtP's module names:
`stem/conv`, `stem/bn` | `stem/conv_s`, `stem/bn_s`, `stem/conv_t`, `stem/bn_t`;
`layerX/Y/conv1/conv` (R3D) | `layerX/Y/conv1/{conv_s,bn_s,conv_t}` (R(2+1)D); `layerX/Y/bn1`, `layerX/Y/conv2/...`,
`layerX/Y/bn2`, `layerX/Y/downsample/conv`, `layerX/Y/downsample_bn`. Convs hold `kernel`; BNs hold `scale`, `bias`
(Param) and `mean`, `var` (BatchStat).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fedvssl_jax.models import layers

STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_BLOCKS = (2, 2, 2, 2)
STEM_CHANNELS = 64
STEM_MID_CHANNELS = 45  # hard-coded in both torchvision's R2Plus1dStem and CtP's 2.5d stem.
OUTPUTS = ("pooled", "feature_map")


def torchvision_midplanes(inplanes: int, planes: int) -> int:
  """torchvision's R(2+1)D mid-planes for a block: (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)."""
  return (inplanes * planes * 27) // (inplanes * 9 + 3 * planes)


def ctp_midplanes(cin: int, cout: int) -> int:
  """CtP's R(2+1)D mid-planes for one conv: int(3 * cin * cout * 3 * 3 / (cin * 3 * 3 + 3 * cout))."""
  return int(3 * cin * cout * 3 * 3 / (cin * 3 * 3 + 3 * cout))


class _BNFactory:
  """Holds the BatchNorm / conv settings shared by every layer of a backbone."""

  def __init__(self, bn_epsilon: float, bn_momentum: float, dtype, param_dtype, rngs: nnx.Rngs):
    self.bn_epsilon = bn_epsilon
    self.bn_momentum = bn_momentum
    self.dtype = dtype
    self.param_dtype = param_dtype
    self.rngs = rngs

  def bn(self, c: int) -> layers.BatchNorm:
    return layers.BatchNorm(c, momentum=self.bn_momentum, epsilon=self.bn_epsilon, dtype=self.dtype,
                            param_dtype=self.param_dtype)

  def conv(self, cin: int, cout: int, k, s=1, p=0) -> nnx.Conv:
    return layers.conv3d(cin, cout, k, s, p, dtype=self.dtype, param_dtype=self.param_dtype, rngs=self.rngs)


class Stem3d(nnx.Module):
  """R3D stem: conv (3,7,7)/(1,2,2) -> bn -> relu. [N,T,H,W,Cin] -> [N,T,H/2,W/2,Cout]."""

  def __init__(self, cin: int, cout: int, f: _BNFactory):
    self.conv = f.conv(cin, cout, (3, 7, 7), (1, 2, 2), (1, 3, 3))
    self.bn = f.bn(cout)

  def __call__(self, x):
    return nnx.relu(self.bn(self.conv(x)))


class Stem2p5d(nnx.Module):
  """R(2+1)D stem: conv_s (1,7,7)/(1,2,2) -> bn_s -> relu -> conv_t (3,1,1) -> bn_t -> relu."""

  def __init__(self, cin: int, mid: int, cout: int, f: _BNFactory):
    self.conv_s = f.conv(cin, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3))
    self.bn_s = f.bn(mid)
    self.conv_t = f.conv(mid, cout, (3, 1, 1), 1, (1, 0, 0))
    self.bn_t = f.bn(cout)

  def __call__(self, x):
    x = nnx.relu(self.bn_s(self.conv_s(x)))
    return nnx.relu(self.bn_t(self.conv_t(x)))


class StridedConv(nnx.Module):
  """One cubic conv with stride (st,ss,ss) and padding k // 2; param path `.../conv/kernel`. k=3: R3D's conv1/conv2;
  k=1: the shortcut `downsample` (CtP's `downsample.conv`)."""

  def __init__(self, cin: int, cout: int, k: int, stride: tuple[int, int], f: _BNFactory):
    st, ss = stride
    self.conv = f.conv(cin, cout, k, (st, ss, ss), k // 2)

  def __call__(self, x):
    return self.conv(x)


class Conv2Plus1d(nnx.Module):
  """(2+1)D conv: conv_s (1,3,3)/(1,ss,ss) -> bn_s -> relu -> conv_t (3,1,1)/(st,1,1). BN of conv_t is outside."""

  def __init__(self, cin: int, mid: int, cout: int, stride: tuple[int, int], f: _BNFactory):
    st, ss = stride
    self.conv_s = f.conv(cin, mid, (1, 3, 3), (1, ss, ss), (0, 1, 1))
    self.bn_s = f.bn(mid)
    self.conv_t = f.conv(mid, cout, (3, 1, 1), (st, 1, 1), (1, 0, 0))

  def __call__(self, x):
    return self.conv_t(nnx.relu(self.bn_s(self.conv_s(x))))


class BasicBlock(nnx.Module):
  """ResNet basic block (see module docstring). `mids` = (M1, M2) for (2+1)D convs, None for 3D convs."""

  def __init__(self, cin: int, cout: int, stride: tuple[int, int], mids: Optional[tuple[int, int]],
               f: _BNFactory):
    if mids is None:
      self.conv1 = StridedConv(cin, cout, 3, stride, f)
      self.conv2 = StridedConv(cout, cout, 3, (1, 1), f)
    else:
      self.conv1 = Conv2Plus1d(cin, mids[0], cout, stride, f)
      self.conv2 = Conv2Plus1d(cout, mids[1], cout, (1, 1), f)
    self.bn1 = f.bn(cout)
    self.bn2 = f.bn(cout)
    if stride != (1, 1) or cin != cout:
      self.downsample = StridedConv(cin, cout, 1, stride, f)
      self.downsample_bn = f.bn(cout)
    else:
      self.downsample = None
      self.downsample_bn = None

  def __call__(self, x):
    out = nnx.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = x if self.downsample is None else self.downsample_bn(self.downsample(x))
    return nnx.relu(out + identity)


def _bools4(v: Sequence[bool], name: str) -> tuple[bool, bool, bool, bool]:
  v = tuple(bool(b) for b in v)
  if len(v) != 4:
    raise ValueError(f"{name} must have 4 entries (stages 1..4), got {v!r}")
  return v


class VideoResNet(nnx.Module):
  """ResNet-18 video backbone (R3D or R(2+1)D), NTHWC in.

  Args:
    conv_type: "3d" (R3D) or "2plus1d" (R(2+1)D).
    midplanes_rule: "torchvision" or "ctp" (only used for "2plus1d").
    in_channels: input channels.
    width_multiplier: scales every channel count (>= 1 channel each), mid-planes from the scaled counts.
    spatial_downsample / temporal_downsample: per stage 1..4, stride 2 in H, W / in T for the first block.
    bn_epsilon, bn_momentum: BatchNorm settings (momentum in Flax convention).
    output: "pooled" -> float32 [N, feature_dim]; "feature_map" -> [N, T', H', W', out_channels] in the compute dtype.
    pool_size: None (global mean) or (oT, oH, oW) adaptive average pool flattened in (C, T, H, W) order.
    residual_frames: feed the stem the differences of consecutive input frames, x[:, t + 1] - x[:, t] (T - 1 frames
      from a T-frame clip), instead of the frames: the "residual frames" input of Tao, Wang & Yamasaki, "Rethinking
      motion representation: residual frames with 3D ConvNets" (2020). A static background cancels out, so the
      network sees what moves. Stored with an exported backbone (its model.json), so every later use feeds it alike.
    dtype: compute dtype (None = float32); param_dtype: parameter dtype.
    rngs: init randomness.

  Attributes:
    feature_dim: size of the pooled output; out_channels: channels of the feature map.
  """

  def __init__(self, *, conv_type: str, midplanes_rule: str = "torchvision", in_channels: int = 3,
               width_multiplier: float = 1.0,
               spatial_downsample: Sequence[bool] = (False, True, True, True),
               temporal_downsample: Optional[Sequence[bool]] = None,
               bn_epsilon: float = 1e-5, bn_momentum: float = 0.9, output: str = "pooled",
               pool_size: Optional[Sequence[int]] = None, residual_frames: bool = False, dtype: Any = None,
               param_dtype: Any = jnp.float32, rngs: nnx.Rngs):
    if conv_type not in ("3d", "2plus1d"):
      raise ValueError(f"conv_type must be '3d' or '2plus1d', got {conv_type!r}")
    if midplanes_rule not in ("torchvision", "ctp"):
      raise ValueError(f"midplanes_rule must be 'torchvision' or 'ctp', got {midplanes_rule!r}")
    if output not in OUTPUTS:
      raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    spatial = _bools4(spatial_downsample, "spatial_downsample")
    temporal = spatial if temporal_downsample is None else _bools4(temporal_downsample, "temporal_downsample")
    self.conv_type = conv_type
    self.midplanes_rule = midplanes_rule
    self.in_channels = int(in_channels)
    self.output = output
    self.pool_size = None if pool_size is None else layers.triple(pool_size)
    self.residual_frames = bool(residual_frames)
    self.dtype = layers.canonical_dtype(dtype)
    f = _BNFactory(float(bn_epsilon), float(bn_momentum), self.dtype, layers.canonical_dtype(param_dtype), rngs)

    wm = float(width_multiplier)
    stem_out = layers.scale_channels(STEM_CHANNELS, wm)
    if conv_type == "3d":
      self.stem = Stem3d(self.in_channels, stem_out, f)
    else:
      self.stem = Stem2p5d(self.in_channels, layers.scale_channels(STEM_MID_CHANNELS, wm), stem_out, f)

    cin = stem_out
    for i, (base, nblocks) in enumerate(zip(STAGE_CHANNELS, STAGE_BLOCKS)):
      cout = layers.scale_channels(base, wm)
      blocks = []
      for b in range(nblocks):
        stride = ((2 if temporal[i] else 1), (2 if spatial[i] else 1)) if b == 0 else (1, 1)
        mids = None
        if conv_type == "2plus1d":
          if midplanes_rule == "torchvision":
            m = torchvision_midplanes(cin, cout)
            mids = (m, m)
          else:
            mids = (ctp_midplanes(cin, cout), ctp_midplanes(cout, cout))
        blocks.append(BasicBlock(cin, cout, stride, mids, f))
        cin = cout
      setattr(self, f"layer{i + 1}", nnx.List(blocks))
    self.out_channels = cin
    self.feature_dim = layers.pooled_dim(cin, self.pool_size)

  def features(self, x: jax.Array) -> jax.Array:
    """Last-stage feature map [N, T', H', W', out_channels] (compute dtype) for NTHWC input x."""
    layers.check_input(x, self.in_channels, type(self).__name__)
    if self.residual_frames:
      if x.shape[1] < 2:
        raise ValueError(f"{type(self).__name__}(residual_frames=True) needs clips of >= 2 frames, got shape "
                         f"{tuple(x.shape)}")
      x = x[:, 1:] - x[:, :-1]
    if self.dtype is not None:
      x = x.astype(self.dtype)
    x = self.stem(x)
    for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
      for block in stage:
        x = block(x)
    return x

  def __call__(self, x: jax.Array) -> jax.Array:
    """NTHWC clip -> pooled float32 [N, feature_dim] or feature map, according to `output`."""
    return layers.backbone_output(self.features(x), self.output, self.pool_size)


def r3d_18(*, rngs: nnx.Rngs, **kwargs) -> VideoResNet:
  """torchvision / CtP R3D-18 (BN eps 1e-5 by default)."""
  return VideoResNet(conv_type="3d", rngs=rngs, **kwargs)


def r2plus1d_18(*, rngs: nnx.Rngs, **kwargs) -> VideoResNet:
  """torchvision R(2+1)D-18: per-block mid-planes reused for conv2, BN eps 1e-5 by default."""
  return VideoResNet(conv_type="2plus1d", midplanes_rule="torchvision", rngs=rngs, **kwargs)


def r2plus1d_18_ctp(*, rngs: nnx.Rngs, **kwargs) -> VideoResNet:
  """CtP R(2+1)D-18: per-conv mid-planes, BN eps 1e-3 by default."""
  kwargs.setdefault("bn_epsilon", 1e-3)
  return VideoResNet(conv_type="2plus1d", midplanes_rule="ctp", rngs=rngs, **kwargs)
