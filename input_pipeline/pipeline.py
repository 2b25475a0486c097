"""The grain input pipeline: video sources, clip builders, train/eval datasets, bad-input handling, checkpointing.

Data flow (grain 0.2.18 `Dataset` API):

  records / source ──[shard_index::shard_count]──> MapDataset.source ─ seed ─ shuffle ─ repeat(num_epochs)
      ─ random_map(BuildClip(builder)) ─ batch ─ to_iter_dataset(ReadOptions) ─ mp_prefetch(num_workers)

* A **source** is random-access (`__len__`, `__getitem__`) and returns a record dict (`SourceRecord`) with keys
  "index" (int, position in the source), "path" (str), "label" (int, 0-based), "name" (str), "flow_path" (str or
  None), and, for ArrayRecord shards (`input_pipeline.shards`), "video_bytes"/"flow_bytes" and "num_frames"/
  "flow_num_frames", or, for prepared TFDS datasets (`input_pipeline.tfds_source`), "frames"/"flow_frames" (one
  encoded JPEG per frame). `SourceRecord` is a dict that also allows attribute access (`record.label`).
* A task's **clip builder** is any picklable object with
    - `min_frames: int` — frames the builder needs; shorter videos count as bad input;
    - `build(reader, record, rng) -> dict[str, np.ndarray]` — picks frame indices with a sampler
      (`input_pipeline.samplers`), reads them with `reader.read(indices)` (and `reader.read_flow(indices)`),
      augments (`input_pipeline.transforms`) and returns fixed-shape numpy arrays.
  `reader` is a `ClipReader`: `reader.num_frames` (min over RGB and flow when flow is present),
  `reader.read(indices) -> uint8 [T, H, W, 3]`, `reader.read_flow(indices) -> uint8 [T, H, W, 3]`. Read all the
  frames a sample needs in one call (it decodes forward from one seek; repeated indices are decoded once).
* Per-element randomness comes from grain's per-index `np.random.Generator` derived from `seed`, so a dataset's output
  depends only on the seed, never on `num_workers`.

Bad input: a video that cannot be read, is truncated/corrupt/empty, or has fewer than `builder.min_frames` frames is
**replaced** by another record of the same shard drawn from the element's rng (deterministic), up to
`max_attempts` tries; only `max_attempts` consecutive failures raise. Each bad path is named once per process with
`logging.warning` (path + reason). Counting works through worker processes because it travels with the data: every
element carries `"num_replaced"` (int32, how many records were skipped before this one was built; summed over the
batch gives the bad inputs seen in that batch). `bad_input_stats()` additionally returns this process's counters
(only complete with `num_workers=0`).

Checkpointing: the trainer adds the iterator to its Orbax `Composite`:

    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            data=iterator_save_args(it)))
    mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                               data=iterator_restore_args(it)))

where `it = iter(make_train_dataset(...))` and restore is into a fresh iterator of the same dataset.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any, Iterable, Mapping, Sequence

import grain
import numpy as np

from input_pipeline import samplers
from input_pipeline import transforms
from input_pipeline import video as video_lib

_log = logging.getLogger(__name__)

# Errors that mean "this input is bad" (as opposed to a bug in a builder, which propagates).
BAD_INPUT_ERRORS = (video_lib.VideoDecodeError, OSError, EOFError, ValueError, IndexError)


class BadVideoError(ValueError):
  """A video is unusable for a builder (too short, inconsistent RGB/flow, ...). The message names the file."""


# ----------------------------------------------------------------------------------------------------------------
# Sources


class SourceRecord(dict):
  """A record dict that also allows attribute access (`r.label == r["label"]`). Picklable."""

  def __getattr__(self, key):
    try:
      return self[key]
    except KeyError:
      raise AttributeError(key) from None


def _stable_digest(items: Iterable[str]) -> str:
  h = hashlib.sha1()
  for s in items:
    h.update(s.encode("utf-8", "surrogateescape"))
    h.update(b"\0")
  return h.hexdigest()[:12]


class VideoRecordSource(grain.sources.RandomAccessDataSource):
  """Grain random-access source over `VideoRecord`s (files on disk).

  Args:
    records: sequence of `input_pipeline.annotations.VideoRecord` (or any object with `path`, `label`, `name`
      and optional `flow_path` attributes).

  `source[i]` -> `SourceRecord(index=i, path=str, label=int, name=str, flow_path=str | None)`.
  Picklable (plain tuples) and with a `repr` that is stable across processes (used by grain checkpoints).
  """

  def __init__(self, records: Sequence[Any]):
    rows = []
    for i, r in enumerate(records):
      try:
        path, label = str(r.path), int(r.label)
      except (AttributeError, TypeError, ValueError) as e:
        raise ValueError(f"VideoRecordSource: record {i} ({r!r}) needs a path and an int label") from e
      name = str(getattr(r, "name", "") or path)
      flow = getattr(r, "flow_path", None)
      rows.append((path, label, name, None if flow is None else str(flow)))
    self._rows = tuple(rows)
    self._digest = _stable_digest(f"{p}|{l}|{f}" for p, l, _, f in self._rows)

  def __len__(self) -> int:
    return len(self._rows)

  def __getitem__(self, index: int) -> SourceRecord:
    index = int(index)
    if not 0 <= index < len(self._rows):
      index = index % len(self._rows) if self._rows else index
    path, label, name, flow = self._rows[index]
    return SourceRecord(index=index, path=path, label=label, name=name, flow_path=flow)

  def __repr__(self) -> str:
    return f"VideoRecordSource(num_records={len(self._rows)}, digest={self._digest})"


class _SubsetSource(grain.sources.RandomAccessDataSource):
  """Records `start, start + step, ...` of a source (this process's / client's shard)."""

  def __init__(self, source, start: int, step: int):
    n = len(source)
    if step < 1 or not 0 <= start < max(step, 1):
      raise ValueError(f"shard_index must be in [0, shard_count) and shard_count >= 1, got {start}, {step}")
    self._source = source
    self._start = int(start)
    self._step = int(step)
    self._len = len(range(self._start, n, self._step))

  def __len__(self) -> int:
    return self._len

  def source_index(self, i: int) -> int:
    return self._start + (int(i) % self._len) * self._step

  def __getitem__(self, i: int):
    return self._source[self.source_index(i)]

  def __repr__(self) -> str:
    return f"_SubsetSource({self._source!r}, start={self._start}, step={self._step})"


class _PaddedSource(grain.sources.RandomAccessDataSource):
  """Pads a source to `length` by repeating its last record; padded records have `valid=False`."""

  def __init__(self, source, length: int):
    self._source = source
    self._n = len(source)
    self._len = int(length)

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, i: int):
    i = int(i)
    rec = SourceRecord(self._source[min(i, self._n - 1)])
    rec["valid"] = i < self._n
    return rec

  def __repr__(self) -> str:
    return f"_PaddedSource({self._source!r}, length={self._len})"


def as_source(records) -> Any:
  """A list of `VideoRecord`s -> `VideoRecordSource`; a source (has `__getitem__` and `__len__`, e.g.
  `VideoRecordSource` or `shards.ArrayRecordVideoSource`) is returned unchanged."""
  if isinstance(records, (list, tuple)):
    return VideoRecordSource(records)
  if hasattr(records, "__getitem__") and hasattr(records, "__len__"):
    return records
  return VideoRecordSource(list(records))


# ----------------------------------------------------------------------------------------------------------------
# Reading frames


class ClipReader:
  """Lazy frame reader of one record, handed to `builder.build`.

  Each stream is resolved once (`input_pipeline.video.VideoFile`) and shares its cached frame index between
  `num_frames` and the reads: files are decoded straight from disk (only the GOPs a clip needs are read), and for
  ArrayRecord records the encoded bytes already in the record are decoded from memory.

  Args:
    video: path or encoded bytes of the RGB video.
    flow: path or bytes of the flow video (3-channel (128, v, u) frames), or None.
    num_frames: known RGB frame count (e.g. from shard metadata); None = read from the file.
    flow_num_frames: known flow frame count.
    name: name used in error messages.
  """

  def __init__(self, video, flow=None, *, num_frames: int | None = None, flow_num_frames: int | None = None,
               name: str | None = None):
    self._inputs = {"rgb": video, "flow": flow}
    self._files: dict[str, video_lib.VideoFile] = {}
    self._counts = {"rgb": num_frames, "flow": flow_num_frames}
    self.name = name or (video if isinstance(video, str) else "<bytes>")

  @property
  def has_flow(self) -> bool:
    return self._inputs["flow"] is not None

  def _file(self, what: str) -> video_lib.VideoFile:
    if what not in self._files:
      src = self._inputs[what]
      if src is None:
        raise BadVideoError(f"{self.name}: the builder needs flow but the record has no flow_path")
      self._files[what] = video_lib.VideoFile(src, name=f"{self.name} ({what})")  # names in-memory bytes
    return self._files[what]

  def _count(self, what: str) -> int:
    if self._counts[what] is None:
      self._counts[what] = int(self._file(what).num_frames)
    return self._counts[what]

  @property
  def num_rgb_frames(self) -> int:
    return self._count("rgb")

  @property
  def num_flow_frames(self) -> int:
    return self._count("flow")

  @property
  def num_frames(self) -> int:
    """Frames usable by a sampler: min over RGB and flow when the record has flow."""
    n = self.num_rgb_frames
    if self.has_flow:
      n = min(n, self.num_flow_frames)
    return n

  def _read(self, what: str, indices) -> np.ndarray:
    idx = np.asarray(indices).reshape(-1)
    return self._file(what).decode(idx)

  def read(self, indices) -> np.ndarray:
    """uint8 [len(indices), H, W, 3] RGB frames (indices flattened, any order, repeats decoded once)."""
    return self._read("rgb", indices)

  def read_flow(self, indices) -> np.ndarray:
    """uint8 [len(indices), H, W, 3] flow frames (128, v, u) at the same indices."""
    return self._read("flow", indices)


def reader_for(record: Mapping[str, Any]):
  """The reader of a source record: a `ClipReader` (file paths, or in-record bytes from ArrayRecord shards), or a
  `jpeg_frames.JpegClipReader` for records with encoded "frames" (TFDS sources, `input_pipeline.tfds_source`)."""
  if record.get("frames") is not None:
    from input_pipeline import jpeg_frames

    return jpeg_frames.JpegClipReader(record["frames"], record.get("flow_frames"),
                                      name=record.get("path") or record.get("name"))
  video = record.get("video_bytes")
  if video is None:
    video = record["path"]
  flow = record.get("flow_bytes")
  if flow is None:
    flow = record.get("flow_path")
  return ClipReader(video, flow, num_frames=record.get("num_frames"), flow_num_frames=record.get("flow_num_frames"),
                    name=record.get("path") or record.get("name"))


# ----------------------------------------------------------------------------------------------------------------
# Bad-input accounting (per process)

_STATS_LOCK = threading.Lock()
_STATS = {"replaced": 0, "bad_paths": {}}


def bad_input_stats() -> dict[str, Any]:
  """This process's counters: {"replaced": int, "bad_paths": {path: reason}}.

  With `num_workers > 0` the decoding happens in worker processes, so use the batches' "num_replaced" instead.
  """
  with _STATS_LOCK:
    return {"replaced": _STATS["replaced"], "bad_paths": dict(_STATS["bad_paths"])}


def reset_bad_input_stats() -> None:
  with _STATS_LOCK:
    _STATS["replaced"] = 0
    _STATS["bad_paths"].clear()


def _note_bad(path: str, reason: str) -> None:
  with _STATS_LOCK:
    _STATS["replaced"] += 1
    first = path not in _STATS["bad_paths"]
    if first:
      _STATS["bad_paths"][path] = reason
  if first:
    _log.warning("skipping bad video %s: %s (it is replaced by another record)", path, reason)


class BuildClip(grain.transforms.RandomMap):
  """Grain `RandomMap` that turns a source record into a builder's example, replacing bad inputs.

  Args:
    builder: the task's clip builder (`min_frames`, `build(reader, record, rng)`).
    source: the (sharded) source the records come from; replacements are drawn from it.
    max_attempts: records tried per element before giving up (RuntimeError).
    eval_mode: replacements are built (for the shapes) but marked `valid=False`, and the element keeps its own
      "index"; in train mode the replacement simply takes the slot.
  """

  def __init__(self, builder, source, max_attempts: int = 16, eval_mode: bool = False):
    self.builder = builder
    self.source = source
    self.max_attempts = int(max_attempts)
    self.eval_mode = eval_mode

  def _try_build(self, record, rng):
    reader = reader_for(record)
    need = int(getattr(self.builder, "min_frames", 1))
    n = reader.num_frames
    if n < need:
      raise BadVideoError(f"{reader.name}: has {n} usable frames, the builder needs >= {need}")
    return self.builder.build(reader, record, rng)

  def random_map(self, record, rng: np.random.Generator):
    original = record
    valid = bool(record.get("valid", True))
    errors = []
    for attempt in range(self.max_attempts):
      try:
        out = self._try_build(record, rng)
        break
      except BAD_INPUT_ERRORS as e:
        path = str(record.get("path") or record.get("name"))
        _note_bad(path, f"{type(e).__name__}: {e}")
        errors.append(f"{path}: {e}")
        valid = False
        record = self.source[int(rng.integers(len(self.source)))]
    else:
      raise RuntimeError(f"{self.max_attempts} consecutive records could not be used; last errors: "
                         + " | ".join(errors[-3:]))
    out = dict(out)
    out["num_replaced"] = np.int32(attempt)
    if self.eval_mode:
      out["valid"] = np.bool_(valid)
      out["index"] = np.int32(original["index"])
      if "label" in out:
        out["label"] = np.int32(original["label"])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Datasets


def grain_worker_init(worker_index: int, worker_count: int) -> None:
  """Runs first in every grain worker process: OpenCV on one thread.

  A worker is meant to keep one core busy; OpenCV's own thread pool (as many threads as cores) splits each small
  per-frame resize across threads that then wait for each other, which slowed the prepared-JPEG pipeline (uint8 CtP
  clips, 1 worker) from about 44 to 28 clips/s on the project's 2-core machine (docs/benchmarks.md).
  """
  del worker_index, worker_count
  import cv2

  cv2.setNumThreads(1)


def _read_options(num_threads: int, prefetch: int) -> grain.ReadOptions:
  return grain.ReadOptions(num_threads=max(1, int(num_threads)), prefetch_buffer_size=max(1, int(prefetch)))


def make_train_dataset(records, builder, *, batch_size: int, seed: int, num_workers: int = 0,
                       worker_buffer_size: int = 2, shard_index: int = 0, shard_count: int = 1,
                       num_epochs: int | None = None, drop_remainder: bool = True, read_threads: int = 2,
                       prefetch_buffer_size: int = 4, max_attempts: int = 16, process_index: int = 0,
                       process_count: int = 1) -> grain.IterDataset:
  """The training `IterDataset` of batched dicts.

  Multi-process training passes `process_index` / `process_count` (not `shard_*`): all processes shuffle and augment
  the same global stream, cut into batches of `batch_size` rows, and process p takes batches p, p + P, p + 2P, ...
  So global batch g (the processes' g-th batches, concatenated in process order) is the same examples with the same
  augmentation at any process count, and the processes decode disjoint examples.

  Args:
    records: list of `VideoRecord` or a source (`VideoRecordSource`, `shards.ArrayRecordVideoSource`).
    builder: the task's clip builder.
    batch_size: examples per batch (this process's share of the global batch).
    seed: seeds the per-epoch shuffle and every element's augmentation rng.
    num_workers: grain worker processes (0 = decode in this process's threads).
    worker_buffer_size: batches buffered per worker.
    shard_index, shard_count: keep records `shard_index::shard_count` (a fixed split of the records).
    num_epochs: passes over the shard; None = forever.
    drop_remainder: drop the last incomplete batch of the (finite) stream.
    read_threads, prefetch_buffer_size: `grain.ReadOptions` per process (kept small for video).
    max_attempts: records tried per element before a RuntimeError.
    process_index, process_count: this process's batches of the global stream (see above).

  Returns:
    `grain.IterDataset` of dicts of stacked numpy arrays: the builder's keys with a leading batch dim, plus
    "num_replaced" int32 [B].
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, process_count), got {process_index}, {process_count}")
  source = _SubsetSource(as_source(records), shard_index, shard_count)
  if len(source) == 0:
    raise ValueError(f"shard {shard_index} of {shard_count} has no records ({len(as_source(records))} in total)")
  ds = grain.MapDataset.source(source).seed(int(seed)).shuffle()
  ds = ds.repeat(num_epochs)
  ds = ds.random_map(BuildClip(builder, source, max_attempts=max_attempts))
  ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
  if process_count > 1:
    if num_epochs is not None:  # every process must see the same number of batches
      ds = ds.slice(slice(0, len(ds) - len(ds) % process_count))
    ds = ds.slice(slice(int(process_index), None, int(process_count)))
  it_ds = ds.to_iter_dataset(_read_options(read_threads, prefetch_buffer_size))
  if num_workers > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(num_workers),
                                                           per_worker_buffer_size=int(worker_buffer_size)),
                              worker_init_fn=grain_worker_init)
  return it_ds


def make_eval_dataset(records, builder, *, batch_size: int, num_workers: int = 0, shard_index: int = 0,
                      shard_count: int = 1, seed: int = 0, read_threads: int = 2,
                      prefetch_buffer_size: int = 4, max_attempts: int = 16,
                      num_batches: int | None = None) -> grain.IterDataset:
  """One ordered pass over this shard's records, the last batch padded.

  `num_batches` pads further, to that many batches (multi-process feature extraction: every process runs the same
  number of steps although shard sizes differ by one).

  Returns:
    `grain.IterDataset` of batched dicts: the builder's keys plus "valid" bool [B] (False for padding and for bad
    videos, whose slot holds a replacement's views), "index" int32 [B] (the record's index in `records`) and
    "num_replaced" int32 [B]. Every record of the shard appears exactly once, in order; padding repeats the last
    record with valid=False.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  base = as_source(records)
  source = _SubsetSource(base, shard_index, shard_count)
  n = len(source)
  if n == 0:
    raise ValueError(f"shard {shard_index} of {shard_count} has no records ({len(base)} in total)")
  n_padded = -(-n // batch_size) * batch_size
  if num_batches is not None:
    if num_batches * batch_size < n_padded:
      raise ValueError(f"num_batches={num_batches} of {batch_size} cannot hold the shard's {n} records")
    n_padded = num_batches * batch_size
  padded = _PaddedSource(source, n_padded)
  ds = grain.MapDataset.source(padded).seed(int(seed))
  ds = ds.random_map(BuildClip(builder, source, max_attempts=max_attempts, eval_mode=True))
  ds = ds.batch(int(batch_size), drop_remainder=True)
  it_ds = ds.to_iter_dataset(_read_options(read_threads, prefetch_buffer_size))
  if num_workers > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(num_workers), per_worker_buffer_size=2),
                              worker_init_fn=grain_worker_init)
  return it_ds


# ----------------------------------------------------------------------------------------------------------------
# Checkpointing


def iterator_save_args(it):
  """Orbax arg that saves a grain iterator's state; add it to the trainer's `ocp.args.Composite`."""
  return grain.checkpoint.CheckpointSave(it)


def iterator_restore_args(it):
  """Orbax arg that restores a grain iterator's state in place (into a fresh iterator of the same dataset)."""
  return grain.checkpoint.CheckpointRestore(it)


# ----------------------------------------------------------------------------------------------------------------
# Generic builders


class SupervisedTrainBuilder:
  """Fine-tuning / supervised training examples: one clip per video, fixed stride, random start.

  Defaults: 16 frames at stride 2, short side in {112, 128, 144}, 112 crop, flip p=0.35, torchvision-style
  brightness/contrast/saturation/hue jitter with p=0.2 (CtP's ops mapped to ColorJitter factors: (32/255, 0.2, 0.1,
  0.067)). CtP's own fine-tuning augmentation: `scales_wh=transforms.CTP_SCALES_WH` (resize to a (w, h) pair instead
  of a short side) and `ctp_color=transforms.CTP_COLOR` (its three independent colour ops instead of the jitter).

  Output: {"video": float32 [clip_len, crop, crop, 3] (ImageNet-normalized), "label": int32}.
  """

  def __init__(self, clip_len: int = 16, stride: int = 2, short_side_sizes: Sequence[int] | None = (112, 128, 144),
               crop_size: int = 112, flip_p: float = 0.35,
               jitter: tuple[float, float, float, float, float] | None = (32 / 255, 0.2, 0.1, 0.067, 0.2),
               short_side_range: tuple[int, int] | None = None, grayscale_p: float = 0.0,
               min_frames: int | None = None, scales_wh: Sequence[Sequence[int]] | None = None,
               ctp_color: Sequence[float] | None = None):
    self.scales_wh = tuple(tuple(int(v) for v in wh) for wh in scales_wh) if scales_wh else None
    self.ctp_color = tuple(float(v) for v in ctp_color) if ctp_color else None
    self.clip_len = int(clip_len)
    self.stride = int(stride)
    self.short_side_sizes = tuple(short_side_sizes) if short_side_sizes is not None else None
    self.short_side_range = tuple(short_side_range) if short_side_range is not None else None
    if self.short_side_range is not None:
      self.short_side_sizes = None
    self.crop_size = int(crop_size)
    self.flip_p = float(flip_p)
    self.jitter = tuple(jitter) if jitter else None
    self.grayscale_p = float(grayscale_p)
    self.min_frames = int(min_frames) if min_frames is not None else self.clip_len

  def build(self, reader, record, rng: np.random.Generator) -> dict[str, np.ndarray]:
    idx = samplers.consecutive_indices(reader.num_frames, self.clip_len, self.stride, rng)
    clip = reader.read(idx)
    video = transforms.train_clip_augment(
        clip, rng, short_side_sizes=self.short_side_sizes, short_side_range=self.short_side_range,
        crop_size=self.crop_size, flip_p=self.flip_p, jitter=self.jitter, grayscale_p=self.grayscale_p,
        scales_wh=self.scales_wh, ctp_color=self.ctp_color)
    return {"video": video, "label": np.int32(record["label"])}


class MultiViewTestBuilder:
  """Test examples: `num_clips` uniform clips x (3 or 1) spatial crops per video.

  `clip_placement`: "ctp" (CtP `UniformFrameSampler`, `samplers.uniform_test_indices`) or "goca" (from frame 0 at a
  ceil step, GOCA's `get_clips_uniformly`, `samplers.goca_test_indices`).

  Output: {"video": float32 [num_clips * n_crops, clip_len, crop, crop, 3] (clip-major: clip 0's crops first),
  ("flow": same shape, when `with_flow`), "label": int32, "index": int32}.
  """

  def __init__(self, clip_len: int = 16, stride: int = 2, num_clips: int = 10, short_side: int = 128,
               crop_size: int = 112, three_crop: bool = True, with_flow: bool = False,
               resize_wh: Sequence[int] | None = None, clip_placement: str = "ctp"):
    self.resize_wh = tuple(int(v) for v in resize_wh) if resize_wh else None  # (w, h) instead of a short side
    if clip_placement not in ("ctp", "goca"):
      raise ValueError(f"MultiViewTestBuilder: clip_placement must be 'ctp' or 'goca', got {clip_placement!r}")
    self.clip_placement = clip_placement
    self.clip_len = int(clip_len)
    self.stride = int(stride)
    self.num_clips = int(num_clips)
    self.short_side = int(short_side)
    self.crop_size = int(crop_size)
    self.three_crop = bool(three_crop)
    self.with_flow = bool(with_flow)
    self.min_frames = 1

  @property
  def num_views(self) -> int:
    return self.num_clips * (3 if self.three_crop else 1)

  def _views(self, frames: np.ndarray) -> np.ndarray:
    clips = frames.reshape((self.num_clips, self.clip_len) + frames.shape[1:])
    views = [transforms.test_clip_views(c, short_side=self.short_side, crop_size=self.crop_size,
                                        three_crop=self.three_crop, resize_wh=self.resize_wh) for c in clips]
    return np.concatenate(views, axis=0)

  def build(self, reader, record, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if self.clip_placement == "goca":
      idx = samplers.goca_test_indices(reader.num_frames, self.clip_len, self.stride, self.num_clips, rng)
    else:
      idx = samplers.uniform_test_indices(reader.num_frames, self.clip_len, self.stride, self.num_clips)
    out = {"video": self._views(reader.read(idx.reshape(-1)))}
    if self.with_flow:
      out["flow"] = self._views(reader.read_flow(idx.reshape(-1)))
    out["label"] = np.int32(record["label"])
    out["index"] = np.int32(record["index"])
    return out
