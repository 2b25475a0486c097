"""CtP's PatchMask transform: paste moving patches (cut from the same video) along random trajectories.

Follows microsoft/CtP `pyvrl/models/pretraining/ctp/ctp_transforms.py` (`PatchMask`, `RandomRegionSampler`) and
`pyvrl/datasets/transforms/dynamic_utils.py`, with every random draw taken from one `np.random.Generator`
(deterministic for a seed). For a uint8 clip [T, H, W, 3]:

1. Initial boxes: `num_rois` (3) anchors drawn from the 6 x 7 grid `w = s * sqrt(r)`, `h = s / sqrt(r)`; each side
   times `exp(U(-scale_jitter, scale_jitter))`, clipped to [1, W - 1] / [1, H - 1]; `x1 ~ U(0, W - w)`,
   `y1 ~ U(0, H - h)`.
2. Motion: centre key frames (`sample_key_frames` with `key_frame_probs`); at each next key frame the centres move by
   `U(-loc_velocity * d, loc_velocity * d)` (d = key-frame distance), clipped to [size0 / 2, W - size0 / 2]; sizes
   use their own key frames and are multiplied by `exp(U(-size_velocity * d, size_velocity * d))`. Between key frames
   one rule per segment ("uniform" p .7, "accelerate" .15, "decelerate" .15) interpolates. Boxes `ctr -+ size / 2`
   are clipped to the image, rounded to int and clipped again.
3. Patch content: per trajectory a source frame `c ~ U{0..T-1}`; the frame-c box of the *same clip* is cropped and
   `cv2.resize`d (bilinear) to every frame's box size. `patch_source="noise"` (not in CtP) uses a texture of random
   colour blocks (`noise_block` pixels, each channel U{0..255}) of the frame-c box's size instead; see
   `PATCH_SOURCES`.
4. Alpha: shape rectangle / ellipse / rhombus (p .5 / .35 / .15) on the source-frame box size, soft edge with
   p .5 (alpha falls linearly from a turning point tp ~ U(.30, .45) of the normalised distance to 0 at .5), per-frame
   opacity U(.8, 1.) at key frames, linearly interpolated; resized to every frame's box.
5. Visibility: frame t is pasted iff `U(0, 1) <= label_prob`; frame 0 and frame c always are.
6. Pasting: per frame, trajectories in decreasing order of (mean w) * (mean h);
   `img = img * (1 - a) + patch * a`, truncated back to uint8.

Degenerate boxes: a box that rounds to zero width or height (only possible for images smaller than the anchors)
is widened to one pixel inside the image so that the crop and resize are defined; the original would crash there.
"""

from __future__ import annotations

import dataclasses
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from fedvssl_jax.pretext.base import interpolate_key_frames, sample_key_frames

_FILE = "fedvssl_jax/pretext/ctp_patch_mask.py"

# CtP defaults (configs/ctp/pretraining_runtime_*.py).
DEFAULT_SCALES = (16, 24, 28, 32, 48, 64)
DEFAULT_RATIOS = (0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0)
DEFAULT_SCALE_JITTER = 0.18
DEFAULT_NUM_ROIS = 3
DEFAULT_KEY_FRAME_PROBS = (0.5, 0.3, 0.2)
DEFAULT_LOC_VELOCITY = 3.0
DEFAULT_SIZE_VELOCITY = 0.025
DEFAULT_LABEL_PROB = 0.8

DEFAULT_PATCH_SOURCE = "clip"
DEFAULT_NOISE_BLOCK = 4
# Where the pasted patches come from:
#   clip   CtP: the trajectory's source-frame box cut from the same clip. On real footage the patch carries the
#          scene's texture, and only its motion sets it apart.
#   noise  A random colour-block texture. Not in CtP: for footage where a patch cut from the clip is nearly invisible
#          (the synthetic demo videos' smooth backgrounds), so that the tracking target can be found at all in a
#          short run. The trajectories, alphas, visibility and targets are drawn exactly as for "clip".
PATCH_SOURCES = ("clip", "noise")


def check_patch_source(patch_source: str, noise_block: int, where: str = "patch_mask") -> None:
  """Raises ValueError naming `<where>.patch_source` / `<where>.noise_block` for a value PatchMask cannot use."""
  if patch_source not in PATCH_SOURCES:
    raise ValueError(f"{where}.patch_source: unknown {patch_source!r}; known: {list(PATCH_SOURCES)}")
  if int(noise_block) < 1:
    raise ValueError(f"{where}.noise_block must be >= 1 pixel, got {noise_block}")


ALPHA_SHAPES = ("rectangle", "ellipse", "rhombus")
_ALPHA_SHAPE_PROBS = (0.5, 0.35, 0.15)


@dataclasses.dataclass
class PatchMaskParams:
  """Everything PatchMask decided for one clip.

  Attributes:
    trajs: int64 [N, T, 4] boxes (x1, y1, x2, y2) in pixels, inside the image, x2 > x1, y2 > y1.
    source_frames: int64 [N] frame each patch was cut from.
    visible: bool [N, T] whether the patch is pasted on frame t.
    patches: N lists of T uint8 [h_t, w_t, 3] patches.
    alphas: N lists of T float32 [h_t, w_t] alpha masks.
    shapes: N alpha shape names.
  """

  trajs: np.ndarray
  source_frames: np.ndarray
  visible: np.ndarray
  patches: List[List[np.ndarray]]
  alphas: List[List[np.ndarray]]
  shapes: List[str]


def make_anchors(scales: Sequence[float] = DEFAULT_SCALES,
                 ratios: Sequence[float] = DEFAULT_RATIOS) -> np.ndarray:
  """float32 [len(ratios) * len(scales), 2] anchor (w, h): w = s * sqrt(r), h = s / sqrt(r), ratio-major order."""
  scales = np.asarray(scales, np.float32).reshape(1, -1)
  ratios = np.asarray(ratios, np.float32).reshape(-1, 1)
  widths = scales * np.sqrt(ratios)
  heights = scales / np.sqrt(ratios)
  return np.stack([widths.reshape(-1), heights.reshape(-1)], axis=-1)


def sample_initial_boxes(image_hw: Tuple[int, int], rng: np.random.Generator, *, num_rois: int = DEFAULT_NUM_ROIS,
                         scales: Sequence[float] = DEFAULT_SCALES, ratios: Sequence[float] = DEFAULT_RATIOS,
                         scale_jitter: float = DEFAULT_SCALE_JITTER) -> np.ndarray:
  """CtP `RandomRegionSampler.sample`: float [num_rois, 4] boxes (x1, y1, x2, y2) inside an H x W image."""
  h, w = int(image_hw[0]), int(image_hw[1])
  if h < 2 or w < 2:
    raise ValueError(f"{_FILE}: PatchMask needs frames of at least 2 x 2 pixels, got {h} x {w}")
  anchors = make_anchors(scales, ratios)
  shapes = anchors[rng.integers(0, len(anchors), size=num_rois)].astype(np.float64)
  if scale_jitter is not None and scale_jitter > 0:
    shapes = shapes * np.exp(rng.uniform(-scale_jitter, scale_jitter, size=(num_rois, 2)))
  shapes[:, 0] = np.clip(shapes[:, 0], 1, w - 1)
  shapes[:, 1] = np.clip(shapes[:, 1], 1, h - 1)
  x1 = rng.uniform(0, w - shapes[:, 0])
  y1 = rng.uniform(0, h - shapes[:, 1])
  return np.stack([x1, y1, x1 + shapes[:, 0], y1 + shapes[:, 1]], axis=1)


def rectangle_movement(boxes: np.ndarray, image_wh: Tuple[int, int], loc_velocity: float, size_velocity: float,
                       num_frames: int, key_frame_probs: Sequence[float], rng: np.random.Generator) -> np.ndarray:
  """CtP `PatchMask.rectangle_movement`: float [N, T, 4] trajectories (clipped to the image, not rounded).

  Args:
    boxes: [N, 4] initial (frame-0) boxes.
    image_wh: (W, H).
    loc_velocity: max centre speed (pixels per frame).
    size_velocity: max log-size change per frame.
    num_frames: T.
    key_frame_probs: P(number of inner key frames).
    rng: numpy generator.
  """
  img_w, img_h = float(image_wh[0]), float(image_wh[1])
  boxes = np.asarray(boxes, np.float64)
  ctr = (boxes[:, 0:2] + boxes[:, 2:4]) * 0.5
  sizes = boxes[:, 2:4] - boxes[:, 0:2]
  min_ctr = sizes * 0.5
  max_ctr = np.array([[img_w, img_h]]) - sizes * 0.5

  loc_keys = sample_key_frames(num_frames, key_frame_probs, rng)
  ctr_list = [ctr]
  for i in range(len(loc_keys) - 1):
    if loc_velocity > 0:
      d = loc_keys[i + 1] - loc_keys[i]
      ctr = ctr + rng.uniform(-loc_velocity * d, loc_velocity * d, size=ctr.shape)
      ctr = np.clip(ctr, min_ctr, max_ctr)
    ctr_list.append(ctr)
  ctrs = interpolate_key_frames(np.stack(ctr_list), loc_keys, "random", rng)        # [T, N, 2]

  size_keys = sample_key_frames(num_frames, key_frame_probs, rng)
  size_list = [sizes]
  for i in range(len(size_keys) - 1):
    if size_velocity > 0:
      d = size_keys[i + 1] - size_keys[i]
      sizes = sizes * np.exp(rng.uniform(-size_velocity * d, size_velocity * d, size=sizes.shape))
    size_list.append(sizes)
  all_sizes = interpolate_key_frames(np.stack(size_list), size_keys, "random", rng)  # [T, N, 2]

  out = np.concatenate([ctrs - all_sizes * 0.5, ctrs + all_sizes * 0.5], axis=2)
  out[..., 0::2] = np.clip(out[..., 0::2], 0, img_w)
  out[..., 1::2] = np.clip(out[..., 1::2], 0, img_h)
  return out.transpose(1, 0, 2)


def round_trajectories(trajs: np.ndarray, image_wh: Tuple[int, int]) -> np.ndarray:
  """Rounds [N, T, 4] boxes to int, clips to the image and makes every box at least 1 x 1 pixel. int64 out."""
  img_w, img_h = int(image_wh[0]), int(image_wh[1])
  out = np.round(trajs).astype(np.int64)
  out[..., 0::2] = np.clip(out[..., 0::2], 0, img_w)
  out[..., 1::2] = np.clip(out[..., 1::2], 0, img_h)
  for lo, hi, size in ((0, 2, img_w), (1, 3, img_h)):
    empty = out[..., hi] <= out[..., lo]
    out[..., hi] = np.where(empty, np.minimum(out[..., lo] + 1, size), out[..., hi])
    out[..., lo] = np.where(empty, out[..., hi] - 1, out[..., lo])
  return out


def _pick_patches(clip: np.ndarray, traj: np.ndarray, rng: np.random.Generator,
                  patch_source: str = DEFAULT_PATCH_SOURCE,
                  noise_block: int = DEFAULT_NOISE_BLOCK) -> Tuple[List[np.ndarray], int]:
  """Picks a source frame c ~ U{0..T-1}, takes a patch of frame c's box size (the clip's crop there, or a
  colour-block texture for `patch_source="noise"`) and resizes it to every frame's box size."""
  num_frames = traj.shape[0]
  source = int(rng.integers(0, num_frames))
  x1, y1, x2, y2 = (int(v) for v in traj[source])
  if patch_source == "noise":
    h, w = y2 - y1, x2 - x1
    cells = rng.integers(0, 256, size=(-(-h // noise_block), -(-w // noise_block), 3), dtype=np.uint8)
    crop = np.ascontiguousarray(np.repeat(np.repeat(cells, noise_block, 0), noise_block, 1)[:h, :w])
  else:
    crop = clip[source, y1:y2, x1:x2, :]
  sizes = traj[:, 2:4] - traj[:, 0:2]
  patches = [cv2.resize(crop, (int(sizes[t, 0]), int(sizes[t, 1])), interpolation=cv2.INTER_LINEAR)
             .reshape(int(sizes[t, 1]), int(sizes[t, 0]), -1) for t in range(num_frames)]
  return patches, source


def base_alpha_mask(width: int, height: int, shape: str, turning_point: float | None) -> np.ndarray:
  """float32 [height, width] alpha of one shape before resizing and opacity.

  The normalised distance to the centre pixel `((w - 1) // 2, (h - 1) // 2)` is `|dx| / w`, `|dy| / h`; the
  rectangle uses their max (alpha 1 everywhere), the ellipse their L2 norm and the rhombus their sum (alpha 1 where
  the distance is < 0.5, else 0). With a `turning_point` tp the alpha is multiplied by
  `clip((0.5 - dist) / (0.5 - tp), 0, 1)`.
  """
  xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
  dx = np.abs(xs - (width - 1) // 2) / width
  dy = np.abs(ys - (height - 1) // 2) / height
  if shape == "rectangle":
    dist = np.maximum(dx, dy)
    alpha = np.ones((height, width), np.float32)
  elif shape == "ellipse":
    dist = np.sqrt(dx ** 2 + dy ** 2)
    alpha = (dist < 0.5).astype(np.float32)
  elif shape == "rhombus":
    dist = dx + dy
    alpha = (dist < 0.5).astype(np.float32)
  else:
    raise ValueError(f"{_FILE}: unknown alpha shape {shape!r}; known: {ALPHA_SHAPES}")
  if turning_point is not None:
    k = -1.0 / (0.5 - turning_point)
    alpha = alpha * np.clip(k * dist - 0.5 * k, 0.0, 1.0).astype(np.float32)
  return alpha.astype(np.float32)


def _pick_alphas(traj: np.ndarray, source: int, key_frame_probs: Sequence[float],
                 rng: np.random.Generator) -> Tuple[List[np.ndarray], str]:
  sizes = traj[:, 2:4] - traj[:, 0:2]
  num_frames = traj.shape[0]
  base_w, base_h = int(sizes[source, 0]), int(sizes[source, 1])
  shape = ALPHA_SHAPES[int(rng.choice(3, p=_ALPHA_SHAPE_PROBS))]
  turning_point = rng.uniform(0.30, 0.45) if rng.uniform(0, 1) < 0.5 else None
  base = base_alpha_mask(base_w, base_h, shape, turning_point)
  keys = sample_key_frames(num_frames, key_frame_probs, rng)
  opacity = interpolate_key_frames(rng.uniform(0.8, 1.0, size=(len(keys), 1)), keys, "uniform")
  alphas = []
  for t in range(num_frames):
    w, h = int(sizes[t, 0]), int(sizes[t, 1])
    a = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w)
    alphas.append((a * np.float32(opacity[t, 0])).astype(np.float32))
  return alphas, shape


def sample_patch_mask_params(clip: np.ndarray, rng: np.random.Generator, *,
                             num_rois: int = DEFAULT_NUM_ROIS,
                             scales: Sequence[float] = DEFAULT_SCALES,
                             ratios: Sequence[float] = DEFAULT_RATIOS,
                             scale_jitter: float = DEFAULT_SCALE_JITTER,
                             key_frame_probs: Sequence[float] = DEFAULT_KEY_FRAME_PROBS,
                             loc_velocity: float = DEFAULT_LOC_VELOCITY,
                             size_velocity: float = DEFAULT_SIZE_VELOCITY,
                             label_prob: float = DEFAULT_LABEL_PROB,
                             patch_source: str = DEFAULT_PATCH_SOURCE,
                             noise_block: int = DEFAULT_NOISE_BLOCK) -> PatchMaskParams:
  """Draws trajectories, patches, alphas and visibility for `clip` (uint8 [T, H, W, 3], T >= 2)."""
  clip = _check_clip(clip)
  check_patch_source(patch_source, noise_block, where=f"{_FILE}: patch_mask")
  num_frames, h, w = clip.shape[:3]
  boxes = sample_initial_boxes((h, w), rng, num_rois=num_rois, scales=scales, ratios=ratios,
                               scale_jitter=scale_jitter)
  trajs = rectangle_movement(boxes, (w, h), loc_velocity, size_velocity, num_frames, key_frame_probs, rng)
  trajs = round_trajectories(trajs, (w, h))
  patches, alphas, sources, visible, shapes = [], [], [], [], []
  for i in range(num_rois):
    p, source = _pick_patches(clip, trajs[i], rng, patch_source, int(noise_block))
    a, shape = _pick_alphas(trajs[i], source, key_frame_probs, rng)
    u = rng.uniform(0, 1, size=num_frames)
    u[source] = 0.0
    u[0] = 0.0
    patches.append(p)
    alphas.append(a)
    sources.append(source)
    visible.append(u <= label_prob)
    shapes.append(shape)
  return PatchMaskParams(trajs=trajs, source_frames=np.asarray(sources, np.int64),
                         visible=np.stack(visible).astype(bool), patches=patches, alphas=alphas, shapes=shapes)


def paste_order(trajs: np.ndarray) -> np.ndarray:
  """Trajectory indices by decreasing (mean width) * (mean height): large patches are pasted first."""
  sizes = (trajs[..., 2:4] - trajs[..., 0:2]).astype(np.float64)
  area = np.prod(sizes.mean(axis=1), axis=1)
  return np.argsort(area, kind="stable")[::-1]


def apply_patch_mask(clip: np.ndarray, params: PatchMaskParams) -> np.ndarray:
  """Pastes the patches of `params` on a copy of `clip` (uint8 [T, H, W, 3]); returns uint8 [T, H, W, 3]."""
  clip = _check_clip(clip)
  out = clip.copy()
  order = paste_order(params.trajs)
  for t in range(clip.shape[0]):
    img = out[t]
    for i in order:
      if not params.visible[i, t]:
        continue
      x1, y1, x2, y2 = (int(v) for v in params.trajs[i, t])
      alpha = params.alphas[i][t][..., None]
      region = img[y1:y2, x1:x2, :].astype(np.float32)
      blended = region * (1.0 - alpha) + params.patches[i][t].astype(np.float32) * alpha
      img[y1:y2, x1:x2, :] = np.clip(blended, 0, 255).astype(np.uint8)  # truncation, as numpy's uint8 assignment
  return out


def patch_mask(clip: np.ndarray, rng: np.random.Generator, *, return_params: bool = False, **params):
  """CtP PatchMask on one clip.

  Args:
    clip: uint8 [T, H, W, 3] (T >= 2), already resized / cropped / flipped.
    rng: numpy generator; the result is a deterministic function of its state.
    return_params: also return the `PatchMaskParams` (visibility, source frames, ...).
    **params: `num_rois`, `scales`, `ratios`, `scale_jitter`, `key_frame_probs`, `loc_velocity`,
      `size_velocity`, `label_prob` (CtP defaults above), `patch_source` ("clip", CtP; or "noise") and
      `noise_block` (pixels per noise cell, 4).

  Returns:
    (clip uint8 [T, H, W, 3], gt_trajs float32 [num_rois, T, 4] integer-valued (x1, y1, x2, y2) pixels), plus the
    params when `return_params`.
  """
  sampled = sample_patch_mask_params(clip, rng, **params)
  out = apply_patch_mask(clip, sampled)
  gt = sampled.trajs.astype(np.float32)
  return (out, gt, sampled) if return_params else (out, gt)


def _check_clip(clip: np.ndarray) -> np.ndarray:
  clip = np.asarray(clip)
  if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
    raise ValueError(f"{_FILE}: PatchMask needs a uint8 [T, H, W, 3] clip, got {clip.dtype} {clip.shape}")
  if clip.shape[0] < 2:
    raise ValueError(f"{_FILE}: PatchMask needs at least 2 frames, got {clip.shape[0]}")
  return clip
