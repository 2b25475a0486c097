"""Building blocks shared by the 3D CNN backbones, matching PyTorch numerics.

Layout: activations are NTHWC (`[batch, time, height, width, channels]`); conv kernels are
`(kT, kH, kW, Cin, Cout)` (PyTorch `(Cout, Cin, kT, kH, kW)` transposed by `(2, 3, 4, 1, 0)`).

* `conv3d` builds an `nnx.Conv` with **explicit symmetric padding** (never 'SAME', whose stride-2 padding differs from
  PyTorch's) and PyTorch's `kaiming_normal_(mode="fan_out", nonlinearity="relu")` init (untruncated normal,
  std = sqrt(2 / (Cout * kT * kH * kW))).
* `conv_general_dilated` is `lax.conv_general_dilated`, except that on the CPU backend a 3-D convolution runs as a sum
  of kT 2-D convolutions over frames: it made the R3D-18 train step 4.0x faster on the CPU (docs/benchmarks.md:
  `python scripts/benchmark.py --mode=train ...` with and without `FEDVSSL_CONV3D=native`). Same maths;
  `FEDVSSL_CONV3D=native` turns it off.
* `BatchNorm` is a BatchNorm over the last axis with PyTorch semantics: statistics in float32 even under a bfloat16
  compute dtype, running variance updated with the *unbiased* batch variance (as `torch.nn.BatchNorm3d`), momentum in
  Flax's convention (`momentum=0.9` == PyTorch `momentum=0.1`). Params `scale`, `bias`; batch stats `mean`, `var`
  (the same names as `nnx.BatchNorm`). `model.train()` / `model.eval()` toggle `use_running_average`.
* `max_pool3d`, `adaptive_avg_pool3d`, `pool_features`: pooling with PyTorch's boundary rules.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

Dtype = Any



_INIT_CHUNK = 1 << 16


def chunked_normal(key: jax.Array, n: int) -> jax.Array | np.ndarray:
  """n standard normals (float32), drawn in fixed chunks of 65536: chunk i is `normal(fold_in(key, i), (65536,))`.

  XLA compiles `jax.random.normal` slowly on CPU (about 0.3-3 s per distinct shape, rank-5 shapes the worst), so every
  init draws from one compiled program whatever the kernel shape. Returns numpy outside tracing and a traced jnp
  array under `jit` / `eval_shape`; both give the same values.
  """
  n_chunks = max(1, -(-n // _INIT_CHUNK))
  first = jax.random.normal(jax.random.fold_in(key, 0), (_INIT_CHUNK,), jnp.float32)
  try:
    parts = [np.asarray(first)]
  except jax.errors.TracerArrayConversionError:
    rest = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (_INIT_CHUNK,), jnp.float32))(
        jnp.arange(1, n_chunks, dtype=jnp.uint32))
    return jnp.concatenate([first, rest.reshape(-1)])[:n]
  for i in range(1, n_chunks):
    parts.append(np.asarray(jax.random.normal(jax.random.fold_in(key, i), (_INIT_CHUNK,), jnp.float32)))
  return np.concatenate(parts)[:n]


def kaiming_normal_fan_out(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32,
                           out_sharding: Any = None) -> jax.Array:
  """PyTorch `kaiming_normal_(mode="fan_out", nonlinearity="relu")` for a conv kernel (kT, kH, kW, Cin, Cout).

  N(0, 2 / fan_out), untruncated, fan_out = Cout * kT * kH * kW (as torch's fan_out of (Cout, Cin, kT, kH, kW)).
  Normals come from `chunked_normal` (fast to compile on CPU; same values eager or traced).
  """
  del out_sharding
  shape = tuple(int(d) for d in shape)
  fan_out = shape[-1] * math.prod(shape[:-2])
  std = np.float32(math.sqrt(2.0 / fan_out))
  z = chunked_normal(key, math.prod(shape))
  if isinstance(z, np.ndarray):
    return jnp.asarray((z.reshape(shape) * std).astype(dtype))
  return (z.reshape(shape) * std).astype(dtype)


KAIMING_FAN_OUT = kaiming_normal_fan_out


def triple(v: int | Sequence[int]) -> tuple[int, int, int]:
  """Returns `v` as a 3-tuple (an int is repeated)."""
  if isinstance(v, int):
    return (v, v, v)
  v = tuple(int(x) for x in v)
  if len(v) != 3:
    raise ValueError(f"expected an int or 3 ints, got {v!r}")
  return v


def scale_channels(channels: int, width_multiplier: float) -> int:
  """Scaled channel count `max(1, round(channels * width_multiplier))`."""
  if width_multiplier <= 0:
    raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
  return max(1, int(round(channels * width_multiplier)))


def canonical_dtype(dtype: Optional[Dtype]) -> Optional[jnp.dtype]:
  """Accepts None, a numpy/jax dtype or its name ("bfloat16") and returns a `jnp.dtype` or None."""
  if dtype is None:
    return None
  return jnp.dtype(dtype)


_CHANNELS_LAST_3D = lax.ConvDimensionNumbers(lhs_spec=(0, 4, 1, 2, 3), rhs_spec=(4, 3, 0, 1, 2),
                                              out_spec=(0, 4, 1, 2, 3))
CONV3D_ENV = "FEDVSSL_CONV3D"  # "auto" (default: per-frame 2-D convs on CPU), "native" or "per_frame" (always)


def _conv3d_per_frame(lhs: jax.Array, rhs: jax.Array, strides: Sequence[int], padding: Sequence[tuple[int, int]],
                      **kwargs: Any) -> jax.Array:
  """3-D convolution [N, T, H, W, Cin] * (kT, kH, kW, Cin, Cout) as the sum over the kT kernel slices of 2-D
  convolutions of temporally shifted (and strided) frame stacks, each folded into the batch axis."""
  n, t, h, w, c = lhs.shape
  kt = rhs.shape[0]
  st = int(strides[0])
  (pt0, pt1) = padding[0]
  if pt0 or pt1:
    lhs = jnp.pad(lhs, ((0, 0), (pt0, pt1), (0, 0), (0, 0), (0, 0)))
  t_out = (t + pt0 + pt1 - kt) // st + 1
  if t_out < 1:
    raise ValueError(f"conv3d: temporal size {t} (padding {padding[0]}) is smaller than the kernel {kt}")
  out = None
  for k in range(kt):
    frames = lhs[:, k:k + st * (t_out - 1) + 1:st]
    y = lax.conv_general_dilated(frames.reshape((n * t_out, h, w, c)), rhs[k], tuple(strides[1:]),
                                 [tuple(p) for p in padding[1:]], dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 **kwargs)
    out = y if out is None else out + y
  return out.reshape((n, t_out) + out.shape[1:])


def conv3d_per_frame() -> bool:
  """Whether plain channels-last 3-D convolutions run as per-frame 2-D ones: `FEDVSSL_CONV3D` "per_frame", or "auto"
  (unset) on the CPU backend; never with "native".

  Raises:
    ValueError: `FEDVSSL_CONV3D` has another value.
  """
  mode = os.environ.get(CONV3D_ENV, "auto")
  if mode not in ("auto", "native", "per_frame"):
    raise ValueError(f"{CONV3D_ENV}={mode!r}: expected auto, native or per_frame")
  return mode == "per_frame" or (mode == "auto" and jax.default_backend() == "cpu")


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
                         lhs_dilation: Optional[Sequence[int]] = None, rhs_dilation: Optional[Sequence[int]] = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1, batch_group_count: int = 1,
                         precision: Any = None, preferred_element_type: Any = None, out_sharding: Any = None
                         ) -> jax.Array:
  """`lax.conv_general_dilated` with a fast CPU path for plain channels-last 3-D convolutions (see the module
  docstring). The per-frame path is taken for 5-D NDHWC inputs without dilation or groups, explicit or "VALID"
  padding, when `conv3d_per_frame()` is True."""
  kwargs = dict(precision=precision, preferred_element_type=preferred_element_type)
  per_frame = conv3d_per_frame()
  if per_frame and lhs.ndim == 5 and feature_group_count == 1 and batch_group_count == 1 and out_sharding is None:
    dims = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    pads = [(0, 0)] * 3 if isinstance(padding, str) and padding.upper() == "VALID" else padding
    if (dims == _CHANNELS_LAST_3D and all(d == 1 for d in (lhs_dilation or (1,))) and
        all(d == 1 for d in (rhs_dilation or (1,))) and not isinstance(pads, str)):
      return _conv3d_per_frame(lhs, rhs, window_strides, [tuple(int(v) for v in p) for p in pads], **kwargs)
  if out_sharding is not None:
    kwargs["out_sharding"] = out_sharding
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                                  feature_group_count, batch_group_count, **kwargs)


def conv3d(in_features: int, out_features: int, kernel_size: int | Sequence[int],
           strides: int | Sequence[int] = 1, padding: int | Sequence[int] = 0, *,
           use_bias: bool = False, dtype: Optional[Dtype] = None,
           param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> nnx.Conv:
  """A 3D convolution equal to `torch.nn.Conv3d(in, out, kernel_size, stride, padding, bias=use_bias)`.

  Args:
    in_features: input channels Cin.
    out_features: output channels Cout.
    kernel_size: (kT, kH, kW) or an int.
    strides: (sT, sH, sW) or an int.
    padding: symmetric zero padding (pT, pH, pW) or an int, applied on both sides of each axis as in PyTorch.
    use_bias: add a bias (zeros init).
    dtype: compute dtype (None = from inputs / params).
    param_dtype: dtype of the kernel.
    rngs: random streams for the kaiming-normal (fan_out, relu) init.

  Returns:
    `nnx.Conv` mapping [N, T, H, W, Cin] -> [N, T', H', W', Cout]; its kernel is (kT, kH, kW, Cin, Cout).
  """
  pads = [(p, p) for p in triple(padding)]
  return nnx.Conv(in_features, out_features, triple(kernel_size), triple(strides), padding=pads,
                  use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, kernel_init=KAIMING_FAN_OUT,
                  conv_general_dilated=conv_general_dilated, rngs=rngs)


class BatchNorm(nnx.Module):
  """BatchNorm over the channel (last) axis with PyTorch `BatchNorm3d` semantics.

  Train mode (`use_running_average=False`): normalise with the batch mean and biased variance over all axes but the
  last, and update `mean <- m * mean + (1 - m) * batch_mean`, `var <- m * var + (1 - m) * batch_var * n / (n - 1)`
  (unbiased, as PyTorch; n = number of reduced elements, across devices when `axis_name` is set). Eval mode: normalise
  with the running statistics. Statistics and the per-channel affine are computed in float32; the normalised output
  is in `dtype` (default: the input dtype).

  Attributes:
    scale, bias: `nnx.Param` [C] (init 1 and 0).
    mean, var: `nnx.BatchStat` [C] float32 (init 0 and 1).
  """

  def __init__(self, num_features: int, *, momentum: float = 0.9, epsilon: float = 1e-5,
               use_running_average: bool = False, unbiased_running_var: bool = True,
               axis_name: Optional[str] = None, dtype: Optional[Dtype] = None,
               param_dtype: Dtype = jnp.float32, rngs: Optional[nnx.Rngs] = None):
    del rngs  # deterministic init, kept for a uniform constructor signature.
    if not 0.0 <= momentum <= 1.0:
      raise ValueError(f"BatchNorm momentum must be in [0, 1] (Flax convention), got {momentum}")
    self.num_features = num_features
    self.momentum = float(momentum)
    self.epsilon = float(epsilon)
    self.use_running_average = use_running_average
    self.unbiased_running_var = unbiased_running_var
    self.axis_name = axis_name
    self.dtype = canonical_dtype(dtype)
    # numpy constants -> device arrays: no per-shape compilation at construction.
    self.scale = nnx.Param(jnp.asarray(np.ones((num_features,), jnp.dtype(param_dtype))))
    self.bias = nnx.Param(jnp.asarray(np.zeros((num_features,), jnp.dtype(param_dtype))))
    self.mean = nnx.BatchStat(jnp.asarray(np.zeros((num_features,), np.float32)))
    self.var = nnx.BatchStat(jnp.asarray(np.ones((num_features,), np.float32)))

  def __call__(self, x: jax.Array, use_running_average: Optional[bool] = None) -> jax.Array:
    """Normalises `x` [..., C]; returns the same shape in `dtype` (or x.dtype)."""
    if x.shape[-1] != self.num_features:
      raise ValueError(f"BatchNorm expects {self.num_features} channels in the last axis, got shape {x.shape}")
    use_ra = self.use_running_average if use_running_average is None else use_running_average
    out_dtype = self.dtype or x.dtype
    axes = tuple(range(x.ndim - 1))
    if use_ra:
      mean = self.mean[...]
      var = self.var[...]
    else:
      xf = x.astype(jnp.float32)
      mean = jnp.mean(xf, axis=axes)
      n = math.prod(x.shape[:-1])
      if self.axis_name is not None:
        mean = jax.lax.pmean(mean, self.axis_name)
        n = n * jax.lax.psum(1, self.axis_name)
      var = jnp.mean(jnp.square(xf - mean), axis=axes)
      if self.axis_name is not None:
        var = jax.lax.pmean(var, self.axis_name)
      run_var = var * (n / max(n - 1, 1)) if self.unbiased_running_var else var
      m = self.momentum
      self.mean[...] = jax.lax.stop_gradient(m * self.mean[...] + (1.0 - m) * mean)
      self.var[...] = jax.lax.stop_gradient(m * self.var[...] + (1.0 - m) * run_var)
    inv = jax.lax.rsqrt(var + self.epsilon) * self.scale[...].astype(jnp.float32)
    if out_dtype == jnp.float32:
      return (x.astype(jnp.float32) - mean) * inv + self.bias[...].astype(jnp.float32)
    shift = self.bias[...].astype(jnp.float32) - mean * inv
    return x.astype(out_dtype) * inv.astype(out_dtype) + shift.astype(out_dtype)


def max_pool3d(x: jax.Array, kernel_size: int | Sequence[int], strides: int | Sequence[int],
               padding: int | Sequence[int] = 0) -> jax.Array:
  """`torch.nn.MaxPool3d(kernel_size, stride, padding)` (ceil_mode=False) on NTHWC input; padding is -inf."""
  k, s, p = triple(kernel_size), triple(strides), triple(padding)
  init = jnp.array(-jnp.inf, x.dtype)
  return jax.lax.reduce_window(x, init, jax.lax.max, (1, *k, 1), (1, *s, 1),
                               [(0, 0), *[(pi, pi) for pi in p], (0, 0)])


def _adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
  """PyTorch adaptive pooling bins: bin i covers [floor(i*size/out), ceil((i+1)*size/out))."""
  return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool3d(x: jax.Array, output_size: Sequence[int]) -> jax.Array:
  """`torch.nn.AdaptiveAvgPool3d(output_size)` on NTHWC input, computed in float32.

  Args:
    x: [N, T, H, W, C].
    output_size: (oT, oH, oW).

  Returns:
    float32 [N, oT, oH, oW, C]; bins (possibly overlapping) as in PyTorch.
  """
  ot, oh, ow = triple(output_size)
  xf = x.astype(jnp.float32)
  _, t, h, w, _ = x.shape
  if (ot, oh, ow) == (1, 1, 1):
    return jnp.mean(xf, axis=(1, 2, 3), keepdims=True)
  planes = []
  for t0, t1 in _adaptive_bins(t, ot):
    rows = []
    for h0, h1 in _adaptive_bins(h, oh):
      cols = [jnp.mean(xf[:, t0:t1, h0:h1, w0:w1, :], axis=(1, 2, 3)) for w0, w1 in _adaptive_bins(w, ow)]
      rows.append(jnp.stack(cols, axis=1))  # [N, oW, C]
    planes.append(jnp.stack(rows, axis=1))  # [N, oH, oW, C]
  return jnp.stack(planes, axis=1)  # [N, oT, oH, oW, C]


def pool_features(x: jax.Array, pool_size: Optional[Sequence[int]]) -> jax.Array:
  """Pools a feature map [N, T, H, W, C] to float32 features.

  `pool_size=None`: global mean -> [N, C]. Otherwise adaptive average pool to `pool_size` (oT, oH, oW), then flatten in
  PyTorch's (C, T, H, W) order -> [N, C * oT * oH * oW], equal to `torch.flatten(adaptive_pool(x_ncthw), 1)`.
  """
  if pool_size is None:
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
  pooled = adaptive_avg_pool3d(x, pool_size)
  return jnp.transpose(pooled, (0, 4, 1, 2, 3)).reshape(x.shape[0], -1)


def pooled_dim(channels: int, pool_size: Optional[Sequence[int]]) -> int:
  """Size of `pool_features` output for `channels` feature-map channels."""
  return channels if pool_size is None else channels * math.prod(triple(pool_size))


def check_input(x: jax.Array, in_channels: int, name: str) -> None:
  """Raises a ValueError unless `x` is [N, T, H, W, in_channels] floating point."""
  if x.ndim != 5 or x.shape[-1] != in_channels:
    raise ValueError(f"{name} expects NTHWC input [N, T, H, W, {in_channels}], got shape {tuple(x.shape)}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"{name} expects floating point input, got {x.dtype}")


def backbone_output(fmap: jax.Array, output: str, pool_size) -> jax.Array:
  """A backbone's result from its final feature map: the map itself (`output="feature_map"`) or pooled float32."""
  if output == "feature_map":
    return fmap
  return pool_features(fmap, pool_size)
