"""Input-pipeline throughput: clips/s of the grain training pipeline vs a naive whole-video reader.

`pipeline_benchmark(data_dir, ...)` makes (or reuses) `num_videos` 340x256 H.264 mp4 files, then measures for
`seconds` each (after a warm-up batch):
- "naive": one process decodes every frame of a video, then samples a CtP clip and augments it;
- "files_w{k}": `pipeline.make_train_dataset` over the mp4 files with k grain worker processes (CtP-like sampling
  (16 frames, stride 1-5, jitter) + short-side resize {112,128,144} + 112 crop + flip + colour jitter + normalize);
- "arrayrecord_w{k}": the same pipeline over ArrayRecord shards of the same files (`input_pipeline.shards`).
Called by `scripts/benchmark.py --mode=pipeline`.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any, Sequence

import numpy as np

from input_pipeline import samplers
from input_pipeline import transforms
from input_pipeline import video as video_lib

WIDTH, HEIGHT = 340, 256
CTP_STRIDES = (1, 2, 3, 4, 5)


class CtPLikeBuilder:
  """CtP-style training clip (without PatchMask): random stride + jitter, resize, crop, flip, jitter, normalize.

  Output: {"video": float32 [clip_len, crop, crop, 3], "label": int32}.
  """

  def __init__(self, clip_len: int = 16, crop: int = 112, short_side_sizes: Sequence[int] = (112, 128, 144)):
    self.clip_len = int(clip_len)
    self.crop = int(crop)
    self.short_side_sizes = tuple(short_side_sizes)
    self.min_frames = self.clip_len

  def augment(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return transforms.train_clip_augment(clip, rng, short_side_sizes=self.short_side_sizes, crop_size=self.crop,
                                         flip_p=0.5, jitter=(0.12, 0.12, 0.1, 0.033, 0.25))

  def build(self, reader, record, rng: np.random.Generator) -> dict[str, np.ndarray]:
    idx = samplers.random_stride_indices(reader.num_frames, self.clip_len, CTP_STRIDES, rng)
    return {"video": self.augment(reader.read(idx), rng), "label": np.int32(record["label"])}


def _synthetic_frames(rng: np.random.Generator, num_frames: int) -> np.ndarray:
  """Moving coloured gradients + a moving square + noise: realistic-ish H.264 cost (not trivially compressible)."""
  yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
  base = rng.uniform(0, 255, size=3).astype(np.float32)
  vel = rng.uniform(-4, 4, size=2)
  frames = np.empty((num_frames, HEIGHT, WIDTH, 3), np.uint8)
  for t in range(num_frames):
    f = np.stack([(xx + 3 * t) * 0.5 + base[0], (yy - 2 * t) * 0.7 + base[1], (xx + yy + t) * 0.3 + base[2]], -1)
    f = np.mod(f, 255.0)
    cy, cx = int(HEIGHT / 2 + vel[0] * t) % (HEIGHT - 40), int(WIDTH / 2 + vel[1] * t) % (WIDTH - 40)
    f[cy:cy + 40, cx:cx + 40] = 255.0 - f[cy:cy + 40, cx:cx + 40]
    f += rng.normal(0, 8, size=f.shape[:2] + (1,))
    frames[t] = np.clip(f, 0, 255).astype(np.uint8)
  return frames


def make_videos(data_dir: str, num_videos: int, num_frames: int = 100, seed: int = 0,
                gop: int | None = None) -> list[Any]:
  """Writes (or reuses) `bench_XXX.mp4` 340x256 25 fps H.264 videos; returns `VideoRecord`s (label = index % 10).

  `gop`: keyframe interval in frames (None = x264's default, 250: one keyframe for a 100-frame video, like most
  short web videos; a clip then decodes from frame 0).
  """
  from input_pipeline.annotations import VideoRecord

  os.makedirs(data_dir, exist_ok=True)
  records = []
  for i in range(num_videos):
    suffix = f"_g{gop}" if gop else ""
    path = os.path.join(data_dir, f"bench_{i:03d}_{num_frames}f{suffix}.mp4")
    if not os.path.isfile(path):
      rng = np.random.default_rng(seed + i)
      video_lib.write_video(path + ".tmp.mp4", _synthetic_frames(rng, num_frames), fps=25, gop=gop)
      os.replace(path + ".tmp.mp4", path)
    records.append(VideoRecord(path=path, label=i % 10, name=f"bench_{i:03d}"))
  return records


def naive_clips_per_s(records, builder: CtPLikeBuilder, seconds: float, seed: int = 0) -> float:
  """Decodes whole videos (every frame) in this process, then samples and augments one clip per video."""
  rng = np.random.default_rng(seed)
  count, t0, i = 0, None, 0
  while True:
    r = records[i % len(records)]
    n = video_lib.video_num_frames(r.path)
    frames = video_lib.decode_frames(r.path, np.arange(n))
    idx = samplers.random_stride_indices(n, builder.clip_len, CTP_STRIDES, rng)
    builder.augment(frames[idx], rng)
    i += 1
    if t0 is None:  # the first video is a warm-up
      t0 = time.perf_counter()
      continue
    count += 1
    if time.perf_counter() - t0 >= seconds:
      return count / (time.perf_counter() - t0)


def per_clip_ms(records, builder: CtPLikeBuilder, clips: int = 24, seed: int = 0) -> dict[str, float]:
  """In-process cost split of one training clip: sampled-frame decoding vs augmentation (milliseconds)."""
  from input_pipeline import pipeline

  rng = np.random.default_rng(seed)
  for r in records:  # warm the per-process frame-index cache, as a long run would
    video_lib.video_num_frames(r.path)
  decode = augment = 0.0
  for i in range(clips):
    r = records[i % len(records)]
    t0 = time.perf_counter()
    reader = pipeline.ClipReader(r.path)
    clip = reader.read(samplers.random_stride_indices(reader.num_frames, builder.clip_len, CTP_STRIDES, rng))
    t1 = time.perf_counter()
    builder.augment(clip, rng)
    t2 = time.perf_counter()
    decode += t1 - t0
    augment += t2 - t1
  return {"decode": round(1000 * decode / clips, 1), "augment": round(1000 * augment / clips, 1)}


def pipeline_clips_per_s(source, builder, num_workers: int, seconds: float, batch_size: int = 4) -> float:
  """clips/s of `make_train_dataset(source, builder, ...)` after the first batch (worker start-up excluded)."""
  from input_pipeline import pipeline

  ds = pipeline.make_train_dataset(source, builder, batch_size=batch_size, seed=0, num_workers=num_workers,
                                   worker_buffer_size=2)
  it = iter(ds)
  try:
    next(it)
    t0 = time.perf_counter()
    clips = 0
    while time.perf_counter() - t0 < seconds:
      batch = next(it)
      clips += batch["video"].shape[0]
    return clips / (time.perf_counter() - t0)
  finally:
    close = getattr(it, "close", None)
    if close is not None:
      close()


def pipeline_benchmark(data_dir: str, *, num_videos: int = 24, workers: Sequence[int] = (1, 2),
                       seconds: float = 20.0, clip_len: int = 16, crop: int = 112, num_frames: int = 100,
                       arrayrecord: bool = True, batch_size: int = 4, gop: int | None = None) -> dict[str, Any]:
  """Measures training-clip throughput (clips/s) of the naive reader and of the grain pipeline.

  Args:
    data_dir: where the benchmark videos (and `arrayrecord/` shards) are made or reused.
    num_videos: number of 340x256 mp4 files.
    workers: grain worker counts to measure.
    seconds: measuring time per configuration.
    clip_len, crop: clip frames and crop size (16 x 112 x 112 by default).
    num_frames: frames per video (25 fps).
    arrayrecord: also measure the pipeline over ArrayRecord shards of the same files.
    batch_size: pipeline batch size.
    gop: keyframe interval of the benchmark videos (None = x264 default 250).

  Returns:
    {"clips_per_s": {"naive": x, "files_w1": x, ..., "arrayrecord_w1": x, ...}, and the settings}.
  """
  from absl import flags

  if not flags.FLAGS.is_parsed():  # grain's mp_prefetch reads absl flags (grain 0.2.18)
    flags.FLAGS.mark_as_parsed()
  from input_pipeline import pipeline, shards

  records = make_videos(data_dir, num_videos, num_frames, gop=gop)
  builder = CtPLikeBuilder(clip_len, crop)
  result: dict[str, Any] = {
      "benchmark": "input_pipeline", "videos": num_videos, "video_size": f"{WIDTH}x{HEIGHT}",
      "frames_per_video": num_frames, "gop": gop or 250, "clip": f"{clip_len}x{crop}x{crop}",
      "batch_size": batch_size, "seconds_per_config": seconds, "cpus": os.cpu_count(), "machine": platform.node(),
      "load_avg_1min_before": round(os.getloadavg()[0], 2), "clips_per_s": {}}
  rates = result["clips_per_s"]
  result["per_clip_ms"] = per_clip_ms(records, builder)
  print(f"per clip, in process: {result['per_clip_ms']}", flush=True)
  rates["naive"] = round(naive_clips_per_s(records, builder, seconds), 2)
  print(f"naive whole-video reader: {rates['naive']:.2f} clips/s", flush=True)
  sources = {"files": pipeline.VideoRecordSource(records)}
  if arrayrecord:
    ar_dir = os.path.join(data_dir, f"arrayrecord_{num_videos}_{num_frames}f" + (f"_g{gop}" if gop else ""))
    if not os.path.isfile(os.path.join(ar_dir, "videos.json")):
      shards.write_shards(records, ar_dir, num_shards=2)
    sources["arrayrecord"] = shards.ArrayRecordVideoSource(ar_dir)
  for w in workers:  # files and shards back to back per worker count: fairer under a varying machine load
    for kind, source in sources.items():
      key = f"{kind}_w{w}"
      rates[key] = round(pipeline_clips_per_s(source, builder, w, seconds, batch_size), 2)
      print(f"grain pipeline ({kind}, {w} workers): {rates[key]:.2f} clips/s", flush=True)
  result["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
  return result
