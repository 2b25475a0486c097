"""Clip-consistent video augmentations on uint8 clips (numpy + OpenCV).

A clip is `uint8 [T, H, W, C]` (RGB, C = 3). Every random transform draws its parameters **once per clip** from the
`rng: np.random.Generator` it is given and applies them to every frame, so a clip of identical frames stays identical
frame to frame. Geometric and colour ops keep uint8; `normalize` (and the recipes) return float32.

Flow clips are stored as 3-channel uint8 frames `(R, G, B) = (128, v, u)` with `u8 = round((f + 20) * 255 / 40)`
(flow clipped to +-20 px; GOCA's encoding). Flow gets no colour jitter or grayscale, and its horizontal flip also
negates the horizontal component (`flow_hflip`: u8 -> 255 - u8), unlike the released GOCA code (see
reference/goca.md §2, §9).

Recipes used by the tasks:
- `train_clip_augment`: random short-side resize -> random crop -> flip -> colour jitter -> grayscale -> normalize.
- `test_clip_views`: short-side resize -> centre crop or three crops -> normalize.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601-2 luma weights (torchvision rgb_to_grayscale).
_GRAY_WEIGHTS = np.array([0.2989, 0.587, 0.114], np.float32)
# Channel of the horizontal flow component u in the stored (128, v, u) frames.
FLOW_U_CHANNEL = 2


def _check_clip(clip: np.ndarray, name: str = "clip") -> np.ndarray:
  clip = np.asarray(clip)
  if clip.ndim != 4:
    raise ValueError(f"{name} must be [T, H, W, C], got shape {clip.shape}")
  return clip


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
  """An int `s` -> (s, s); a pair is (height, width)."""
  if isinstance(size, (int, np.integer)):
    return int(size), int(size)
  h, w = size
  return int(h), int(w)


def resize(clip: np.ndarray, size_wh: Sequence[int], interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
  """Resizes every frame to `size_wh = (width, height)` (OpenCV bilinear by default).

  Args:
    clip: [T, H, W, C] uint8 or float32.
    size_wh: output (width, height) in pixels, OpenCV order (e.g. (171, 128) for CtP's test resize).

  Returns:
    [T, height, width, C], same dtype.
  """
  clip = _check_clip(clip)
  w, h = int(size_wh[0]), int(size_wh[1])
  if w < 1 or h < 1:
    raise ValueError(f"resize: size must be positive, got (w, h) = ({w}, {h})")
  if clip.shape[1] == h and clip.shape[2] == w:
    return clip
  out = np.empty((clip.shape[0], h, w, clip.shape[3]), clip.dtype)
  for t in range(clip.shape[0]):
    r = cv2.resize(clip[t], (w, h), interpolation=interpolation)
    out[t] = r.reshape(h, w, clip.shape[3])
  return out


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
  """(new_w, new_h) that scales the short side to `size`, long side truncated as torchvision's Resize(int)."""
  if height <= width:
    return int(size * width / height), int(size)
  return int(size), int(size * height / width)


def resize_short_side(clip: np.ndarray, size: int) -> np.ndarray:
  """Scales every frame so that its short side is `size` pixels, keeping the aspect ratio.

  Returns:
    [T, H', W', C] with min(H', W') == size, same dtype.
  """
  clip = _check_clip(clip)
  return resize(clip, short_side_size(clip.shape[1], clip.shape[2], int(size)))


def random_short_side_resize(clip: np.ndarray, sizes: Sequence[int] | None = None,
                             rng: np.random.Generator | None = None, *,
                             range_: tuple[int, int] | None = None) -> np.ndarray:
  """Short-side resize to a size drawn once per clip.

  Args:
    clip: [T, H, W, C].
    sizes: sizes (pixels) to choose from uniformly, e.g. (112, 128, 144) (CtP).
    rng: numpy random generator.
    range_: alternatively an inclusive (min, max) pixel range drawn uniformly, e.g. (128, 160) (GOCA R(2+1)D).

  Returns:
    [T, H', W', C] with the chosen short side.
  """
  if rng is None:
    raise ValueError("random_short_side_resize: rng is required")
  if (sizes is None) == (range_ is None):
    raise ValueError("random_short_side_resize: give exactly one of sizes= or range_=")
  if range_ is not None:
    lo, hi = int(range_[0]), int(range_[1])
    if hi < lo:
      raise ValueError(f"random_short_side_resize: range_ must be (min, max) with min <= max, got {range_}")
    size = int(rng.integers(lo, hi + 1))
  else:
    sizes = list(sizes)
    if not sizes:
      raise ValueError("random_short_side_resize: sizes is empty")
    size = int(sizes[rng.integers(len(sizes))])
  return resize_short_side(clip, size)


def random_crop(clip: np.ndarray, size: int | Sequence[int], rng: np.random.Generator,
                return_params: bool = False):
  """One random crop (the same window for every frame).

  Args:
    clip: [T, H, W, C].
    size: crop size, int (square) or (height, width); must fit the clip.
    rng: numpy random generator.
    return_params: also return the (y0, x0) offset of the crop.

  Returns:
    [T, h, w, C] crop, or (crop, (y0, x0)) if `return_params`.
  """
  clip = _check_clip(clip)
  ch, cw = _size_hw(size)
  h, w = clip.shape[1], clip.shape[2]
  if ch > h or cw > w:
    raise ValueError(f"random_crop: crop {ch}x{cw} is larger than the frames ({h}x{w}); resize first")
  y0 = int(rng.integers(0, h - ch + 1))
  x0 = int(rng.integers(0, w - cw + 1))
  out = clip[:, y0:y0 + ch, x0:x0 + cw]
  return (out, (y0, x0)) if return_params else out


def random_short_side_crop(clip: np.ndarray, sizes: Sequence[int], crop_size: int, rng: np.random.Generator,
                           flip_p: float = 0.0) -> np.ndarray:
  """`random_short_side_resize` -> `random_crop` -> `random_hflip` frame by frame into one output array.

  Draws the same random numbers in the same order as the three functions and gives the same values (bit-identical
  to the chain), without the chain's intermediate clips: each frame is resized (`cv2.resize` INTER_LINEAR, skipped
  when the frames already have the size, e.g. prepared JPEGs at short side 128), then its crop, flipped or not, is
  copied into the output. The fast path of uint8 host pipelines (per frame, `cv2.resize` of the whole frame costs
  about half of a `cv2.warpAffine` that samples only the crop: docs/benchmarks.md).

  Args:
    clip: [T, H, W, C] (C <= 4), uint8 or float32.
    sizes: short-side sizes to choose from (one per clip).
    crop_size: square crop (pixels), at most the chosen short side.
    rng: numpy random generator.
    flip_p: horizontal flip probability (one draw per clip).

  Returns:
    [T, crop_size, crop_size, C], same dtype.
  """
  clip = _check_clip(clip)
  sizes = list(sizes)
  size = int(sizes[rng.integers(len(sizes))])
  h, w = clip.shape[1], clip.shape[2]
  nw, nh = short_side_size(h, w, size)
  if crop_size > min(nh, nw):
    raise ValueError(f"random_short_side_crop: crop {crop_size} is larger than the resized frames ({nh}x{nw})")
  y0 = int(rng.integers(0, nh - crop_size + 1))
  x0 = int(rng.integers(0, nw - crop_size + 1))
  flip = rng.random() < flip_p
  cols = slice(x0 + crop_size - 1, x0 - 1 if x0 > 0 else None, -1) if flip else slice(x0, x0 + crop_size)
  rows = slice(y0, y0 + crop_size)
  if (nh, nw) == (h, w):
    return np.ascontiguousarray(clip[:, rows, cols])
  out = np.empty((clip.shape[0], crop_size, crop_size, clip.shape[3]), clip.dtype)
  for t in range(clip.shape[0]):
    frame = cv2.resize(clip[t], (nw, nh), interpolation=cv2.INTER_LINEAR)
    out[t] = frame.reshape(nh, nw, -1)[rows, cols]
  return out


def center_crop(clip: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
  """Centre crop (offset `round((H - h) / 2)` as torchvision's CenterCrop). Returns [T, h, w, C]."""
  clip = _check_clip(clip)
  ch, cw = _size_hw(size)
  h, w = clip.shape[1], clip.shape[2]
  if ch > h or cw > w:
    raise ValueError(f"center_crop: crop {ch}x{cw} is larger than the frames ({h}x{w}); resize first")
  y0 = int(round((h - ch) / 2.0))
  x0 = int(round((w - cw) / 2.0))
  return clip[:, y0:y0 + ch, x0:x0 + cw]


def three_crops(clip: np.ndarray, size: int) -> np.ndarray:
  """Three square crops along the long side: left/centre/right (landscape) or top/centre/bottom (portrait).

  Args:
    clip: [T, H, W, C] with min(H, W) >= size.
    size: crop side (pixels).

  Returns:
    [3, T, size, size, C].
  """
  clip = _check_clip(clip)
  size = int(size)
  h, w = clip.shape[1], clip.shape[2]
  if size > min(h, w):
    raise ValueError(f"three_crops: crop {size} is larger than the short side of the frames ({h}x{w})")
  yc, xc = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
  if w >= h:
    offsets = [(yc, 0), (yc, xc), (yc, w - size)]
  else:
    offsets = [(0, xc), (yc, xc), (h - size, xc)]
  return np.stack([clip[:, y:y + size, x:x + size] for y, x in offsets])


def hflip(clip: np.ndarray) -> np.ndarray:
  """Horizontal flip of every frame. Returns [T, H, W, C] (a contiguous copy)."""
  clip = _check_clip(clip)
  return np.ascontiguousarray(clip[:, :, ::-1])


def random_hflip(clip: np.ndarray, p: float, rng: np.random.Generator, is_flow: bool = False) -> np.ndarray:
  """Flips the whole clip with probability `p` (one draw per clip); `is_flow` uses `flow_hflip`."""
  if rng.random() < p:
    return flow_hflip(clip) if is_flow else hflip(clip)
  return clip


def flow_hflip(clip: np.ndarray) -> np.ndarray:
  """Horizontal flip of a stored flow clip: mirrors the frames and negates u (channel 2: u8 -> 255 - u8).

  Args:
    clip: uint8 [T, H, W, 3] flow frames (128, v, u).

  Returns:
    uint8 [T, H, W, 3].
  """
  clip = _check_clip(clip)
  if clip.dtype != np.uint8 or clip.shape[-1] != 3:
    raise ValueError(f"flow_hflip expects uint8 [T, H, W, 3] flow frames, got {clip.dtype} {clip.shape}")
  out = hflip(clip)
  out[..., FLOW_U_CHANNEL] = 255 - out[..., FLOW_U_CHANNEL]
  return out


def _grayscale(x: np.ndarray) -> np.ndarray:
  """float [..., 3] -> float [..., 1] luma."""
  return (x @ _GRAY_WEIGHTS)[..., None]


def adjust_brightness(x: np.ndarray, factor: float) -> np.ndarray:
  """float [T, H, W, 3] in [0, 255] -> x * factor, clamped (torchvision adjust_brightness)."""
  return np.clip(x * np.float32(factor), 0.0, 255.0)


def adjust_contrast(x: np.ndarray, factor: float) -> np.ndarray:
  """Blend with each frame's mean luma (torchvision adjust_contrast on a [T, C, H, W] tensor), clamped."""
  mean = _grayscale(x).mean(axis=(1, 2, 3), keepdims=True)
  return np.clip(np.float32(factor) * x + np.float32(1.0 - factor) * mean, 0.0, 255.0)


def adjust_saturation(x: np.ndarray, factor: float) -> np.ndarray:
  """Blend with the per-pixel luma (torchvision adjust_saturation), clamped."""
  return np.clip(np.float32(factor) * x + np.float32(1.0 - factor) * _grayscale(x), 0.0, 255.0)


def adjust_hue(x: np.ndarray, hue_shift: float) -> np.ndarray:
  """Rotates the hue of float [T, H, W, 3] values in [0, 255] by `hue_shift` turns (in [-0.5, 0.5])."""
  t, h, w, _ = x.shape
  flat = np.ascontiguousarray((x / 255.0).reshape(t * h, w, 3), dtype=np.float32)
  hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV)  # H in [0, 360), S, V in [0, 1] for float input
  hsv[..., 0] = np.mod(hsv[..., 0] + hue_shift * 360.0, 360.0)
  rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
  return np.clip(rgb.reshape(t, h, w, 3) * 255.0, 0.0, 255.0)


def _factor_range(value: float, name: str, center: float = 1.0, bound: float | None = None) -> tuple[float, float]:
  value = float(value)
  if value < 0:
    raise ValueError(f"color_jitter: {name} must be >= 0, got {value}")
  lo, hi = center - value, center + value
  if bound is not None:
    lo = max(lo, bound)
  return lo, hi


def color_jitter(clip: np.ndarray, brightness: float, contrast: float, saturation: float, hue: float,
                 rng: np.random.Generator, p: float = 1.0) -> np.ndarray:
  """torchvision `ColorJitter` on a whole clip (one set of factors, one random op order per clip).

  With probability `p` (RandomApply) the four ops run in a random order:
  brightness factor b ~ U[max(0, 1-brightness), 1+brightness] (x * b); contrast c (blend with the mean luma of each
  frame); saturation s (blend with the per-pixel luma); hue h ~ U[-hue, hue] turns (hue <= 0.5). Values are clamped
  to [0, 255] after each op as in torchvision; the result is rounded back to uint8 once at the end (torchvision
  truncates after every op on uint8 tensors: a sub-1/255 difference).

  Args:
    clip: uint8 [T, H, W, 3] RGB.
    brightness, contrast, saturation, hue: jitter strengths (0 disables that op).

  Returns:
    uint8 [T, H, W, 3].
  """
  clip = _check_clip(clip)
  if clip.shape[-1] != 3:
    raise ValueError(f"color_jitter expects 3-channel RGB clips, got shape {clip.shape}")
  if float(hue) > 0.5:
    raise ValueError(f"color_jitter: hue must be in [0, 0.5], got {hue}")
  # Draw everything first so the number of draws does not depend on the branch taken.
  apply = rng.random() < p
  order = rng.permutation(4)
  b = rng.uniform(*_factor_range(brightness, "brightness", bound=0.0))
  c = rng.uniform(*_factor_range(contrast, "contrast", bound=0.0))
  s = rng.uniform(*_factor_range(saturation, "saturation", bound=0.0))
  h = rng.uniform(-float(hue), float(hue)) if hue > 0 else 0.0
  if not apply:
    return clip
  x = clip.astype(np.float32)
  for op in order:
    if op == 0 and brightness > 0:
      x = adjust_brightness(x, b)
    elif op == 1 and contrast > 0:
      x = adjust_contrast(x, c)
    elif op == 2 and saturation > 0:
      x = adjust_saturation(x, s)
    elif op == 3 and hue > 0:
      x = adjust_hue(x, h)
  return np.round(x).astype(np.uint8)


# CtP's fine-tuning colour ops (`RandomBrightness`, `RandomContrast`, `RandomHueSaturation` of its recognizer configs):
# (brightness delta in 0..255 units, contrast log-factor delta, hue delta in OpenCV 8-bit hue units (2 degrees),
# saturation log-factor delta, probability of each op).
CTP_COLOR = (32.0, 0.2, 12.0, 0.1, 0.2)
# CtP's fine-tuning scales: the clip is resized to one of these (width, height) pairs (aspect ratio not kept); its
# test views are resized to (171, 128) and centre-cropped to 112.
CTP_SCALES_WH = ((149, 112), (171, 128), (192, 144))
CTP_TEST_WH = (171, 128)


def ctp_color_augment(clip: np.ndarray, rng: np.random.Generator,
                      params: Sequence[float] = CTP_COLOR) -> np.ndarray:
  """CtP's fine-tuning colour augmentation: three independent ops on the whole clip, each applied with probability p.

  In CtP's order, values clamped to [0, 255] after each op:
    brightness: x + d, d ~ U(-b, b) (b = 32);
    contrast: x * exp(c), c ~ U(-0.2, 0.2);
    hue / saturation (HSV): hue + h, h ~ U(-12, 12) OpenCV 8-bit hue units (2 degrees each, wrapping), saturation
      x exp(s), s ~ U(-0.1, 0.1).
  Every value is drawn whether or not its op runs, so the number of draws is fixed.

  Args:
    clip: uint8 [T, H, W, 3] RGB.
    params: (b, c, h, s, p), default `CTP_COLOR`.

  Returns:
    uint8 [T, H, W, 3].
  """
  clip = _check_clip(clip)
  if clip.shape[-1] != 3:
    raise ValueError(f"ctp_color_augment expects 3-channel RGB clips, got shape {clip.shape}")
  b, c, h, sat, p = (float(v) for v in params)
  apply = rng.random(3) < p
  delta = rng.uniform(-b, b)
  contrast = np.exp(rng.uniform(-c, c))
  hue = rng.uniform(-h, h)
  saturation = np.exp(rng.uniform(-sat, sat))
  if not apply.any():
    return clip
  x = clip.astype(np.float32)
  if apply[0]:
    x = np.clip(x + np.float32(delta), 0.0, 255.0)
  if apply[1]:
    x = np.clip(x * np.float32(contrast), 0.0, 255.0)
  if apply[2]:
    t, hh, w, _ = x.shape
    hsv = cv2.cvtColor(np.ascontiguousarray((x / 255.0).reshape(t * hh, w, 3), dtype=np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hue * 2.0), 360.0)  # float HSV hue is in degrees
    hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(saturation), 0.0, 1.0)
    x = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(t, hh, w, 3) * 255.0, 0.0, 255.0)
  return np.round(x).astype(np.uint8)


def random_grayscale(clip: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
  """With probability `p` turns the whole clip to 3-channel grayscale (torchvision luma weights). uint8 in/out."""
  clip = _check_clip(clip)
  if rng.random() < p:
    g = np.round(_grayscale(clip.astype(np.float32)))
    return np.broadcast_to(np.clip(g, 0, 255), clip.shape).astype(np.uint8)
  return clip


def normalize(clip: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
  """uint8 [T, H, W, C] -> float32 `(clip / 255 - mean) / std` (mean/std per channel, in [0, 1] units)."""
  clip = _check_clip(clip)
  mean = np.asarray(mean, np.float32)
  inv_std = 1.0 / np.asarray(std, np.float32)
  return ((clip.astype(np.float32) * np.float32(1.0 / 255.0)) - mean) * inv_std


def train_clip_augment(clip: np.ndarray, rng: np.random.Generator, *,
                       short_side_sizes: Sequence[int] | None = None,
                       short_side_range: tuple[int, int] | None = None,
                       crop_size: int = 112, flip_p: float = 0.5,
                       jitter: tuple[float, float, float, float, float] | None = None,
                       grayscale_p: float = 0.0, is_flow: bool = False,
                       mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                       scales_wh: Sequence[Sequence[int]] | None = None,
                       ctp_color: Sequence[float] | None = None) -> np.ndarray:
  """Training augmentation of one clip, every parameter drawn once per clip.

  Chain: resize (`scales_wh`: to one of these (width, height) pairs, CtP's fine-tuning GroupScale; else a random
  short side from `short_side_sizes` or an inclusive `short_side_range`; none = no resize) -> random `crop_size` crop
  -> horizontal flip with `flip_p` (flow: `flow_hflip`) -> colour: `ctp_color` (`ctp_color_augment`'s (b, c, h, s,
  p)) or torchvision-style jitter `jitter = (brightness, contrast, saturation, hue, p)` -> random grayscale with
  `grayscale_p` -> normalize. Flow (`is_flow=True`) skips the colour ops and grayscale.

  Args:
    clip: uint8 [T, H, W, 3].
    rng: numpy random generator.

  Returns:
    float32 [T, crop_size, crop_size, 3], normalized with `mean`/`std`.
  """
  clip = _check_clip(clip)
  if scales_wh:
    clip = resize(clip, scales_wh[int(rng.integers(len(scales_wh)))])
  elif short_side_sizes is not None or short_side_range is not None:
    clip = random_short_side_resize(clip, short_side_sizes, rng, range_=short_side_range)
  clip = random_crop(clip, crop_size, rng)
  clip = random_hflip(clip, flip_p, rng, is_flow=is_flow)
  if not is_flow:
    if ctp_color is not None:
      clip = ctp_color_augment(clip, rng, ctp_color)
    elif jitter is not None:
      b, c, s, h, p = jitter
      clip = color_jitter(clip, b, c, s, h, rng, p=p)
    if grayscale_p > 0:
      clip = random_grayscale(clip, grayscale_p, rng)
  return normalize(clip, mean, std)


def test_clip_views(clip: np.ndarray, *, short_side: int, crop_size: int, three_crop: bool = True,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    resize_wh: Sequence[int] | None = None) -> np.ndarray:
  """Deterministic test views of one clip: resize (to `resize_wh` = (width, height) when given, else the short side to
  `short_side`), then three crops or one centre crop, normalized.

  CtP fine-tuning tests: `resize_wh=(171, 128), crop_size=112, three_crop=False`. GOCA kNN: `short_side=crop_size,
  three_crop=True`.
  The same function serves flow clips (no colour ops are involved).

  Returns:
    float32 [n_views, T, crop_size, crop_size, 3], n_views = 3 or 1.
  """
  clip = resize(_check_clip(clip), resize_wh) if resize_wh else resize_short_side(_check_clip(clip), short_side)
  if three_crop:
    views = three_crops(clip, crop_size)
  else:
    views = center_crop(clip, crop_size)[None]
  return normalize(views.reshape((-1,) + views.shape[2:]), mean, std).reshape(
      views.shape[:2] + (crop_size, crop_size, views.shape[-1]))
