"""Dataset verification: open every video, count its frames, decode its first and last frame; write a clean list.

``verify_dataset`` scans the videos of an annotation file (any format of ``annotations``), reports the bad ones with a
reason (missing, unreadable / corrupt, too short, truncated: last frame not decodable), and writes an annotation file
in the same format holding only the good videos.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import time
from typing import Any, Sequence

from input_pipeline import annotations as annotations_lib
from input_pipeline import progress as progress_lib
from input_pipeline import video as video_lib


@dataclasses.dataclass(frozen=True)
class VideoCheck:
  """Result of checking one record.

  Attributes:
    name: the record's annotation name.
    path: the checked video path.
    ok: True when the video is usable.
    num_frames: frames counted (0 if unreadable).
    reason: why the video is bad ("missing", "unreadable", "too_short", "truncated", "flow_...") or None.
    detail: the error message.
  """

  name: str
  path: str
  ok: bool
  num_frames: int
  reason: str | None = None
  detail: str | None = None


def _check_path(path: str, min_frames: int, exact: bool) -> tuple[int, str | None, str | None]:
  if not os.path.exists(path):
    return 0, "missing", f"{path}: file not found"
  try:
    if exact:
      n, error = video_lib.scan_video(path)
      if error is not None:
        return n, "corrupt", error
      if n <= 0:
        return 0, "unreadable", f"{path}: no decodable frame"
    else:
      n = video_lib.video_num_frames(path)
  except video_lib.VideoDecodeError as e:
    return 0, "unreadable", str(e)
  if n < min_frames:
    return n, "too_short", f"{path}: {n} frames < min_frames={min_frames}"
  try:
    video_lib.decode_frames(path, [0])
  except video_lib.VideoDecodeError as e:
    return n, "unreadable", str(e)
  try:
    video_lib.decode_frames(path, [n - 1])
  except video_lib.VideoDecodeError as e:
    return n, "truncated", str(e)
  return n, None, None


def check_record(record: annotations_lib.VideoRecord, min_frames: int = 1, exact: bool = False) -> VideoCheck:
  """Checks one record's video (and its flow video, if any).

  Args:
    record: the record.
    min_frames: fewer frames make the video "too_short".
    exact: decode every frame (``video.scan_video``) instead of counting packets and decoding the first and last
      frame; slower, also finds corruption in the middle of a file.
  """
  n, reason, detail = _check_path(record.path, min_frames, exact)
  if reason is None and record.flow_path:
    _, flow_reason, flow_detail = _check_path(record.flow_path, min_frames, exact)
    if flow_reason is not None:
      reason, detail = f"flow_{flow_reason}", flow_detail
  return VideoCheck(name=record.name, path=record.path, ok=reason is None, num_frames=n, reason=reason,
                    detail=detail)


def verify_records(records: Sequence[annotations_lib.VideoRecord], min_frames: int = 1, workers: int = 1,
                   exact: bool = False, progress: bool = False) -> list[VideoCheck]:
  """Checks every record (``workers`` threads; PyAV and OpenCV release the GIL while decoding).

  Returns:
    one VideoCheck per record, in record order.
  """
  results: list[VideoCheck | None] = [None] * len(records)
  bar = progress_lib.Progress(len(records), "verified", unit="video") if progress and records else None

  def report(done):
    if bar is not None:
      bar.update(done)

  if workers <= 1:
    for i, r in enumerate(records):
      results[i] = check_record(r, min_frames, exact)
      report(i + 1)
  else:
    with concurrent.futures.ThreadPoolExecutor(max_workers=int(workers)) as pool:
      futures = {pool.submit(check_record, r, min_frames, exact): i for i, r in enumerate(records)}
      for done, fut in enumerate(concurrent.futures.as_completed(futures), start=1):
        results[futures[fut]] = fut.result()
        report(done)
  if bar is not None:
    bar.close()
  return results  # type: ignore[return-value]


def verify_dataset(annotations_path, data_root=None, out_path=None, fmt: str = "auto",
                   path_template: str | None = None, flow_template: str | None = None, class_index=None,
                   min_frames: int = 1, workers: int = 1, exact: bool = False, split: int = 1,
                   subset: str = "train", progress: bool = False) -> dict[str, Any]:
  """Verifies the videos of an annotation file and optionally writes the clean annotation file.

  Args:
    annotations_path: annotation file (or HMDB-51 splits directory).
    data_root, fmt, path_template, flow_template, class_index, split, subset: as ``annotations.load_annotations``.
    out_path: where to write the annotation file without the bad videos (same format), or None.
    min_frames: minimum frame count of a good video.
    workers: checking threads.
    exact: decode every frame of every video.
    progress: print a progress line to stderr.

  Returns:
    summary dict: ``total``, ``ok``, ``bad``, ``reasons`` ({reason: count}), ``bad_videos`` ([{name, path, reason,
    detail, num_frames}]), ``frames`` (min / mean / max of good videos), ``out_path``, ``seconds``.
  """
  start = time.time()
  source = annotations_lib.load_annotation_source(annotations_path, data_root, fmt, path_template, flow_template,
                                                  class_index, split, subset)
  checks = verify_records(source.records, min_frames=min_frames, workers=workers, exact=exact, progress=progress)
  keep = [c.ok for c in checks]
  if out_path is not None:
    annotations_lib.write_annotation_subset(source, keep, out_path)
  good_frames = [c.num_frames for c in checks if c.ok]
  bad = [c for c in checks if not c.ok]
  return {
      "annotations": os.fspath(annotations_path),
      "format": source.fmt,
      "total": len(checks),
      "ok": len(good_frames),
      "bad": len(bad),
      "reasons": dict(collections.Counter(c.reason for c in bad)),
      "bad_videos": [{"name": c.name, "path": c.path, "reason": c.reason, "detail": c.detail,
                      "num_frames": c.num_frames} for c in bad],
      "frames": ({"min": min(good_frames), "mean": sum(good_frames) / len(good_frames), "max": max(good_frames)}
                 if good_frames else None),
      "out_path": os.fspath(out_path) if out_path is not None else None,
      "seconds": round(time.time() - start, 3),
  }


def format_summary(summary: dict[str, Any], max_listed: int = 50) -> str:
  """A human-readable report of ``verify_dataset``'s summary."""
  lines = [f"{summary['annotations']} ({summary['format']}): {summary['total']} videos, {summary['ok']} ok, "
           f"{summary['bad']} bad ({summary['seconds']:.1f}s)"]
  if summary["frames"]:
    f = summary["frames"]
    lines.append(f"  frames of good videos: min {f['min']}, mean {f['mean']:.1f}, max {f['max']}")
  for reason, count in sorted(summary["reasons"].items()):
    lines.append(f"  {reason}: {count}")
  for b in summary["bad_videos"][:max_listed]:
    lines.append(f"  BAD [{b['reason']}] {b['name']}: {b['detail']}")
  if len(summary["bad_videos"]) > max_listed:
    lines.append(f"  ... {len(summary['bad_videos']) - max_listed} more")
  if summary["out_path"]:
    lines.append(f"  clean annotations ({summary['ok']} videos) -> {summary['out_path']}")
  return "\n".join(lines)
