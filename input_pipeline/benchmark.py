"""Input-pipeline throughput: clips/s of the grain training pipeline vs a naive whole-video reader.

`pipeline_benchmark(data_dir, ...)` makes (or reuses) `num_videos` 340x256 H.264 mp4 files, then measures for
`seconds` each (after a warm-up batch):
- "naive": one process decodes every frame of a video, then samples a CtP clip and augments it;
- "files_w{k}": `pipeline.make_train_dataset` over the mp4 files with k grain worker processes (CtP-like sampling
  (16 frames, stride 1-5, jitter) + short-side resize {112,128,144} + 112 crop + flip + colour jitter + normalize);
- "arrayrecord_w{k}": the same pipeline over ArrayRecord shards of the same files (`input_pipeline.shards`);
- "jpeg_w{k}": the same pipeline over the prepared-clip format (the TFDS dataset of JPEG frames at short side 128,
  `fedvssl_jax.tfds_videos`, read by `input_pipeline.tfds_source`), float32 clips as above;
- "jpeg_uint8_w{k}": the prepared format with the clip leaving the host as uint8 (decode the sampled JPEGs +
  `transforms.random_short_side_crop` + flip); colour jitter and normalisation then run in the jitted step
  (`fedvssl_jax.ops.device_augment`).
The CtP readers read RGB-only data (files, shards and prepared dataset without flow, as a CtP dataset); with `goca`
the same readers also build GOCA's RGB + flow training examples (6 views per stream) from the videos with their flow.
Called by `scripts/benchmark.py --mode=pipeline`.
"""

from __future__ import annotations

import dataclasses
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


class CtPUint8Builder(CtPLikeBuilder):
  """The host part of `CtPLikeBuilder` for a uint8 pipeline: sampling, decoding, short-side resize + crop + flip.

  Output: {"video": uint8 [clip_len, crop, crop, 3], "label": int32}; the colour jitter and normalisation of
  `CtPLikeBuilder` move into the jitted step (`fedvssl_jax.ops.device_augment.jitter_and_normalize`).
  """

  def augment(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return transforms.random_short_side_crop(clip, self.short_side_sizes, self.crop, rng, flip_p=0.5)


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
                gop: int | None = None, flow: bool = False) -> list[Any]:
  """Writes (or reuses) `bench_XXX.mp4` 340x256 25 fps H.264 videos; returns `VideoRecord`s (label = index % 10).

  `gop`: keyframe interval in frames (None = x264's default, 250: one keyframe for a 100-frame video, like most
  short web videos; a clip then decodes from frame 0).
  `flow`: also write `bench_XXX_..._flow.mp4` (another synthetic video of the same size: the decoding cost of a
  3-channel flow video) as each record's `flow_path`.
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
    flow_path = None
    if flow:
      flow_path = path[:-4] + "_flow.mp4"
      if not os.path.isfile(flow_path):
        rng = np.random.default_rng(seed + 1000 + i)
        video_lib.write_video(flow_path + ".tmp.mp4", _synthetic_frames(rng, num_frames), fps=25, gop=gop)
        os.replace(flow_path + ".tmp.mp4", flow_path)
    records.append(VideoRecord(path=path, label=i % 10, name=os.path.basename(path)[:-4], flow_path=flow_path))
  return records


def cpu_seconds() -> float | None:
  """CPU time (user + system) of this process and all its live descendants (grain workers); None without psutil.

  Clips per CPU-second is the per-core throughput that does not depend on how many other jobs share the cores.
  """
  try:
    import psutil
  except ImportError:
    return None
  me = psutil.Process()
  total = 0.0
  for p in [me] + me.children(recursive=True):
    try:
      t = p.cpu_times()
      total += t.user + t.system
    except psutil.Error:
      pass
  return total


class ArrayReader:
  """A `ClipReader` over frames already decoded in memory (the naive reader's whole videos)."""

  def __init__(self, frames: np.ndarray, flow: np.ndarray | None = None):
    self.frames, self.flow = frames, flow
    self.num_frames = len(frames) if flow is None else min(len(frames), len(flow))
    self.has_flow = flow is not None

  def read(self, indices) -> np.ndarray:
    return self.frames[np.asarray(indices).reshape(-1)]

  def read_flow(self, indices) -> np.ndarray:
    return self.flow[np.asarray(indices).reshape(-1)]


def naive_clips_per_s(records, builder, seconds: float, seed: int = 0,
                      with_flow: bool = False) -> tuple[float, float]:
  """Decodes whole videos (every frame, and the flow video's) in this process, then builds one example per video.

  Returns (clips per wall second, clips per CPU second)."""
  rng = np.random.default_rng(seed)
  count, t0, c0, i = 0, None, 0.0, 0
  while True:
    r = records[i % len(records)]
    frames = video_lib.decode_frames(r.path, np.arange(video_lib.video_num_frames(r.path)))
    flow = None
    if with_flow:
      flow = video_lib.decode_frames(r.flow_path, np.arange(video_lib.video_num_frames(r.flow_path)))
    builder.build(ArrayReader(frames, flow), {"label": r.label}, rng)
    i += 1
    if t0 is None:  # the first video is a warm-up
      t0, c0 = time.perf_counter(), time.process_time()
      continue
    count += 1
    if time.perf_counter() - t0 >= seconds:
      return count / (time.perf_counter() - t0), count / max(1e-9, time.process_time() - c0)


def per_clip_ms(records, builder: CtPLikeBuilder, clips: int = 24, seed: int = 0) -> dict[str, float]:
  """In-process CPU cost split of one training clip: sampled-frame decoding vs augmentation (ms of CPU time)."""
  from input_pipeline import pipeline

  rng = np.random.default_rng(seed)
  for r in records:  # warm the per-process frame-index cache, as a long run would
    video_lib.video_num_frames(r.path)
  decode = augment = 0.0
  for i in range(clips):
    r = records[i % len(records)]
    t0 = time.process_time()
    reader = pipeline.ClipReader(r.path)
    clip = reader.read(samplers.random_stride_indices(reader.num_frames, builder.clip_len, CTP_STRIDES, rng))
    t1 = time.process_time()
    builder.augment(clip, rng)
    t2 = time.process_time()
    decode += t1 - t0
    augment += t2 - t1
  return {"decode": round(1000 * decode / clips, 1), "augment": round(1000 * augment / clips, 1)}


# Records the pipeline benchmark shuffles over: grain's `index_shuffle` costs about 50 / n ms per element for n
# records (`shuffle_ms_per_element`: 3.4 ms at the benchmark's 12 videos, 0.05 at 1200, 0.008 at Kinetics' 240k),
# so a dozen videos would charge each clip a shuffle cost no real dataset (UCF-101 9.5k, HMDB-51 3.6k clips) pays.
MIN_SHUFFLED_RECORDS = 1200


class TiledSource:
  """`source` listed `ceil(min_len / len(source))` times (record i is `source[i % len(source)]`): a benchmark's few
  videos at the index count of a real dataset, so grain's shuffle costs what it costs there (`MIN_SHUFFLED_RECORDS`)."""

  def __init__(self, source, min_len: int = MIN_SHUFFLED_RECORDS):
    self._source = source
    self._n = len(source)
    self._len = self._n * max(1, -(-int(min_len) // self._n))

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, i: int):
    return self._source[int(i) % self._n]


def shuffle_ms_per_element(sizes: Sequence[int] = (12, 300, 1200, 240_000), calls: int = 300) -> dict[str, float]:
  """CPU ms of grain's `index_shuffle` (what `MapDataset.shuffle` computes per element) over n records, per n."""
  from grain._src.python.experimental.index_shuffle.python import index_shuffle_module

  out = {}
  for n in sizes:
    t0 = time.process_time()
    for i in range(calls):
      index_shuffle_module.index_shuffle(i % n, max_index=n - 1, seed=5, rounds=4)
    out[str(n)] = round(1000 * (time.process_time() - t0) / calls, 4)
  return out


def pipeline_clips_per_s(source, builder, num_workers: int, seconds: float, batch_size: int = 4,
                         key: str = "video") -> tuple[float, float | None]:
  """(clips per wall second, clips per CPU second of this process + its workers, or None without psutil) of
  `make_train_dataset(source, builder, ...)` after the first batch (worker start-up excluded). `num_workers` 0 reads in
  this process on one grain thread (one core); the source is tiled to `MIN_SHUFFLED_RECORDS` records."""
  from input_pipeline import pipeline

  ds = pipeline.make_train_dataset(TiledSource(pipeline.as_source(source)), builder, batch_size=batch_size, seed=0,
                                   num_workers=num_workers, worker_buffer_size=2,
                                   read_threads=1 if num_workers == 0 else 2)
  it = iter(ds)
  try:
    next(it)
    t0, c0 = time.perf_counter(), cpu_seconds()
    clips = 0
    while time.perf_counter() - t0 < seconds:
      batch = next(it)
      clips += batch[key].shape[0]
    rate = clips / (time.perf_counter() - t0)
    c1 = cpu_seconds()
    return rate, (clips / max(1e-9, c1 - c0) if c0 is not None and c1 is not None else None)
  finally:
    close = getattr(it, "close", None)
    if close is not None:
      close()


def prepare_jpeg(records, data_dir: str, with_flow: bool, short_side: int = 128) -> tuple[str, str]:
  """The records as the prepared-clip TFDS dataset (JPEG frames at `short_side`); returns (tfds name, data_dir)."""
  from fedvssl_jax import tfds_videos
  from input_pipeline.annotations import write_json_list

  tfds_dir = os.path.join(data_dir, "tfds")
  name = f"bench_{len(records)}v_s{short_side}" + ("_flow" if with_flow else "")
  ann = os.path.join(data_dir, f"{name}.json")
  write_json_list(records, ann)
  tfds_videos.prepare("synthetic", name=name, data_dir=tfds_dir, manual_dir=data_dir, source="json",
                      train_annotations=ann, path_template="{name}.mp4", with_flow=with_flow,
                      flow_template="{name}_flow.mp4" if with_flow else "", short_side=short_side)
  return f"fedvssl_videos/{name}", tfds_dir


def _entry(name: str, task: str, workers: int, rates: tuple[float, float | None], note: str = "") -> dict[str, Any]:
  rate, per_cpu = rates
  # Cores the reader kept busy: at least one per grain worker (in-process: one), and more when the CPU time says so
  # (a worker's grain read threads, OpenCV and the JPEG decoder release the GIL, so one worker can use ~2 cores).
  cores = max(1.0, float(workers), rate / per_cpu if per_cpu else 0.0)
  out = {"name": name, "task": task, "workers": workers, "clips_per_s": round(rate, 2),
         "cores": round(cores, 2), "clips_per_s_per_core": round(rate / cores, 2),
         "clips_per_cpu_s": None if per_cpu is None else round(per_cpu, 2)}
  if note:
    out["note"] = note
  cpu = "" if per_cpu is None else f", {per_cpu:.2f} per CPU-second"
  print(f"{task:5s} {name:16s} workers={workers}: {rate:8.2f} clips/s ({rate / cores:.2f} per core on {cores:.2f} "
        f"cores{cpu})", flush=True)
  return out


def jpeg_per_clip_ms(source, builders: dict[str, Any], clips: int = 24, seed: int = 0) -> dict[str, float]:
  """In-process CPU cost split (ms of CPU time) of one CtP clip from the prepared format: reading + parsing the
  video's record (`source[i]`), sampling + decoding the clip's JPEGs, each builder's augmentation, and CtP's PatchMask
  on the uint8 builder's clip (`ctp_patch_mask`, only with a builder of uint8 output)."""
  from fedvssl_jax.pretext.ctp_patch_mask import patch_mask
  from input_pipeline import pipeline

  rng = np.random.default_rng(seed)
  out = {"read_record": 0.0, "decode": 0.0}
  out.update({k: 0.0 for k in builders})
  b0 = next(iter(builders.values()))
  for i in range(clips):
    t0 = time.process_time()
    rec = source[i % len(source)]
    t1 = time.process_time()
    reader = pipeline.reader_for(rec)
    clip = reader.read(samplers.random_stride_indices(reader.num_frames, b0.clip_len, CTP_STRIDES, rng))
    out["read_record"] += t1 - t0
    out["decode"] += time.process_time() - t1
    for k, b in builders.items():
      t0 = time.process_time()
      augmented = b.augment(clip, rng)
      out[k] += time.process_time() - t0
      if augmented.dtype == np.uint8:
        # CtP's PatchMask (defaults), the CtP pretext's host step on the uint8 crop; not in the timed readers' clips.
        t0 = time.process_time()
        patch_mask(np.ascontiguousarray(augmented), rng)
        out["ctp_patch_mask"] = out.get("ctp_patch_mask", 0.0) + time.process_time() - t0
  return {k: round(1000 * v / clips, 2) for k, v in out.items()}


def pipeline_benchmark(data_dir: str, *, num_videos: int = 24, workers: Sequence[int] = (0, 1, 2),
                       seconds: float = 20.0, clip_len: int = 16, crop: int = 112, num_frames: int = 100,
                       arrayrecord: bool = True, batch_size: int = 4, gop: int | None = None,
                       goca: bool = True, goca_batch_size: int = 2) -> dict[str, Any]:
  """Measures training-clip throughput (clips/s, and per core) of every reader, side by side in one run.

  Args:
    data_dir: where the benchmark videos, `arrayrecord_*/` shards and the `tfds/` prepared clips are made or reused.
    num_videos: number of 340x256 mp4 files (and as many flow videos when `goca`).
    workers: grain worker counts to measure (0: in this process, one grain thread).
    seconds: measuring time per configuration.
    clip_len, crop: CtP clip frames and crop size (16 x 112 x 112 by default).
    num_frames: frames per video (25 fps).
    arrayrecord: also measure the pipeline over ArrayRecord shards of the same files.
    batch_size: CtP pipeline batch size.
    gop: keyframe interval of the benchmark videos (None = x264 default 250).
    goca: also measure GOCA's RGB + flow examples (2 x 32 + 4 x 16 frames per stream, `GOCAClipBuilder`).
    goca_batch_size: GOCA pipeline batch size.

  Returns:
    {"readers": [{"name", "task", "workers", "clips_per_s", "cores" (busy cores: max(1, workers, CPU-seconds per
     second)), "clips_per_s_per_core" (clips_per_s / cores)}, ...],
     "best_clips_per_s_per_core" (CtP), "best_reader", "mp4_clips_per_s_per_core" (CtP, today's mp4 path, best
     worker count), the same per CPU-second ("clips_per_cpu_s", "best_clips_per_cpu_s", "mp4_clips_per_cpu_s": CPU
     time of the main process + grain workers, so a machine shared with other jobs does not lower them),
     "per_clip_ms" (CPU ms), "shuffle_ms_per_element" (grain's shuffle, CPU ms, by record count), the settings and
     the load average before / after}. A GOCA "clip" is one example.
  """
  from absl import flags

  if not flags.FLAGS.is_parsed():  # grain's mp_prefetch reads absl flags (grain 0.2.18)
    flags.FLAGS.mark_as_parsed()
  from input_pipeline import pipeline, shards, tfds_source

  pipeline.grain_worker_init(0, 1)  # OpenCV on one thread here too, as in the grain workers: one core per reader
  records = make_videos(data_dir, num_videos, num_frames, gop=gop, flow=goca)
  builder = CtPLikeBuilder(clip_len, crop)
  u8_builder = CtPUint8Builder(clip_len, crop)
  result: dict[str, Any] = {
      "benchmark": "input_pipeline", "videos": num_videos, "video_size": f"{WIDTH}x{HEIGHT}",
      "frames_per_video": num_frames, "gop": gop or 250, "clip": f"{clip_len}x{crop}x{crop}",
      "batch_size": batch_size, "seconds_per_config": seconds, "cpus": os.cpu_count(), "machine": platform.node(),
      "load_avg_1min_before": round(os.getloadavg()[0], 2), "readers": []}
  readers = result["readers"]

  def make_sources(recs, with_flow: bool) -> dict[str, Any]:
    """The mp4 files, their ArrayRecord shards and the prepared JPEG frames of `recs` (with their flow or not)."""
    out = {"mp4": pipeline.VideoRecordSource(recs)}
    if arrayrecord:
      ar_dir = os.path.join(data_dir, f"arrayrecord_{num_videos}_{num_frames}f" + (f"_g{gop}" if gop else "")
                            + ("_flow" if with_flow else ""))
      if not os.path.isfile(os.path.join(ar_dir, "videos.json")):
        shards.write_shards(recs, ar_dir, num_shards=2)
      out["arrayrecord_mp4"] = shards.ArrayRecordVideoSource(ar_dir)
    name, tfds_dir = prepare_jpeg(recs, data_dir, with_flow=with_flow)
    out["jpeg"] = tfds_source.TfdsVideoSource(name, "train", data_dir=tfds_dir,
                                              flow_key="flow" if with_flow else None)
    return out

  t0 = time.perf_counter()
  # CtP reads RGB-only data (as a CtP dataset: no flow in the records); GOCA the same videos with their flow.
  sources = make_sources([dataclasses.replace(r, flow_path=None) for r in records], with_flow=False)
  goca_sources = make_sources(records, with_flow=True) if goca else {}
  result["prepare_s"] = round(time.perf_counter() - t0, 1)
  result["shuffle_ms_per_element"] = shuffle_ms_per_element()  # by record count; see MIN_SHUFFLED_RECORDS
  result["per_clip_ms"] = {"mp4": per_clip_ms(records, builder),
                           "jpeg": jpeg_per_clip_ms(sources["jpeg"], {"augment_float32": builder,
                                                                      "augment_uint8": u8_builder})}
  print(f"per clip, in process (ms): {result['per_clip_ms']}", flush=True)
  readers.append(_entry("naive", "ctp", 0, naive_clips_per_s(records, builder, seconds)))
  for w in workers:  # readers back to back per worker count: fairer under a varying machine load
    for kind, source in sources.items():
      readers.append(_entry(kind, "ctp", w, pipeline_clips_per_s(source, builder, w, seconds, batch_size)))
    readers.append(_entry("jpeg_uint8", "ctp", w, pipeline_clips_per_s(sources["jpeg"], u8_builder, w, seconds,
                                                                       batch_size),
                          note="uint8 clips; colour jitter + normalisation in the jitted step"))
    readers.append(_entry("mp4_uint8", "ctp", w, pipeline_clips_per_s(sources["mp4"], u8_builder, w, seconds,
                                                                      batch_size),
                          note="uint8 clips from the mp4 files (isolates the format's share of the gain)"))
  if goca:
    from fedvssl_jax.goca.data import GOCAClipBuilder

    gb = GOCAClipBuilder()
    key = gb.view_keys("rgb")[0]
    readers.append(_entry("naive", "goca", 0, naive_clips_per_s(records, gb, seconds, with_flow=True)))
    for w in workers:
      for kind, source in goca_sources.items():
        rate = pipeline_clips_per_s(source, gb, w, seconds, goca_batch_size, key=key)
        readers.append(_entry(kind, "goca", w, rate))
  ctp = [r for r in readers if r["task"] == "ctp"]
  best = max(ctp, key=lambda r: r["clips_per_s_per_core"])
  result["best_clips_per_s_per_core"] = best["clips_per_s_per_core"]
  result["best_reader"] = f"{best['name']} ({best['workers']} workers)"
  result["mp4_clips_per_s_per_core"] = max(r["clips_per_s_per_core"] for r in ctp if r["name"] == "mp4")
  result["best_over_mp4"] = round(result["best_clips_per_s_per_core"] / result["mp4_clips_per_s_per_core"], 2)
  if all(r["clips_per_cpu_s"] is not None for r in ctp):  # the same, per CPU-second: independent of other jobs
    best = max(ctp, key=lambda r: r["clips_per_cpu_s"])
    result["best_clips_per_cpu_s"] = best["clips_per_cpu_s"]
    result["best_reader_per_cpu_s"] = f"{best['name']} ({best['workers']} workers)"
    result["mp4_clips_per_cpu_s"] = max(r["clips_per_cpu_s"] for r in ctp if r["name"] == "mp4")
    result["best_over_mp4_per_cpu_s"] = round(result["best_clips_per_cpu_s"] / result["mp4_clips_per_cpu_s"], 2)
  result["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
  return result
