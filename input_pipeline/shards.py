"""ArrayRecord shards of encoded videos: one record per video, readable by the same grain pipeline.

A record holds the video's **original encoded bytes** (mp4 / avi / CtP zip, unchanged: no re-encoding), the optional
flow video's bytes, and its metadata, so random access needs no file-system walk and no frame counting:

    b"FVR1" | uint32 little-endian header length | UTF-8 JSON header | video bytes | flow bytes

The JSON header: {"name": str, "label": int (0-based), "path": original path, "num_frames": int,
"flow_num_frames": int | null, "video_size": int bytes, "flow_size": int bytes}. No pickle.

Files: `<out>/<prefix>-XXXXX-of-YYYYY.array_record` (records assigned round-robin, so shard k holds videos
k, k + S, ...), plus `<out>/<prefix>.json` (the list of shard files, counts and the records that were skipped).

`ArrayRecordVideoSource(out_dir_or_paths)` is a grain random-access source (over `grain.sources.ArrayRecordDataSource`)
whose records carry "video_bytes" / "flow_bytes" / "num_frames", which `pipeline.ClipReader` uses directly.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import struct
import time
from typing import Any, Sequence

import grain

from input_pipeline import video as video_lib
from input_pipeline.pipeline import SourceRecord

_log = logging.getLogger(__name__)

MAGIC = b"FVR1"
SHARD_SUFFIX = ".array_record"


class ShardFormatError(ValueError):
  """A record is not in the FVR1 format; the message names the shard source and record."""


def encode_record(video_bytes: bytes, *, name: str, label: int, num_frames: int, path: str = "",
                  flow_bytes: bytes | None = None, flow_num_frames: int | None = None) -> bytes:
  """Serialises one video (+ optional flow) and its metadata into a record (see module doc)."""
  header = {
      "name": str(name), "label": int(label), "path": str(path), "num_frames": int(num_frames),
      "flow_num_frames": None if flow_num_frames is None else int(flow_num_frames),
      "video_size": len(video_bytes), "flow_size": 0 if flow_bytes is None else len(flow_bytes),
  }
  h = json.dumps(header, sort_keys=True).encode("utf-8")
  return b"".join([MAGIC, struct.pack("<I", len(h)), h, bytes(video_bytes), bytes(flow_bytes or b"")])


def decode_record(data: bytes, where: str = "record") -> dict[str, Any]:
  """Parses a record into {"name", "label", "path", "num_frames", "flow_num_frames", "video_bytes", "flow_bytes"}."""
  data = bytes(data)
  if len(data) < 8 or data[:4] != MAGIC:
    raise ShardFormatError(f"{where}: not an FVR1 video record (magic {data[:4]!r})")
  (hlen,) = struct.unpack("<I", data[4:8])
  try:
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ShardFormatError(f"{where}: corrupt record header ({e})") from e
  start = 8 + hlen
  vsize, fsize = int(header["video_size"]), int(header["flow_size"])
  if len(data) != start + vsize + fsize:
    raise ShardFormatError(f"{where}: record is {len(data)} bytes, header says {start + vsize + fsize}")
  out = dict(header)
  out["video_bytes"] = data[start:start + vsize]
  out["flow_bytes"] = data[start + vsize:start + vsize + fsize] if fsize else None
  return out


def shard_paths(out_dir: str, prefix: str = "videos") -> list[str]:
  """The shard files of a prepared directory, in order (from `<prefix>.json` when present, else by glob)."""
  index = os.path.join(out_dir, f"{prefix}.json")
  if os.path.isfile(index):
    with open(index, encoding="utf-8") as f:
      meta = json.load(f)
    return [os.path.join(out_dir, p) for p in meta["shards"]]
  paths = sorted(glob.glob(os.path.join(out_dir, f"{prefix}-*-of-*{SHARD_SUFFIX}")))
  if not paths:
    raise FileNotFoundError(f"{out_dir}: no {prefix}-*-of-*{SHARD_SUFFIX} shards")
  return paths


def write_shards(records: Sequence[Any], out_dir: str, *, num_shards: int = 1, prefix: str = "videos",
                 skip_bad: bool = True, log_every: int = 100) -> dict[str, Any]:
  """Writes `records` (`VideoRecord`s with `path`, `label`, `name`, optional `flow_path`) as ArrayRecord shards.

  Each video is read once and its frame count checked with `video.video_num_frames`; unreadable videos are skipped
  (listed in the index with the reason) when `skip_bad`, otherwise they raise.

  Returns:
    the index dict also written to `<out_dir>/<prefix>.json`: {"shards": [file names], "num_records": int,
    "records_per_shard": [...], "skipped": [{"path", "reason"}], "bytes": int, "seconds": float}.
  """
  from array_record.python.array_record_module import ArrayRecordWriter

  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  os.makedirs(out_dir, exist_ok=True)
  names = [f"{prefix}-{k:05d}-of-{num_shards:05d}{SHARD_SUFFIX}" for k in range(num_shards)]
  # group_size:1 -> every record is its own chunk: true random access without reading neighbours.
  writers = [ArrayRecordWriter(os.path.join(out_dir, n), "group_size:1") for n in names]
  counts = [0] * num_shards
  skipped = []
  total_bytes = 0
  written = 0
  t0 = time.time()
  try:
    for i, r in enumerate(records):
      try:
        with open(r.path, "rb") as f:
          vb = f.read()
        n = video_lib.video_num_frames(vb)
        fb, fn = None, None
        flow_path = getattr(r, "flow_path", None)
        if flow_path:
          with open(flow_path, "rb") as f:
            fb = f.read()
          fn = video_lib.video_num_frames(fb)
      except (OSError, video_lib.VideoDecodeError) as e:
        if not skip_bad:
          raise
        skipped.append({"path": str(r.path), "reason": f"{type(e).__name__}: {e}"})
        _log.warning("skipping %s: %s", r.path, e)
        continue
      rec = encode_record(vb, name=r.name, label=r.label, num_frames=n, path=str(r.path), flow_bytes=fb,
                          flow_num_frames=fn)
      k = written % num_shards
      writers[k].write(rec)
      counts[k] += 1
      written += 1
      total_bytes += len(rec)
      if log_every and (i + 1) % log_every == 0:
        _log.info("%d / %d videos written (%.1fs)", i + 1, len(records), time.time() - t0)
  finally:
    for w in writers:
      w.close()
  index = {"shards": names, "num_records": written, "records_per_shard": counts, "skipped": skipped,
           "bytes": total_bytes, "seconds": round(time.time() - t0, 3), "format": "FVR1"}
  with open(os.path.join(out_dir, f"{prefix}.json"), "w", encoding="utf-8") as f:
    json.dump(index, f, indent=2)
  return index


class ArrayRecordVideoSource(grain.sources.RandomAccessDataSource):
  """Grain random-access source over FVR1 ArrayRecord shards.

  Args:
    paths: a prepared directory (uses `<prefix>.json`), or a list of shard files.
    prefix: shard file prefix in a directory.

  `source[i]` -> `SourceRecord(index, path, label, name, flow_path=None, video_bytes, flow_bytes, num_frames,
  flow_num_frames)`; "path" is the original video path (used in bad-input warnings). Records are in shard order
  (all of shard 0, then shard 1, ...). Picklable; stable `repr`.
  """

  def __init__(self, paths: str | Sequence[str], prefix: str = "videos"):
    if isinstance(paths, (str, os.PathLike)):
      p = os.fspath(paths)
      files = shard_paths(p, prefix) if os.path.isdir(p) else [p]
    else:
      files = [os.fspath(p) for p in paths]
    for p in files:
      if not os.path.isfile(p):
        raise FileNotFoundError(f"ArrayRecord shard {p} does not exist")
    self._paths = tuple(files)
    self._ds = grain.sources.ArrayRecordDataSource(list(self._paths))

  def __len__(self) -> int:
    return len(self._ds)

  def __getitem__(self, index: int) -> SourceRecord:
    index = int(index) % len(self._ds)
    rec = decode_record(self._ds[index], where=f"{self!r}[{index}]")
    return SourceRecord(index=index, path=rec["path"] or rec["name"], label=int(rec["label"]), name=rec["name"],
                        flow_path=None, video_bytes=rec["video_bytes"], flow_bytes=rec["flow_bytes"],
                        num_frames=int(rec["num_frames"]), flow_num_frames=rec["flow_num_frames"])

  def __getstate__(self):
    return {"paths": self._paths}

  def __setstate__(self, state):
    self._paths = tuple(state["paths"])
    self._ds = grain.sources.ArrayRecordDataSource(list(self._paths))

  def __repr__(self) -> str:
    return f"ArrayRecordVideoSource(paths={list(self._paths)!r})"
