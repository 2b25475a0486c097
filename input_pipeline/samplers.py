"""Frame-index samplers: which frames of a video a training or test clip is made of.

Pure numpy. Every sampler takes the video length `num_frames` (frames, >= 1) and, when random, an
`np.random.Generator`, and returns `np.int64` frame indices in `[0, num_frames - 1]`. Indices are chosen *before*
decoding, so a clip costs only the frames it uses.

The rules follow the original code bases (see docs/design.md and the reference notes):
- `random_stride_indices`: CtP `RandomFrameSampler` (CtP pretraining).
- `consecutive_indices`: the fine-tuning train sampler (CtP `RandomFrameSampler` with one stride and no jitter).
- `vcop_tuple_indices`: CtP `VCOPDataset._sample_indices`.
- `speed_indices`: CtP `SpeedNetDataset._sample_frame_inds`.
- `goca_multicrop_indices`: GOCA `get_clips_idx` (sampling strategy 1, random start, minimum start distance).
- `uniform_test_indices`: CtP `UniformFrameSampler` (10-clip testing).

Short videos: CtP's samplers start at frame 0 and clamp every index to the last frame when a clip does not fit (the
clip repeats its last frame). `consecutive_indices` and the test sampler do the same; `random_stride_indices` departs
from it on purpose (its docstring says how). They raise `ValueError` only for `num_frames < 1`. The GOCA sampler
adapts its stride and needs `num_frames >= clip_lens[0]`. Builders that want to reject short videos instead declare
`min_frames` (see `input_pipeline.pipeline`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SPEED_STRIDES = (-4, -2, -1, 0, 1, 2, 4)


def _check_positive(name: str, value: int) -> int:
  value = int(value)
  if value < 1:
    raise ValueError(f"{name} must be >= 1, got {value}")
  return value


def _check_num_frames(num_frames: int, sampler: str) -> int:
  num_frames = int(num_frames)
  if num_frames < 1:
    raise ValueError(f"{sampler}: the video needs at least 1 frame (num_frames >= 1), got num_frames={num_frames}")
  return num_frames


def random_stride_indices(num_frames: int, clip_len: int, strides: Sequence[int] | int, rng: np.random.Generator,
                          temporal_jitter: bool = True) -> np.ndarray:
  """CtP `RandomFrameSampler`: one clip at a random stride, with per-frame temporal jitter.

  A stride `s` is drawn uniformly from the strides that fit (`(clip_len - 1) * s + 1 <= num_frames`); if none of
  `strides` fits, the stride shrinks to the largest that does (`(num_frames - 1) // (clip_len - 1)`, at least 1).
  Then `start ~ U{0 .. num_frames - (clip_len - 1) * s - 1}`, each frame gets a jitter `j_i ~ U{0 .. s - 1}` (when
  `temporal_jitter` and `s > 1`) and `idx_i = min(start + i * s + j_i, num_frames - 1)`.

  Short videos differ from CtP's `RandomFrameSampler`, which draws the stride from *all* strides
  (`random.choice(strides)`) and, when `(clip_len - 1) * s + 1 >= num_frames`, starts at frame 0 and clamps the
  indices to the last frame (the clip ends in repeated last frames, more of them the larger the stride). Here the
  stride is drawn only from the strides that fit, shrinking as above when none does, so a clip never repeats frames
  while a smaller stride would fit; a video shorter than `clip_len` frames gets stride 1 from frame 0, clamped (the
  one case where both agree in kind). Videos long enough for every stride (K400's ~250-frame clips vs a span of 76
  frames for 16 frames at stride 5) are sampled with the same distribution as CtP's.

  Args:
    num_frames: frames in the video (>= 1).
    clip_len: frames per clip.
    strides: candidate strides (frames), e.g. (1, 2, 3, 4, 5), or a single int.
    rng: numpy random generator.
    temporal_jitter: add the per-frame jitter.

  Returns:
    int64 [clip_len] frame indices, non-decreasing.
  """
  n = _check_num_frames(num_frames, "random_stride_indices")
  clip_len = _check_positive("clip_len", clip_len)
  strides = [int(s) for s in np.atleast_1d(strides)]
  if not strides or min(strides) < 1:
    raise ValueError(f"random_stride_indices: strides must be a non-empty list of ints >= 1, got {strides}")
  fitting = [s for s in strides if (clip_len - 1) * s + 1 <= n]
  if fitting:
    stride = int(fitting[rng.integers(len(fitting))])
  else:
    stride = max(1, (n - 1) // max(clip_len - 1, 1))
  span = (clip_len - 1) * stride + 1
  start = int(rng.integers(0, n - span + 1)) if span <= n else 0
  if temporal_jitter and stride > 1:
    jitter = rng.integers(0, stride, size=clip_len)
  else:
    jitter = np.zeros(clip_len, np.int64)
  idx = start + np.arange(clip_len, dtype=np.int64) * stride + jitter
  return np.minimum(idx, n - 1).astype(np.int64)


def consecutive_indices(num_frames: int, clip_len: int, stride: int, rng: np.random.Generator) -> np.ndarray:
  """Fine-tuning train sampler: one clip at a fixed stride from a uniform random start, no jitter.

  `start ~ U{0 .. num_frames - (clip_len - 1) * stride - 1}`, `idx_i = start + i * stride`.
  Fallback (as in CtP): if the clip does not fit, start at 0 and clamp indices to the last frame.

  Returns:
    int64 [clip_len] frame indices.
  """
  n = _check_num_frames(num_frames, "consecutive_indices")
  clip_len = _check_positive("clip_len", clip_len)
  stride = _check_positive("stride", stride)
  span = (clip_len - 1) * stride + 1
  start = int(rng.integers(0, n - span + 1)) if span <= n else 0
  idx = start + np.arange(clip_len, dtype=np.int64) * stride
  return np.minimum(idx, n - 1).astype(np.int64)


def _centred_offsets(num_frames: int, clip_len: int, num_clips: int, stride: int = 1) -> np.ndarray:
  """TSN/CtP-style centred clip offsets: tick = (n - clip_len*stride + 1) / num_clips, int(tick/2 + tick*x)."""
  delta = num_frames - clip_len * stride + 1
  if delta > 0:
    tick = float(delta) / num_clips
    return np.array([int(tick / 2.0 + tick * x) for x in range(num_clips)], np.int64)
  return np.zeros(num_clips, np.int64)


def vcop_tuple_indices(num_frames: int, clip_len: int, tuple_len: int, interval: int | tuple[int, int],
                       rng: np.random.Generator) -> np.ndarray:
  """CtP VCOP sampler: `tuple_len` clips of `clip_len` consecutive frames, `interval` frames between clips.

  `interval` is an int or a (min, max) pair drawn uniformly (the FedVSSL config uses 8 == (8, 8)). With
  `avg = (num_frames - tuple_len * clip_len) // (tuple_len - 1)`:
  - avg >= max: interval ~ U{min .. max};  min <= avg < max: interval ~ U{min .. avg};  0 < avg < min: interval = avg
    (the interval shrinks to fit);
  - then `start ~ U{0 .. n - tuple_len * clip_len - (tuple_len - 1) * interval}` and clip k starts at
    `start + k * (clip_len + interval)`.
  - avg <= 0 (the fallback of the original): TSN-style centred offsets `int(tick/2 + tick*k)` with
    `tick = (n - clip_len + 1) / tuple_len` (clips may overlap), or all zeros when even one clip does not fit;
    indices clamped to the last frame.

  Returns:
    int64 [tuple_len, clip_len] frame indices, in temporal order (row k is clip k).
  """
  n = _check_num_frames(num_frames, "vcop_tuple_indices")
  clip_len = _check_positive("clip_len", clip_len)
  tuple_len = int(tuple_len)
  if tuple_len < 2:
    raise ValueError(f"vcop_tuple_indices: tuple_len must be >= 2, got {tuple_len}")
  if isinstance(interval, (tuple, list)):
    min_iv, max_iv = int(interval[0]), int(interval[1])
  else:
    min_iv = max_iv = int(interval)
  if min_iv < 0 or max_iv < min_iv:
    raise ValueError(f"vcop_tuple_indices: interval must be >= 0 with min <= max, got {interval}")
  avg = (n - tuple_len * clip_len) // (tuple_len - 1)
  if avg > 0:
    if avg >= max_iv:
      iv = int(rng.integers(min_iv, max_iv + 1))
    elif avg >= min_iv:
      iv = int(rng.integers(min_iv, avg + 1))
    else:
      iv = avg
    start_max = n - tuple_len * clip_len - (tuple_len - 1) * iv
    start = int(rng.integers(0, start_max + 1))
    offsets = start + (clip_len + iv) * np.arange(tuple_len, dtype=np.int64)
  else:
    offsets = _centred_offsets(n, clip_len, tuple_len)
  idx = offsets[:, None] + np.arange(clip_len, dtype=np.int64)[None, :]
  return np.clip(idx, 0, n - 1).astype(np.int64)


def speed_indices(num_frames: int, clip_len: int, stride: int, rng: np.random.Generator) -> np.ndarray:
  """CtP Speed (playback-rate) sampler for one signed stride from `SPEED_STRIDES`.

  `start ~ U{0 .. n - ((clip_len - 1) * |s| + 1)}`, `idx_i = min(start + i * |s|, n - 1)`; a negative stride
  reverses the order (the clip plays backwards); stride 0 gives `clip_len` copies of one random frame.
  Fallback (as in CtP): a span that does not fit starts at 0 (indices clamped to the last frame).
  The label of the task is the position of `stride` in its stride list (`SPEED_STRIDES.index(stride)`).

  Returns:
    int64 [clip_len] frame indices.
  """
  n = _check_num_frames(num_frames, "speed_indices")
  clip_len = _check_positive("clip_len", clip_len)
  stride = int(stride)
  pos = abs(stride)
  span = (clip_len - 1) * pos + 1
  start = int(rng.integers(0, n - span + 1)) if span < n else 0
  idx = np.minimum(start + np.arange(clip_len, dtype=np.int64) * pos, n - 1)
  if stride < 0:
    idx = idx[::-1]
  return np.ascontiguousarray(idx, dtype=np.int64)


def _pick_start_far_from(valid_count: int, chosen: list[int], min_dist: int,
                         rng: np.random.Generator) -> tuple[int, int]:
  """Draws a start in [0, valid_count) at least `min_dist` from every chosen start, shrinking min_dist if needed.

  Returns (start, min_dist actually used), following GOCA's `select_with_mindistance` (the distance only shrinks).
  """
  candidates = np.arange(valid_count, dtype=np.int64)
  if not chosen or min_dist <= 0:
    return int(rng.integers(valid_count)), min_dist
  chosen_arr = np.asarray(chosen, np.int64)
  while min_dist > 0:
    ok = np.all(np.abs(candidates[:, None] - chosen_arr[None, :]) >= min_dist, axis=1)
    if ok.any():
      allowed = candidates[ok]
      return int(allowed[rng.integers(len(allowed))]), min_dist
    min_dist -= 1
  return int(rng.integers(valid_count)), 0


def goca_multicrop_indices(num_frames: int, clip_lens: Sequence[int] = (32, 16), num_clips: Sequence[int] = (2, 4),
                           stride: int = 2, min_start_distance: int = 16,
                           rng: np.random.Generator | None = None) -> list[np.ndarray]:
  """GOCA temporal multi-crop: `num_clips[g]` clips of `clip_lens[g]` frames for each group g, in order.

  With the defaults this returns 6 views: two 32-frame clips, then four 16-frame clips. Each clip is
  `start + i * stride`. The stride is adapted once from the first clip length when it is too long for the video
  (`clip_lens[0] * stride > n` -> `stride = n // clip_lens[0]`) and reused for every group. Starts are uniform over
  `{0 .. n - 1 - (T - 1) * stride}` and kept at least `min_start_distance` apart from all previously chosen starts
  (over all groups) when possible; otherwise the distance shrinks by 1 until a start is free (and stays shrunk
  for the later clips, as in GOCA). Use the same indices for RGB and flow.

  Args:
    num_frames: frames in the video (min over RGB and flow when both are used); must be >= clip_lens[0].
    clip_lens: frames per clip for each group.
    num_clips: clips per group.
    stride: frame stride within a clip.
    min_start_distance: minimum distance (frames) between clip starts.
    rng: numpy random generator (required).

  Returns:
    list of int64 [clip_lens[g]] arrays, sum(num_clips) of them.
  """
  if rng is None:
    raise ValueError("goca_multicrop_indices: rng is required")
  n = _check_num_frames(num_frames, "goca_multicrop_indices")
  clip_lens = [int(t) for t in clip_lens]
  num_clips = [int(c) for c in num_clips]
  if len(clip_lens) != len(num_clips) or not clip_lens:
    raise ValueError(f"goca_multicrop_indices: clip_lens {clip_lens} and num_clips {num_clips} must have the same "
                     "non-zero length")
  stride = _check_positive("stride", stride)
  if n < clip_lens[0]:
    raise ValueError(f"goca_multicrop_indices: the video needs num_frames >= clip_lens[0] = {clip_lens[0]} "
                     f"(one frame per step at stride 1), got num_frames={n}")
  if clip_lens[0] * stride > n:
    stride = n // clip_lens[0]
  if max(clip_lens) > clip_lens[0] and (max(clip_lens) - 1) * stride + 1 > n:
    raise ValueError(f"goca_multicrop_indices: the longest clip ({max(clip_lens)} frames at stride {stride}) does not "
                     f"fit num_frames={n}; put the longest clip first")
  chosen: list[int] = []
  min_dist = int(min_start_distance)
  out = []
  for t, count in zip(clip_lens, num_clips):
    valid = n - (t - 1) * stride
    for _ in range(count):
      start, min_dist = _pick_start_far_from(valid, chosen, min_dist, rng)
      chosen.append(start)
      out.append(start + np.arange(t, dtype=np.int64) * stride)
  return out


def goca_test_indices(num_frames: int, clip_len: int, stride: int, num_clips: int,
                      rng: np.random.Generator | None = None) -> np.ndarray:
  """GOCA's kNN / test clip placement (helper/ds_utils.py `get_clips_uniformly`, `select_frameidx_withstride`).

  The stride drops to n // clip_len when clip_len * stride > n. With span = (clip_len - 1) * stride and
  rest = n - span, clip 0 starts at frame 0 and each next one `ceil(rest / (num_clips - 1))` later; the first start
  that would run past the end becomes n - span - 1, any later one a random start in [0, rest) (GOCA draws it with
  `random.choice`; here from `rng`, default seed 0). Starts are sorted. Videos with n <= clip_len (GOCA: a random
  chunk) get every clip at frame 0, indices clamped to n - 1; one clip starts at 0.

  Returns:
    int64 [num_clips, clip_len] frame indices.
  """
  n = _check_num_frames(num_frames, "goca_test_indices")
  clip_len = _check_positive("clip_len", clip_len)
  stride = _check_positive("stride", stride)
  num_clips = _check_positive("num_clips", num_clips)
  if clip_len >= n or num_clips == 1:
    starts = [0] * num_clips
  else:
    if clip_len * stride > n:
      stride = max(n // clip_len, 1)
    span = (clip_len - 1) * stride
    rest = n - span
    step = -(-rest // (num_clips - 1))
    rng = rng if rng is not None else np.random.default_rng(0)
    starts, exceeded = [0], False
    for _ in range(num_clips - 1):
      start = starts[-1] + step
      if start + span >= n:
        start = int(rng.integers(0, rest)) if exceeded else n - span - 1
        exceeded = True
      starts.append(start)
    starts = sorted(starts)
  idx = np.asarray(starts, np.int64)[:, None] + (np.arange(clip_len, dtype=np.int64) * stride)[None, :]
  return np.clip(idx, 0, n - 1).astype(np.int64)


def uniform_test_indices(num_frames: int, clip_len: int, stride: int, num_clips: int) -> np.ndarray:
  """CtP `UniformFrameSampler` (testing): `num_clips` evenly spread clips, deterministic.

  `tick = (n - clip_len * stride + 1) / num_clips`, clip k starts at `int(tick / 2 + tick * k)` and frame i of it is
  `start + i * stride`, clamped to `n - 1`. Fallback (as in CtP): when `n - clip_len * stride + 1 <= 0` every clip
  starts at 0.

  Returns:
    int64 [num_clips, clip_len] frame indices.
  """
  n = _check_num_frames(num_frames, "uniform_test_indices")
  clip_len = _check_positive("clip_len", clip_len)
  stride = _check_positive("stride", stride)
  num_clips = _check_positive("num_clips", num_clips)
  offsets = _centred_offsets(n, clip_len, num_clips, stride)
  idx = offsets[:, None] + (np.arange(clip_len, dtype=np.int64) * stride)[None, :]
  return np.clip(idx, 0, n - 1).astype(np.int64)
