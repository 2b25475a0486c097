"""Prepared clips for throughput: every frame re-encoded as a small JPEG, decoded with libjpeg-turbo (simplejpeg).

Why: decoding a 16-frame training clip from an H.264 file means seeking to a keyframe and decoding forward through
every frame up to the clip's last one (often the whole video), about 80 ms per clip on one core of the project's
machine; 16 JPEGs of 170 x 128 decode in about 5 ms (docs/benchmarks.md). CtP and DMVR store frames the same way.

Pieces:
- `encode_frames(frames, short_side, quality)`: uint8 [T, H, W, 3] -> list of JPEG bytes at short side `short_side`
  (OpenCV INTER_AREA down-scaling; frames already at or below the size are kept as they are).
- `prepare_video(path, ...)`: a whole video (any container or CtP zip that `input_pipeline.video` reads) -> its
  JPEG frames (and flow's), decoded in chunks so a long video never sits in memory whole; cached per video in
  `cache_dir` as one `FVJ1` file so an interrupted preparation resumes where it stopped.
- `decode_image(data)`: JPEG (simplejpeg) or PNG / other (OpenCV) bytes -> uint8 RGB [H, W, 3].
- `JpegClipReader`: the `pipeline.ClipReader` interface over lists of encoded frames: `read(indices)` decodes only
  the frames asked (each distinct index once).

FVJ1 cache file: b"FVJ1" | uint32 LE header length | UTF-8 JSON header {"name", "num_frames", "sizes": [bytes per
frame], "flow_sizes": [...] | null, "short_side", "quality"} | the frames' bytes | the flow frames' bytes. No pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Any, Sequence

import cv2
import numpy as np

from input_pipeline import video as video_lib

MAGIC = b"FVJ1"
_JPEG_MAGIC = b"\xff\xd8"
DECODE_CHUNK = 128  # frames decoded per seek when preparing a video


def _simplejpeg():
  try:
    import simplejpeg
  except ImportError as e:  # the requirement is in requirements.txt; name it if a user's environment lacks it
    raise ImportError("input_pipeline.jpeg_frames needs simplejpeg (pip install simplejpeg)") from e
  return simplejpeg


def encode_frames(frames: np.ndarray, short_side: int | None = 128, quality: int = 90) -> list[bytes]:
  """uint8 [T, H, W, 3] RGB -> T JPEG byte strings, down-scaled to `short_side` (None = keep the size)."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"encode_frames: need uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
  sj = _simplejpeg()
  h, w = frames.shape[1:3]
  size = None
  if short_side and min(h, w) > short_side:
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
  out = []
  for f in frames:
    if size is not None:
      f = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
    out.append(sj.encode_jpeg(np.ascontiguousarray(f), quality=int(quality), colorspace="RGB"))
  return out


def decode_image(data: bytes, name: str = "<frame>", out: np.ndarray | None = None) -> np.ndarray:
  """Encoded image bytes -> uint8 RGB [H, W, 3]; JPEG via simplejpeg (libjpeg-turbo), anything else via OpenCV.

  With `out` (uint8 [H, W, 3]), a JPEG of that size is decoded straight into it and `out` is returned; any other image
  is returned as a new array (the caller checks its shape). Raises `video.VideoDecodeError` naming `name` when the
  bytes do not decode.
  """
  data = bytes(data) if not isinstance(data, bytes) else data
  try:
    if data[:2] == _JPEG_MAGIC:
      sj = _simplejpeg()
      if out is not None and tuple(sj.decode_jpeg_header(data)[:2]) + (3,) == out.shape:
        sj.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=True, buffer=out)
        return out
      return sj.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=True)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  except ValueError as e:
    raise video_lib.VideoDecodeError(f"{name}: not a decodable image ({e})") from e
  if bgr is None or bgr.ndim != 3:
    raise video_lib.VideoDecodeError(f"{name}: not a decodable image ({len(data)} bytes)")
  return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class JpegClipReader:
  """`pipeline.ClipReader` over encoded frames (JPEG, or PNG from other TFDS datasets).

  Args:
    frames: one encoded image per frame.
    flow_frames: the flow video's frames ((128, v, u) images), or None.
    name: names the video in errors.
  """

  def __init__(self, frames: Sequence[bytes], flow_frames: Sequence[bytes] | None = None, *, name: str = "<frames>"):
    self._streams = {"rgb": frames, "flow": flow_frames}
    self.name = name

  @property
  def has_flow(self) -> bool:
    return self._streams["flow"] is not None

  @property
  def num_rgb_frames(self) -> int:
    return len(self._streams["rgb"])

  @property
  def num_flow_frames(self) -> int:
    return len(self._streams["flow"] or ())

  @property
  def num_frames(self) -> int:
    n = self.num_rgb_frames
    return min(n, self.num_flow_frames) if self.has_flow else n

  def _read(self, what: str, indices) -> np.ndarray:
    frames = self._streams[what]
    if frames is None:
      from input_pipeline.pipeline import BadVideoError
      raise BadVideoError(f"{self.name}: the builder needs flow but the record has no flow frames")
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
      raise ValueError(f"{self.name}: no frame indices")
    if idx.min() < 0 or idx.max() >= len(frames):
      raise video_lib.VideoDecodeError(f"{self.name} ({what}): frame indices {idx.min()}..{idx.max()} outside "
                                       f"[0, {len(frames)})")
    uniq, inverse = np.unique(idx, return_inverse=True)
    first = decode_image(frames[int(uniq[0])], f"{self.name} ({what}) frame {int(uniq[0])}")
    out = np.empty((len(uniq),) + first.shape, np.uint8)  # JPEGs decode straight into it (no stacking copy)
    out[0] = first
    for j in range(1, len(uniq)):
      i, buf = int(uniq[j]), out[j]
      d = decode_image(frames[i], f"{self.name} ({what}) frame {i}", out=buf)
      if d is not buf:  # another format or another size: decoded apart
        if d.shape != first.shape:
          raise video_lib.VideoDecodeError(f"{self.name} ({what}): frame {i} is {d.shape}, frame "
                                           f"{int(uniq[0])} is {first.shape}")
        buf[...] = d
    # Distinct increasing indices (the usual clip): `uniq` is `idx`, no gather copy.
    return out if np.array_equal(uniq, idx) else out[inverse.reshape(-1)]

  def read(self, indices) -> np.ndarray:
    """uint8 [len(indices), H, W, 3] RGB frames (only these are decoded; repeats once)."""
    return self._read("rgb", indices)

  def read_flow(self, indices) -> np.ndarray:
    """uint8 [len(indices), H, W, 3] flow frames (128, v, u) at the same indices."""
    return self._read("flow", indices)


# ----------------------------------------------------------------------------------------------------------------
# Preparing videos (resumable through a per-video cache)


def _encode_video(path: str, short_side: int | None, quality: int) -> list[bytes]:
  vf = video_lib.VideoFile(path)
  n = vf.num_frames
  if n < 1:
    raise video_lib.VideoDecodeError(f"{path}: no frames")
  out: list[bytes] = []
  for start in range(0, n, DECODE_CHUNK):
    out.extend(encode_frames(vf.decode(np.arange(start, min(n, start + DECODE_CHUNK))), short_side, quality))
  return out


def pack(header: dict[str, Any], frames: Sequence[bytes], flow: Sequence[bytes] | None) -> bytes:
  header = dict(header, num_frames=len(frames), sizes=[len(f) for f in frames],
                flow_sizes=None if flow is None else [len(f) for f in flow])
  h = json.dumps(header, sort_keys=True).encode("utf-8")
  return b"".join([MAGIC, struct.pack("<I", len(h)), h, *frames, *(flow or ())])


def unpack(data: bytes, where: str = "FVJ1 data") -> tuple[dict[str, Any], list[bytes], list[bytes] | None]:
  """Inverse of `pack`: (header, frames, flow frames or None); ValueError naming `where` on malformed data."""
  if len(data) < 8 or data[:4] != MAGIC:
    raise ValueError(f"{where}: not an FVJ1 file (magic {data[:4]!r})")
  (hlen,) = struct.unpack("<I", data[4:8])
  try:
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"{where}: corrupt header ({e})") from e
  pos = 8 + hlen
  streams = []
  for key in ("sizes", "flow_sizes"):
    sizes = header.get(key)
    if sizes is None:
      streams.append(None)
      continue
    frames = []
    for s in sizes:
      frames.append(data[pos:pos + s])
      pos += s
    streams.append(frames)
  if pos != len(data):
    raise ValueError(f"{where}: {len(data)} bytes, the header accounts for {pos}")
  return header, streams[0], streams[1]


def cache_path(cache_dir: str, path: str, flow_path: str | None, short_side: int | None, quality: int) -> str:
  key = f"{os.path.abspath(path)}|{flow_path and os.path.abspath(flow_path)}|{short_side}|{quality}"
  return os.path.join(cache_dir, hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:20] + ".fvj")


def prepare_video(path: str, *, flow_path: str | None = None, short_side: int | None = 128, quality: int = 90,
                  cache_dir: str | None = None, name: str | None = None) -> tuple[list[bytes], list[bytes] | None]:
  """A video (and its flow video) as JPEG frames; reuses / writes the FVJ1 cache file in `cache_dir`.

  Raises `video.VideoDecodeError` / `OSError` (naming the file) for a video that cannot be read whole.
  """
  cached = cache_path(cache_dir, path, flow_path, short_side, quality) if cache_dir else None
  if cached and os.path.isfile(cached):
    with open(cached, "rb") as f:
      try:
        _, frames, flow = unpack(f.read(), cached)
        return frames, flow
      except ValueError:
        pass  # a damaged cache entry is rebuilt
  frames = _encode_video(path, short_side, quality)
  flow = _encode_video(flow_path, short_side, quality) if flow_path else None
  if cached:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{cached}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
      f.write(pack({"name": name or path, "short_side": short_side, "quality": quality}, frames, flow))
    os.replace(tmp, cached)  # atomic: a killed run never leaves a half-written entry
  return frames, flow
