"""RoIAlign (average mode) matching `torchvision.ops.roi_align` / mmcv `RoIAlign(pool_mode="avg")`.

Layout is channels-last: `features` is [N, H, W, C] and the result is [K, out_h, out_w, C].

For every RoI `(b, x1, y1, x2, y2)` (input-pixel coordinates) and every output bin, the value is the mean of
`grid_h * grid_w` bilinear samples taken at regular positions inside the bin:

  start_x = x1 * spatial_scale - offset            (offset = 0.5 if aligned else 0)
  roi_w   = x2 * spatial_scale - offset - start_x  (aligned=False: roi_w = max(roi_w, 1))
  bin_w   = roi_w / out_w
  grid_w  = sampling_ratio if sampling_ratio > 0 else ceil(roi_w / out_w)
  x       = start_x + q * bin_w + (ix + 0.5) * bin_w / grid_w       ix = 0 .. grid_w - 1

(and the same along y). A bilinear sample at (y, x) follows torchvision's `bilinear_interpolate`: it is 0 if
`y < -1 or y > H or x < -1 or x > W`; otherwise y and x are clamped at 0 from below, `low = floor(y)` and when
`low >= H - 1` both neighbours become `H - 1`. The bin value is the sum of the samples divided by
`max(grid_h * grid_w, 1)`.

Implementation: the bilinear weights are separable in y and x (and so is the out-of-range test), so the op is one
vectorised gather of the 2 x 2 neighbours of every sample, `features[b, y_idx, x_idx]` with `y_idx` of shape
[K, out_h * grid_h * 2] and `x_idx` of shape [K, out_w * grid_w * 2], followed by an einsum with the y and x weights.
There is no Python loop over RoIs; the op is differentiable w.r.t. `features` (and, almost everywhere, the RoI
coordinates) and can be jitted.

Adaptive sampling (`sampling_ratio <= 0`) under jit: the per-RoI grid size `ceil(roi / out)` is data dependent, but
array shapes must be static. We therefore evaluate a static maximum grid `G` per axis and mask the samples with
`index >= grid` out. `G` is chosen as follows:
  * `max_adaptive_grid=(G_h, G_w)` (or an int) given explicitly: used as is;
  * rois are concrete (not traced): the exact maximum over the given RoIs (results identical to torchvision);
  * rois are traced: `ceil(H / out_h)` and `ceil(W / out_w)` (+1 for the aligned=False minimum size), which covers
    every RoI whose scaled extent lies inside the feature map.
A RoI needing more samples than `G` is sampled with `G` points per bin instead (positions recomputed for `G`, so
it is still an even average over the bin, but no longer bit-identical to torchvision). Pass `max_adaptive_grid`
when RoIs may be much larger than the feature map.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

IntPair = Union[int, Tuple[int, int], Sequence[int]]


def _pair(value: IntPair, name: str) -> Tuple[int, int]:
  if isinstance(value, (int, np.integer)):
    return int(value), int(value)
  value = tuple(int(v) for v in value)
  if len(value) != 2:
    raise ValueError(f"fedvssl_jax/ops/roi_align.py: {name} must be an int or a pair, got {value!r}")
  return value


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _axis_samples(start, length, out_size: int, grid, max_grid: int, size: int):
  """Sample indices and weights along one axis.

  Args:
    start: [K] RoI start in feature coordinates.
    length: [K] RoI extent in feature coordinates.
    out_size: number of output bins along the axis.
    grid: [K] int32 number of samples per bin (data dependent), already clipped to [0, max_grid].
    max_grid: static number of sample slots per bin.
    size: feature map size along the axis (H or W).

  Returns:
    idx: int32 [K, out_size, max_grid, 2] low / high neighbour indices.
    weight: float [K, out_size, max_grid, 2] bilinear weights, zero for masked or out-of-range samples.
  """
  dtype = start.dtype
  bin_size = length / out_size                                        # [K]
  bins = jnp.arange(out_size, dtype=dtype)                            # [P]
  slots = jnp.arange(max_grid, dtype=dtype)                           # [G]
  grid_f = jnp.maximum(grid, 1).astype(dtype)                         # [K]
  # Same operation order as torchvision: start + p * bin + (i + .5) * bin / grid.
  pos = (start[:, None, None] + bins[None, :, None] * bin_size[:, None, None]
         + (slots[None, None, :] + 0.5) * bin_size[:, None, None] / grid_f[:, None, None])  # [K, P, G]
  used = slots[None, None, :] < grid[:, None, None].astype(dtype)     # slot exists for this RoI
  inside = (pos >= -1.0) & (pos <= size)                               # torchvision's empty-sample test
  pos = jnp.maximum(pos, 0.0)
  low = jnp.floor(pos).astype(jnp.int32)
  at_edge = low >= size - 1
  low = jnp.where(at_edge, size - 1, low)
  high = jnp.where(at_edge, size - 1, low + 1)
  pos = jnp.where(at_edge, low.astype(dtype), pos)
  frac = pos - low.astype(dtype)
  valid = (used & inside).astype(dtype)
  weight = jnp.stack([(1.0 - frac) * valid, frac * valid], axis=-1)   # [K, P, G, 2]
  idx = jnp.stack([low, high], axis=-1)
  return idx, weight


def roi_align(features: jax.Array,
              rois: jax.Array,
              output_size: IntPair,
              spatial_scale: float = 1.0,
              sampling_ratio: int = -1,
              aligned: bool = True,
              max_adaptive_grid: Optional[IntPair] = None) -> jax.Array:
  """RoIAlign with average pooling, channels-last, numerically matching `torchvision.ops.roi_align`.

  Args:
    features: [N, H, W, C] float feature maps.
    rois: [K, 5] float RoIs `(batch_index, x1, y1, x2, y2)` in input-pixel coordinates (multiplied by
      `spatial_scale` to get feature coordinates). `batch_index` is cast to int32.
    output_size: `out` or `(out_h, out_w)` bins.
    spatial_scale: input-pixel to feature-map scale (e.g. 1/8 for a stride-8 feature map).
    sampling_ratio: samples per bin and axis; `<= 0` means adaptive `ceil(roi_size / out_size)` per RoI
      (see the module docstring for how this works under jit).
    aligned: if True, shift the RoI by -0.5 feature pixels (pixel-centre convention, Detectron2 / mmcv aligned);
      if False, the RoI width and height are clamped to at least 1.
    max_adaptive_grid: static upper bound `G` or `(G_h, G_w)` for adaptive sampling; ignored when
      `sampling_ratio > 0`.

  Returns:
    [K, out_h, out_w, C] pooled features, dtype of `features`.
  """
  if features.ndim != 4:
    raise ValueError(f"fedvssl_jax/ops/roi_align.py: features must be [N, H, W, C], got shape {features.shape}")
  if rois.ndim != 2 or rois.shape[-1] != 5:
    raise ValueError(f"fedvssl_jax/ops/roi_align.py: rois must be [K, 5], got shape {rois.shape}")
  out_h, out_w = _pair(output_size, "output_size")
  if out_h <= 0 or out_w <= 0:
    raise ValueError(f"fedvssl_jax/ops/roi_align.py: output_size must be positive, got {(out_h, out_w)}")
  _, height, width, _ = features.shape
  dtype = jnp.promote_types(features.dtype, jnp.float32)
  rois = jnp.asarray(rois, dtype)  # Stays a tracer under jit, concrete otherwise.

  offset = 0.5 if aligned else 0.0
  batch_idx = rois[:, 0].astype(jnp.int32)
  start_x = rois[:, 1] * spatial_scale - offset
  start_y = rois[:, 2] * spatial_scale - offset
  end_x = rois[:, 3] * spatial_scale - offset
  end_y = rois[:, 4] * spatial_scale - offset
  roi_w = end_x - start_x
  roi_h = end_y - start_y
  if not aligned:
    roi_w = jnp.maximum(roi_w, 1.0)
    roi_h = jnp.maximum(roi_h, 1.0)

  if sampling_ratio > 0:
    max_gh = max_gw = int(sampling_ratio)
    grid_h = jnp.full(roi_h.shape, max_gh, jnp.int32)
    grid_w = jnp.full(roi_w.shape, max_gw, jnp.int32)
  else:
    grid_h = jnp.ceil(roi_h / out_h).astype(jnp.int32)
    grid_w = jnp.ceil(roi_w / out_w).astype(jnp.int32)
    if max_adaptive_grid is not None:
      max_gh, max_gw = _pair(max_adaptive_grid, "max_adaptive_grid")
    elif _is_concrete(rois) and rois.shape[0] > 0:
      max_gh = max(int(np.max(np.asarray(grid_h))), 1)
      max_gw = max(int(np.max(np.asarray(grid_w))), 1)
    else:
      extra = 0 if aligned else 1
      max_gh = max(math.ceil(height / out_h) + extra, 1)
      max_gw = max(math.ceil(width / out_w) + extra, 1)
    grid_h = jnp.clip(grid_h, 0, max_gh)
    grid_w = jnp.clip(grid_w, 0, max_gw)

  return _roi_align_core(features, rois, start_y, start_x, roi_h, roi_w, grid_h, grid_w, batch_idx,
                         out_h=out_h, out_w=out_w, max_gh=max_gh, max_gw=max_gw)


@functools.partial(jax.jit, static_argnames=("out_h", "out_w", "max_gh", "max_gw"))
def _roi_align_core(features, rois, start_y, start_x, roi_h, roi_w, grid_h, grid_w, batch_idx, *, out_h, out_w,
                    max_gh, max_gw):
  """Gather + weighted sum with static grid bounds (jitted so that eager calls are fast)."""
  _, height, width, _ = features.shape
  dtype = start_x.dtype
  y_idx, y_wt = _axis_samples(start_y, roi_h, out_h, grid_h, max_gh, height)   # [K, out_h, Gh, 2]
  x_idx, x_wt = _axis_samples(start_x, roi_w, out_w, grid_w, max_gw, width)    # [K, out_w, Gw, 2]
  count = jnp.maximum(grid_h * grid_w, 1).astype(dtype)                         # [K]

  num_rois = rois.shape[0]
  y_flat = y_idx.reshape(num_rois, -1)                                          # [K, out_h*Gh*2]
  x_flat = x_idx.reshape(num_rois, -1)                                          # [K, out_w*Gw*2]
  gathered = features[batch_idx[:, None, None], y_flat[:, :, None], x_flat[:, None, :]]  # [K, Ny, Nx, C]
  gathered = gathered.reshape(num_rois, out_h, max_gh, 2, out_w, max_gw, 2, -1).astype(dtype)
  out = jnp.einsum("kpaj,kqbl,kpajqblc->kpqc", y_wt, x_wt, gathered, precision=jax.lax.Precision.HIGHEST)
  out = out / count[:, None, None, None]
  return out.astype(features.dtype)
