"""GOCA's clip builder for the grain pipeline (reference/goca.md §2).

Per video: temporal multi-crop indices (`goca_multicrop_indices`: by default 2 clips of 32 frames and 4 of 16 at
stride 2, starts >= 16 frames apart), the **same indices for RGB and flow**, and clip-consistent spatial
augmentation drawn **independently** for every clip and for each stream (GOCA calls its transform separately per
clip and per modality). RGB: random short-side resize -> random crop -> hflip -> colour jitter (p 0.8) -> grayscale
(p 0.2) -> ImageNet normalisation. Flow: the same geometric chain but without colour jitter / grayscale, and a flip
negates u (`transforms.flow_hflip`); GOCA's released code jitters flow and does not negate u (a bug we fix, §9.3).
Flow frames are GOCA's 3-channel encoding (128, v, u), normalised with the ImageNet statistics like RGB (as GOCA).

Output of `build` (T_g = clip_lens[g], n_g = num_clips[g]):
  {"rgb_{T_g}": float32 [n_g, T_g, crop, crop, 3] for each group, "flow_{T_g}": same (if with_flow), "label": int32}
e.g. {"rgb_32": [2, 32, 112, 112, 3], "rgb_16": [4, 16, 112, 112, 3], "flow_32": ..., "flow_16": ..., "label"}.
After batching, `[batch[k] for k in builder.view_keys("rgb")]` is the `rgb_views` argument of `GOCAModel`.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from input_pipeline import samplers
from input_pipeline import transforms

# GOCA R(2+1)D-18 settings (opt_aug.py adjust_params); S3D uses crop 128, resize (136, 190).
R2PLUS1D_CROP, R2PLUS1D_RESIZE = 112, (128, 160)
S3D_CROP, S3D_RESIZE = 128, (136, 190)


def view_keys(clip_lens: Sequence[int], stream: str) -> list[str]:
  """Batch keys of one stream's view groups, in view order: e.g. ["rgb_32", "rgb_16"]."""
  return [f"{stream}_{int(t)}" for t in clip_lens]


class GOCAClipBuilder:
  """Builds one GOCA training example (RGB + flow temporal multi-crop) from a `ClipReader`.

  Args:
    clip_lens: frames per clip of each group (GOCA script: (32, 16)). Must be distinct (they name the keys).
    num_clips: clips per group ((2, 4)); the first group's clips are the assigned views of the loss.
    stride: frame stride inside a clip (2).
    min_start_distance: minimum distance between clip starts (16).
    crop_size: square crop (112 R(2+1)D, 128 S3D).
    short_side_range: inclusive range of the random short-side resize ((128, 160) R(2+1)D); None = no resize
      (frames must already be at least `crop_size`).
    flip_p: horizontal flip probability (0.5).
    jitter: RGB colour jitter (brightness, contrast, saturation, hue, p) ((0.4, 0.4, 0.2, 0.1, 0.8)); None = off.
    grayscale_p: RGB random grayscale probability (0.2).
    with_flow: also build flow clips (needs the record's flow video); False = RGB-only SwAV.
    with_rgb: build RGB clips; False (with `with_flow`) = flow-only SwAV (GOCA's `--video_channels flow`).
    mean, std: normalisation of RGB and flow (ImageNet, as GOCA).
    min_frames: shortest usable video (default: the longest clip at stride 1).
  """

  def __init__(self, clip_lens: Sequence[int] = (32, 16), num_clips: Sequence[int] = (2, 4), stride: int = 2,
               min_start_distance: int = 16, crop_size: int = R2PLUS1D_CROP,
               short_side_range: Optional[Sequence[int]] = R2PLUS1D_RESIZE, flip_p: float = 0.5,
               jitter: Optional[Sequence[float]] = (0.4, 0.4, 0.2, 0.1, 0.8), grayscale_p: float = 0.2,
               with_flow: bool = True, with_rgb: bool = True, mean: Sequence[float] = transforms.IMAGENET_MEAN,
               std: Sequence[float] = transforms.IMAGENET_STD, min_frames: Optional[int] = None):
    self.clip_lens = tuple(int(t) for t in clip_lens)
    self.num_clips = tuple(int(n) for n in num_clips)
    if not self.clip_lens or len(self.clip_lens) != len(self.num_clips):
      raise ValueError(f"GOCAClipBuilder: clip_lens {self.clip_lens} and num_clips {self.num_clips} must have the "
                       "same non-zero length")
    if len(set(self.clip_lens)) != len(self.clip_lens):
      raise ValueError(f"GOCAClipBuilder: clip_lens must be distinct (they name the output keys), got "
                       f"{self.clip_lens}")
    if min(self.clip_lens) < 1 or min(self.num_clips) < 1:
      raise ValueError(f"GOCAClipBuilder: clip_lens and num_clips must be >= 1, got {self.clip_lens}, "
                       f"{self.num_clips}")
    self.stride = int(stride)
    self.min_start_distance = int(min_start_distance)
    self.crop_size = int(crop_size)
    self.short_side_range = tuple(int(s) for s in short_side_range) if short_side_range is not None else None
    if self.short_side_range is not None and self.short_side_range[0] < self.crop_size:
      raise ValueError(f"GOCAClipBuilder: short_side_range {self.short_side_range} must not go below crop_size "
                       f"{self.crop_size}")
    self.flip_p = float(flip_p)
    self.jitter = tuple(float(j) for j in jitter) if jitter else None
    if self.jitter is not None and len(self.jitter) != 5:
      raise ValueError(f"GOCAClipBuilder: jitter must be (brightness, contrast, saturation, hue, p), got {jitter}")
    self.grayscale_p = float(grayscale_p)
    self.with_flow = bool(with_flow)
    self.with_rgb = bool(with_rgb)
    if not (self.with_rgb or self.with_flow):
      raise ValueError("GOCAClipBuilder: with_rgb and with_flow are both False")
    self.mean = tuple(float(m) for m in mean)
    self.std = tuple(float(s) for s in std)
    self.min_frames = int(min_frames) if min_frames is not None else max(self.clip_lens)

  @property
  def num_views(self) -> int:
    return sum(self.num_clips)

  def view_keys(self, stream: str = "rgb") -> list[str]:
    """Output keys of `stream` ("rgb" or "flow") in view order."""
    return view_keys(self.clip_lens, stream)

  def _augment(self, clip: np.ndarray, rng: np.random.Generator, is_flow: bool) -> np.ndarray:
    return transforms.train_clip_augment(
        clip, rng, short_side_range=self.short_side_range, crop_size=self.crop_size, flip_p=self.flip_p,
        jitter=None if is_flow else self.jitter, grayscale_p=0.0 if is_flow else self.grayscale_p,
        is_flow=is_flow, mean=self.mean, std=self.std)

  def _stream(self, frames: np.ndarray, splits: list[int], rng: np.random.Generator, is_flow: bool,
              prefix: str) -> dict[str, np.ndarray]:
    clips = np.split(frames, splits[:-1])
    out = {}
    k = 0
    for t, n in zip(self.clip_lens, self.num_clips):
      out[f"{prefix}_{t}"] = np.stack([self._augment(clips[k + i], rng, is_flow) for i in range(n)])
      k += n
    return out

  def build(self, reader: Any, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One example: see the module doc for the keys and shapes."""
    clips_idx = samplers.goca_multicrop_indices(reader.num_frames, self.clip_lens, self.num_clips, self.stride,
                                                self.min_start_distance, rng)
    all_idx = np.concatenate(clips_idx)
    splits = list(np.cumsum([len(c) for c in clips_idx]))
    out = self._stream(reader.read(all_idx), splits, rng, False, "rgb") if self.with_rgb else {}
    if self.with_flow:
      out.update(self._stream(reader.read_flow(all_idx), splits, rng, True, "flow"))
    out["label"] = np.int32(record["label"])
    return out
