"""Catch-the-Patch (CtP) trajectory targets and loss (pure functions on arrays).

Boxes are `(x1, y1, x2, y2)` in input pixels. For a trajectory with reference box r (its frame-0 box), centre
`c = (p1 + p2) / 2` and size `s = max(p2 - p1, 1)` (per axis), the regression target of frame t is

  delta_t = [(c_t - c_r - mean_xy) / std_xy, (log(s_t / s_r) - mean_wh) / std_wh]

with means (0, 0, 0, 0) and stds (0.8, 0.8, 0.04, 0.04) by default. The centre delta is in raw pixels (not divided
by the box size). The loss is smooth-L1 (beta = 1) summed over frames and divided by `max(1, sum(weights))`.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

DEFAULT_TARGET_MEANS = (0.0, 0.0, 0.0, 0.0)
DEFAULT_TARGET_STDS = (0.8, 0.8, 0.04, 0.04)


def _check_boxes(x: jax.Array, name: str) -> None:
  if x.shape[-1] != 4:
    raise ValueError(f"fedvssl_jax/losses/ctp.py: {name} must end in 4 box coordinates, got shape {x.shape}")


def box_centers_sizes(boxes: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """Centres and clamped sizes of `(x1, y1, x2, y2)` boxes.

  Args:
    boxes: [..., 4] boxes in pixels.

  Returns:
    (centres [..., 2] = (p1 + p2) / 2, sizes [..., 2] = max(p2 - p1, 1)), both in pixels.
  """
  _check_boxes(boxes, "boxes")
  centers = (boxes[..., 0:2] + boxes[..., 2:4]) * 0.5
  sizes = jnp.maximum(boxes[..., 2:4] - boxes[..., 0:2], 1.0)
  return centers, sizes


def encode_ctp_targets(gt_trajs: jax.Array,
                       ref_boxes: Optional[jax.Array] = None,
                       means: Sequence[float] = DEFAULT_TARGET_MEANS,
                       stds: Sequence[float] = DEFAULT_TARGET_STDS) -> jax.Array:
  """Encodes box trajectories as normalised deltas relative to a reference box.

  Args:
    gt_trajs: [B, N_traj, T, 4] boxes `(x1, y1, x2, y2)` in pixels.
    ref_boxes: [B, N_traj, 4] reference boxes; default: the frame-0 boxes `gt_trajs[:, :, 0]`.
    means: 4 target means (dx, dy, dw, dh).
    stds: 4 target stds.

  Returns:
    [B, N_traj, T, 4] float32 deltas `(dcx, dcy, dlogw, dlogh)`, normalised by means/stds.
  """
  gt_trajs = jnp.asarray(gt_trajs, jnp.float32)
  _check_boxes(gt_trajs, "gt_trajs")
  if ref_boxes is None:
    ref_boxes = gt_trajs[..., 0, :]
  ref_boxes = jnp.asarray(ref_boxes, jnp.float32)
  ref_ctr, ref_size = box_centers_sizes(ref_boxes)
  ctr, size = box_centers_sizes(gt_trajs)
  ctr_delta = ctr - ref_ctr[..., None, :]
  size_delta = jnp.log(size) - jnp.log(ref_size)[..., None, :]
  deltas = jnp.concatenate([ctr_delta, size_delta], axis=-1)
  return (deltas - jnp.asarray(means, jnp.float32)) / jnp.asarray(stds, jnp.float32)


def decode_ctp_targets(deltas: jax.Array,
                       ref_boxes: jax.Array,
                       means: Sequence[float] = DEFAULT_TARGET_MEANS,
                       stds: Sequence[float] = DEFAULT_TARGET_STDS) -> jax.Array:
  """Inverse of `encode_ctp_targets`: deltas back to boxes.

  Args:
    deltas: [B, N_traj, T, 4] normalised deltas.
    ref_boxes: [B, N_traj, 4] reference (frame-0) boxes in pixels.
    means, stds: as in `encode_ctp_targets`.

  Returns:
    [B, N_traj, T, 4] boxes `(x1, y1, x2, y2)` in pixels (`ctr = c_r + d`, `size = exp(d) * s_r`).
  """
  deltas = jnp.asarray(deltas, jnp.float32)
  _check_boxes(deltas, "deltas")
  deltas = deltas * jnp.asarray(stds, jnp.float32) + jnp.asarray(means, jnp.float32)
  ref_ctr, ref_size = box_centers_sizes(jnp.asarray(ref_boxes, jnp.float32))
  ctr = ref_ctr[..., None, :] + deltas[..., 0:2]
  size = jnp.exp(deltas[..., 2:4]) * ref_size[..., None, :]
  return jnp.concatenate([ctr - 0.5 * size, ctr + 0.5 * size], axis=-1)


def aligned_box_iou(a: jax.Array, b: jax.Array, eps: float = 1e-6) -> jax.Array:
  """IoU of corresponding boxes, as mmcv's `bbox_overlaps(a, b, aligned=True)` (mode "iou", offset 0) that CtP's
  `forward_test` uses: area = (x2 - x1) (y2 - y1), overlap clamped at 0, IoU = overlap / max(union, eps).

  Args:
    a, b: [..., 4] boxes `(x1, y1, x2, y2)` in pixels, same shape.

  Returns:
    float32 [...] IoU in [0, 1].
  """
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  _check_boxes(a, "a")
  if a.shape != b.shape:
    raise ValueError(f"fedvssl_jax/losses/ctp.py: aligned_box_iou shapes differ: {a.shape} vs {b.shape}")
  lt = jnp.maximum(a[..., :2], b[..., :2])
  rb = jnp.minimum(a[..., 2:], b[..., 2:])
  wh = jnp.maximum(rb - lt, 0.0)
  overlap = wh[..., 0] * wh[..., 1]
  area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
  area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  return overlap / jnp.maximum(area_a + area_b - overlap, eps)


def smooth_l1(pred: jax.Array, target: jax.Array, beta: float = 1.0) -> jax.Array:
  """Elementwise smooth-L1: 0.5 d^2 / beta if d < beta else d - 0.5 beta, with d = |pred - target|."""
  if beta <= 0:
    raise ValueError(f"fedvssl_jax/losses/ctp.py: smooth_l1 beta must be > 0, got {beta}")
  diff = jnp.abs(pred - target)
  return jnp.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def ctp_loss(pred: jax.Array,
             target: jax.Array,
             weights: Optional[jax.Array] = None,
             beta: float = 1.0) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """CtP regression loss.

  Args:
    pred: [B, N_traj, T, 4] predicted normalised deltas.
    target: [B, N_traj, T, 4] encoded targets (`encode_ctp_targets`).
    weights: [B, N_traj, T] (or [..., 1]) per-frame weights; default all ones.
    beta: smooth-L1 transition point.

  Returns:
    (total, {"loss_ctr", "loss_size"}): `loss_ctr = sum(L[..., :2] * w) / max(1, sum(w))`, likewise `loss_size`
    for `L[..., 2:]`, and `total = loss_ctr + loss_size` (float32 scalars).
  """
  if pred.shape != target.shape:
    raise ValueError(f"fedvssl_jax/losses/ctp.py: pred {pred.shape} and target {target.shape} differ")
  _check_boxes(pred, "pred")
  pred = pred.astype(jnp.float32)
  target = jnp.asarray(target, jnp.float32)
  if weights is None:
    weights = jnp.ones(pred.shape[:-1] + (1,), jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  if weights.shape == pred.shape[:-1]:
    weights = weights[..., None]
  if weights.shape != pred.shape[:-1] + (1,):
    raise ValueError(f"fedvssl_jax/losses/ctp.py: weights shape {weights.shape} does not match pred {pred.shape}")
  loss = smooth_l1(pred, target, beta) * weights
  count = jnp.maximum(1.0, jnp.sum(weights))
  loss_ctr = jnp.sum(loss[..., 0:2]) / count
  loss_size = jnp.sum(loss[..., 2:4]) / count
  return loss_ctr + loss_size, {"loss_ctr": loss_ctr, "loss_size": loss_size}
