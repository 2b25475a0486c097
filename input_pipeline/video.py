"""Frame-exact video decoding (PyAV containers and CtP frame zips) and small writers.

Two storage formats are supported, for both a path and the raw bytes of a file:

* Video containers (mp4, avi, webm, mkv, ...), decoded with PyAV. Frame ``i`` is the ``i``-th frame in presentation
  order (sorted presentation timestamps) counted from the start of the stream. A per-file index of the frames' pts is
  built once by demuxing (no decoding) and cached per process in an LRU keyed by ``(path, mtime, size)`` (bytes are
  keyed by a digest). A clip is decoded by seeking to the nearest keyframe at or before its smallest index and decoding
  forward until its largest index, so B-frames and variable frame rates are handled exactly. Streams without usable
  timestamps are decoded from the start, counting frames.
* CtP-style zips (``ZIP_STORED``, ``img_00001.jpg, img_00002.jpg, ...``): frame ``i`` is ``img_{i+1:05d}.jpg``;
  only the sampled JPEGs are read and decoded (OpenCV, BGR converted to RGB).

Every failure (unreadable, truncated, corrupt or empty file, index out of range) raises ``VideoDecodeError`` naming
the file. Nothing is returned silently wrong.
"""

from __future__ import annotations

import collections
import dataclasses
import fractions
import hashlib
import io
import os
import re
import threading
import zipfile
from typing import Sequence, Union

import av
import cv2
import numpy as np

PathOrBytes = Union[str, os.PathLike, bytes, bytearray, memoryview]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv")
ZIP_EXTENSIONS = (".zip",)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_FRAME_NAME = re.compile(r"(?:^|/)img_(\d+)\.jpg$")
_INDEX_CACHE_SIZE = 4096


class VideoDecodeError(Exception):
  """A video could not be read or decoded, or a requested frame does not exist. The message names the file."""


# ----------------------------------------------------------------------------------------------------------------
# Sources


@dataclasses.dataclass(frozen=True)
class _Source:
  """A resolved input: ``name`` for messages, ``kind`` in {"zip", "container"}, ``path`` or ``data``."""

  name: str
  kind: str
  path: str | None
  data: bytes | None
  key: tuple

  def open_binary(self):
    """A binary file object (a path string for files, so FFmpeg/zipfile use their own file I/O)."""
    if self.data is not None:
      return io.BytesIO(self.data)
    return self.path


def _resolve(path_or_bytes: PathOrBytes, name: str | None = None) -> _Source:
  """Classifies the input (zip vs container) and builds its cache key; bytes are named ``name`` in messages (default
  ``<bytes N B digest>``), a path names itself."""
  if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
    data = bytes(path_or_bytes)
    if not data:
      raise VideoDecodeError(f"{name or '<bytes>'}: empty input (0 bytes)")
    kind = "zip" if data[:4] in _ZIP_MAGIC else "container"
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    return _Source(name=name or f"<bytes {len(data)} B {digest[:8]}>", kind=kind, path=None, data=data,
                   key=("bytes", len(data), digest))
  if not isinstance(path_or_bytes, (str, os.PathLike)):
    raise TypeError(f"expected a path or bytes, got {type(path_or_bytes).__name__}")
  path = os.fspath(path_or_bytes)
  try:
    st = os.stat(path)
  except OSError as e:
    raise VideoDecodeError(f"{path}: cannot open ({e.strerror or e})") from e
  if not os.path.isfile(path):
    raise VideoDecodeError(f"{path}: not a regular file")
  if st.st_size == 0:
    raise VideoDecodeError(f"{path}: empty file (0 bytes)")
  if path.lower().endswith(ZIP_EXTENSIONS):
    kind = "zip"
  elif path.lower().endswith(VIDEO_EXTENSIONS):
    kind = "container"
  else:
    try:
      with open(path, "rb") as f:
        magic = f.read(4)
    except OSError as e:
      raise VideoDecodeError(f"{path}: cannot read ({e.strerror or e})") from e
    kind = "zip" if magic in _ZIP_MAGIC else "container"
  return _Source(name=path, kind=kind, path=path, data=None, key=("file", path, st.st_mtime_ns, st.st_size))


# ----------------------------------------------------------------------------------------------------------------
# Per-process LRU cache of file indices


class _LRU:
  """A small thread-safe LRU cache (grain may call from several threads of one worker process)."""

  def __init__(self, maxsize: int):
    self.maxsize = maxsize
    self._data: collections.OrderedDict = collections.OrderedDict()
    self._lock = threading.Lock()

  def get(self, key):
    with self._lock:
      if key in self._data:
        self._data.move_to_end(key)
        return self._data[key]
    return None

  def put(self, key, value):
    with self._lock:
      self._data[key] = value
      self._data.move_to_end(key)
      while len(self._data) > self.maxsize:
        self._data.popitem(last=False)

  def clear(self):
    with self._lock:
      self._data.clear()

  def __len__(self):
    return len(self._data)


_INDEX_CACHE = _LRU(_INDEX_CACHE_SIZE)


def clear_index_cache() -> None:
  """Forgets every cached frame index (e.g. after rewriting files in place within one mtime tick)."""
  _INDEX_CACHE.clear()


@dataclasses.dataclass(frozen=True)
class ContainerIndex:
  """Frame index of a container's first video stream.

  Attributes:
    stream_index: index of the video stream within the container.
    pts: int64 [N] presentation timestamps (stream time base) in presentation order; frame i has pts[i].
      Empty when ``seekable`` is False.
    keyframe_pts: int64 [K] sorted pts of keyframes (seek targets).
    num_frames: N, the number of frames.
    seekable: False when the stream has no usable timestamps; clips are then decoded from the start, counting
      frames in output order.
  """

  stream_index: int
  pts: np.ndarray
  keyframe_pts: np.ndarray
  num_frames: int
  seekable: bool


@dataclasses.dataclass(frozen=True)
class ZipIndex:
  """Frame index of a CtP zip: ``members[i]`` is the entry name of frame i (``img_{i+1:05d}.jpg``)."""

  members: tuple[str, ...]

  @property
  def num_frames(self) -> int:
    return len(self.members)


# PyAV < 19 decodes container metadata strictly unless told to ignore bad bytes; PyAV 19 removed the keyword (and no
# longer fails on undecodable metadata).
_OPEN_KWARGS = {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}


def _open_container(src: _Source):
  try:
    container = av.open(src.open_binary(), mode="r", **_OPEN_KWARGS)
  except (av.FFmpegError, OSError, EOFError, ValueError) as e:
    raise VideoDecodeError(f"{src.name}: cannot open as a video container ({e})") from e
  if not container.streams.video:
    container.close()
    raise VideoDecodeError(f"{src.name}: no video stream")
  return container


def _demux_timestamps(src: _Source) -> tuple[int, list[int], list[int], bool]:
  """Demuxes (without decoding) the first video stream.

  Returns:
    (stream index, pts of the frame packets in demux order, pts of keyframe packets, all packets had a pts).
  """
  container = _open_container(src)
  try:
    stream = container.streams.video[0]
    stream_index = int(stream.index)  # read before close(): the stream object dies with the container
    pts, key_pts, usable = [], [], True
    try:
      for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard or packet.is_corrupt:
          continue  # flush packets, edit-list discards and partial (truncated) packets are not frames
        if packet.pts is None:
          usable = False
          continue
        pts.append(int(packet.pts))
        if packet.is_keyframe:
          key_pts.append(int(packet.pts))
    except (av.FFmpegError, OSError, EOFError, ValueError) as e:
      raise VideoDecodeError(f"{src.name}: cannot demux the video stream ({e})") from e
  finally:
    container.close()
  return stream_index, pts, key_pts, usable


def _build_container_index(src: _Source) -> ContainerIndex:
  """The frame index from the packets' pts; streams without usable timestamps are indexed by decoding."""
  stream_index, pts, key_pts, usable = _demux_timestamps(src)
  if usable and pts and key_pts:
    arr = np.sort(np.asarray(pts, np.int64))
    if np.all(np.diff(arr) > 0):
      return ContainerIndex(stream_index=stream_index, pts=arr, keyframe_pts=np.sort(np.asarray(key_pts, np.int64)),
                            num_frames=len(arr), seekable=True)
  # No usable timestamps (missing / duplicated pts, no keyframe flags): index by decoding everything.
  index, error = _decode_all_index(src, key_pts)
  if index.num_frames == 0:
    raise VideoDecodeError(f"{src.name}: no frame could be decoded ({error or 'empty stream'})")
  return index


def _decode_all_index(src: _Source, demux_keys: Sequence[int] | None = None) -> tuple[ContainerIndex, str | None]:
  """Decodes the whole first video stream from the start; indexes the frames decoded before the first error.

  Args:
    src: the container.
    demux_keys: pts of the demuxer's keyframes (sync samples), the safe seek points; looked up when None.

  Returns:
    (index, error): the index of the decodable prefix of the stream and the decode error message (None if the whole
    stream decoded).
  """
  if demux_keys is None:
    try:
      demux_keys = _demux_timestamps(src)[2]
    except VideoDecodeError:
      demux_keys = []
  keys = set(demux_keys)
  container = _open_container(src)
  pts, key_pts, n, error = [], [], 0, None
  try:
    stream = container.streams.video[0]
    stream_index = int(stream.index)
    stream.thread_type = "AUTO"
    try:
      for frame in container.decode(stream):
        n += 1
        pts.append(frame.pts)
        if frame.key_frame and frame.pts is not None and (not keys or int(frame.pts) in keys):
          key_pts.append(int(frame.pts))
    except (av.FFmpegError, OSError, EOFError, ValueError) as e:
      error = f"decoding failed after {n} frames ({e})"
  finally:
    container.close()
  arr = np.asarray([p for p in pts if p is not None], np.int64)
  seekable = len(arr) == n and n > 0 and bool(np.all(np.diff(np.sort(arr)) > 0)) and bool(key_pts)
  if seekable:
    index = ContainerIndex(stream_index=stream_index, pts=np.sort(arr),
                           keyframe_pts=np.sort(np.asarray(key_pts, np.int64)), num_frames=n, seekable=True)
  else:
    index = ContainerIndex(stream_index=stream_index, pts=np.zeros([0], np.int64),
                           keyframe_pts=np.zeros([0], np.int64), num_frames=n, seekable=False)
  return index, error


def scan_video(path_or_bytes: PathOrBytes) -> tuple[int, str | None]:
  """Decodes a whole video / zip once and returns ``(num_decodable_frames, error_message_or_None)``.

  For containers this decodes every frame (exact but slow); the exact index replaces the cached demux index, so later
  ``decode_frames`` / ``video_num_frames`` calls see only the decodable frames. For zips every JPEG is decoded.
  Raises ``VideoDecodeError`` only when the file cannot be opened at all.
  """
  return _scan(_resolve(path_or_bytes))


def _scan(src: _Source) -> tuple[int, str | None]:
  if src.kind == "zip":
    index = _index_of(src)
    n = 0
    try:
      for n, _ in enumerate(_iter_zip(src, index, np.arange(index.num_frames)), start=1):
        pass
    except VideoDecodeError as e:
      return n, str(e)
    return index.num_frames, None
  index, error = _decode_all_index(src)
  _INDEX_CACHE.put(src.key, index)
  return index.num_frames, error


def _build_zip_index(src: _Source) -> ZipIndex:
  try:
    with zipfile.ZipFile(src.open_binary()) as zf:
      names = zf.namelist()
  except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
    raise VideoDecodeError(f"{src.name}: not a readable zip ({e})") from e
  numbered = {}
  for name in names:
    m = _FRAME_NAME.search(name)
    if m:
      numbered[int(m.group(1))] = name
  if not numbered:
    raise VideoDecodeError(f"{src.name}: zip holds no img_XXXXX.jpg frames")
  n = len(numbered)
  missing = [k for k in range(1, n + 1) if k not in numbered]
  if missing:
    raise VideoDecodeError(f"{src.name}: frame numbering is not contiguous 1..{n} (missing img_{missing[0]:05d}.jpg)")
  return ZipIndex(members=tuple(numbered[k] for k in range(1, n + 1)))


def _index_of(src: _Source) -> ContainerIndex | ZipIndex:
  cached = _INDEX_CACHE.get(src.key)
  if cached is not None:
    return cached
  index = _build_zip_index(src) if src.kind == "zip" else _build_container_index(src)
  _INDEX_CACHE.put(src.key, index)
  return index


def frame_index(path_or_bytes: PathOrBytes) -> ContainerIndex | ZipIndex:
  """The cached frame index of a file (``ContainerIndex`` for videos, ``ZipIndex`` for CtP zips)."""
  return _index_of(_resolve(path_or_bytes))


def video_num_frames(path_or_bytes: PathOrBytes, exact: bool = False) -> int:
  """Number of frames of a video file / CtP zip (path or bytes).

  For containers: the number of complete frame packets of the first video stream, from the cached pts index (built by
  demuxing, no decoding; streams without timestamps are counted by decoding). This equals the number of decodable
  frames for intact files. A truncated file may index a few trailing frames that cannot be decoded: ``decode_frames``
  then raises rather than returning them, and ``exact=True`` (or ``scan_video``) decodes the whole stream once and
  caches the index of the decodable frames instead. For zips: the number of ``img_*.jpg`` entries.

  Raises:
    VideoDecodeError: unreadable, corrupt or empty input, or a video with no frames.
  """
  src = _resolve(path_or_bytes)
  if exact and src.kind == "container":
    _scan(src)  # caches the index of the decodable frames
  return _num_frames(src)


def _num_frames(src: _Source) -> int:
  """The frame count of the cached index, checked to be positive."""
  n = _index_of(src).num_frames
  if n <= 0:
    raise VideoDecodeError(f"{src.name}: the video has no frames")
  return n


# ----------------------------------------------------------------------------------------------------------------
# Decoding


def _check_indices(src: _Source, indices: Sequence[int] | np.ndarray, num_frames: int) -> np.ndarray:
  idx = np.asarray(indices)
  if idx.ndim != 1:
    raise ValueError(f"{src.name}: indices must be a 1-D sequence, got shape {idx.shape}")
  if idx.size and not np.issubdtype(idx.dtype, np.integer):
    if not np.all(np.equal(np.mod(idx, 1), 0)):
      raise ValueError(f"{src.name}: frame indices must be integers, got {idx[:8]}")
  idx = idx.astype(np.int64)
  if idx.size == 0:
    raise ValueError(f"{src.name}: no frame indices requested")
  bad = idx[(idx < 0) | (idx >= num_frames)]
  if bad.size:
    raise VideoDecodeError(
        f"{src.name}: frame index {int(bad[0])} out of range; the video has {num_frames} frames (0..{num_frames - 1})")
  return idx


def _to_rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
  if size is None:
    return frame.to_ndarray(format="rgb24")
  return frame.to_ndarray(format="rgb24", width=size[1], height=size[0])


def _decode_container(src: _Source, index: ContainerIndex, idx: np.ndarray) -> dict[int, np.ndarray]:
  """Decodes the unique frames in ``idx`` and returns {frame index: uint8 [H, W, 3]}."""
  wanted = np.unique(idx)
  if not index.seekable:
    return _decode_from_start_counting(src, wanted)
  pts_to_index = {int(p): i for i, p in enumerate(index.pts)}
  first_pts = int(index.pts[wanted[0]])
  last_pts = int(index.pts[wanted[-1]])
  # Candidate seek points: the keyframe at or before the first wanted frame, then earlier ones, then the start.
  k = int(np.searchsorted(index.keyframe_pts, first_pts, side="right")) - 1
  attempts = []
  if k >= 1:
    attempts.append(int(index.keyframe_pts[k]))
  if k >= 2:
    attempts.append(int(index.keyframe_pts[k - 1]))
  attempts.append(None)  # decode from the start of the stream
  last_error = None
  got: dict[int, np.ndarray] = {}
  wanted_set = set(int(w) for w in wanted)
  for seek_pts in attempts:
    try:
      got = _decode_range(src, index, pts_to_index, wanted_set, seek_pts, last_pts)
    except (av.FFmpegError, OSError, EOFError, ValueError) as e:
      last_error = e
      continue
    if len(got) == len(wanted_set):
      return got
  if not got and last_error is not None:
    raise VideoDecodeError(f"{src.name}: decoding failed ({last_error})") from last_error
  missing = sorted(wanted_set - set(got))
  raise VideoDecodeError(
      f"{src.name}: frames {missing[:8]} could not be decoded (truncated or corrupt stream; "
      f"{index.num_frames} frames indexed)")


def _decode_range(src, index, pts_to_index, wanted: set, seek_pts: int | None, last_pts: int):
  container = _open_container(src)
  try:
    stream = container.streams[index.stream_index]
    stream.thread_type = "AUTO"
    if seek_pts is not None:
      container.seek(seek_pts, backward=True, any_frame=False, stream=stream)
    out: dict[int, np.ndarray] = {}
    size = None
    for frame in container.decode(stream):
      if frame.pts is None:
        raise ValueError("decoded a frame without pts")
      i = pts_to_index.get(int(frame.pts))
      if i is not None and i in wanted and i not in out and not frame.is_corrupt:
        if size is None:
          size = (frame.height, frame.width)
        out[i] = _to_rgb(frame, size)
        if len(out) == len(wanted):
          break
      if frame.pts > last_pts:
        break
    return out
  finally:
    container.close()


def _decode_from_start_counting(src: _Source, wanted: np.ndarray) -> dict[int, np.ndarray]:
  wanted_set = set(int(w) for w in wanted)
  last = int(wanted[-1])
  container = _open_container(src)
  out: dict[int, np.ndarray] = {}
  try:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    size = None
    try:
      for i, frame in enumerate(container.decode(stream)):
        if i in wanted_set:
          if size is None:
            size = (frame.height, frame.width)
          out[i] = _to_rgb(frame, size)
        if i >= last:
          break
    except (av.FFmpegError, OSError, EOFError, ValueError) as e:
      raise VideoDecodeError(f"{src.name}: decoding failed ({e})") from e
  finally:
    container.close()
  missing = sorted(wanted_set - set(out))
  if missing:
    raise VideoDecodeError(f"{src.name}: frames {missing[:8]} could not be decoded (truncated or corrupt stream)")
  return out


def _iter_zip(src: _Source, index: ZipIndex, idx: np.ndarray):
  """Yields (frame index, uint8 RGB [H, W, 3]) for the unique ``idx`` in ascending order, from one open of the zip;
  frames are resized to the first one's size. Raises ``VideoDecodeError`` at the first unreadable frame."""
  size = None
  try:
    with zipfile.ZipFile(src.open_binary()) as zf:
      for i in np.unique(idx):
        member = index.members[int(i)]
        try:
          data = zf.read(member)
        except (KeyError, zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
          raise VideoDecodeError(f"{src.name}: cannot read {member} ({e})") from e
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.ndim != 3:
          raise VideoDecodeError(f"{src.name}: {member} is not a decodable JPEG")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if size is None:
          size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
          rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        yield int(i), rgb
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise VideoDecodeError(f"{src.name}: not a readable zip ({e})") from e


def decode_frames(path_or_bytes: PathOrBytes, indices: Sequence[int] | np.ndarray) -> np.ndarray:
  """Decodes the frames ``indices`` of a video file / CtP zip.

  Args:
    path_or_bytes: a path (mp4, avi, webm, mkv, ... or a CtP ``.zip``) or the file's bytes (zip detected by the
      ``PK`` magic).
    indices: 0-based frame indices in any order, repeats allowed. Frame i is the i-th frame in presentation order
      (containers) or ``img_{i+1:05d}.jpg`` (zips).

  Returns:
    uint8 [T, H, W, 3] RGB frames, T = len(indices), in the order asked.

  Raises:
    VideoDecodeError: unreadable / corrupt / truncated / empty input or an index outside ``[0, num_frames)``.
    ValueError: ``indices`` empty or not integers.
  """
  return VideoFile(path_or_bytes).decode(indices)


class VideoFile:
  """A video file / CtP zip (path or bytes) resolved once; ``num_frames`` and ``decode`` share its cached index.

  ``video_num_frames(x)`` and ``decode_frames(x, indices)`` each resolve ``x`` (a ``stat`` for a path, a digest of the
  whole input for bytes); a caller that counts and then decodes the same input (a clip reader) holds one
  ``VideoFile`` instead. Raises ``VideoDecodeError`` as those functions do; ``name`` names bytes input in the messages
  (default ``<bytes N B digest>``; a path names itself).
  """

  def __init__(self, path_or_bytes: PathOrBytes, name: str | None = None):
    self._src = _resolve(path_or_bytes, name)

  @property
  def num_frames(self) -> int:
    """As ``video_num_frames(x)`` (the cached packet index, no decoding)."""
    return _num_frames(self._src)

  def decode(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """As ``decode_frames(x, indices)``: uint8 [T, H, W, 3] RGB frames in the order asked, repeats allowed."""
    src = self._src
    index = _index_of(src)
    idx = _check_indices(src, indices, index.num_frames)
    if isinstance(index, ZipIndex):
      frames = dict(_iter_zip(src, index, idx))
    else:
      frames = _decode_container(src, index, idx)
    shapes = {f.shape for f in frames.values()}
    if len(shapes) != 1:
      raise VideoDecodeError(f"{src.name}: decoded frames have different shapes {sorted(shapes)}")
    return np.stack([frames[int(i)] for i in idx], axis=0)


# ----------------------------------------------------------------------------------------------------------------
# Writers (tests, synthetic data)


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"{what}: frames must be [T, H, W, 3], got shape {frames.shape}")
  if frames.dtype != np.uint8:
    raise ValueError(f"{what}: frames must be uint8, got {frames.dtype}")
  if frames.shape[0] == 0:
    raise ValueError(f"{what}: no frames to write")
  return np.ascontiguousarray(frames)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 25, codec: str = "libx264",
                gop: int | None = None, bframes: int | None = None, crf: int | None = 18,
                preset: str = "veryfast", pts: Sequence[int] | None = None,
                time_base: fractions.Fraction | None = None, threads: int = 1, faststart: bool = False) -> None:
  """Writes uint8 RGB frames as a video (H.264 mp4, yuv420p by default) with PyAV.

  Args:
    path: output file; the container is chosen by the extension (.mp4, .mkv, .avi, ...).
    frames: uint8 [T, H, W, 3] RGB; H and W must be even (yuv420p).
    fps: nominal frame rate (frames per second).
    codec: FFmpeg encoder name ("libx264", "mpeg4", "libvpx", ...).
    gop: keyframe interval in frames (None: encoder default). Scene-cut keyframes are disabled when set.
    bframes: max consecutive B-frames (None: encoder default; 0 disables B-frames).
    crf: x264 constant rate factor (0 = lossless luma/chroma planes; lower = higher quality). Ignored by other codecs.
    preset: x264 preset.
    pts: optional int presentation timestamps per frame, strictly increasing, in ``time_base`` units; gives a
      variable-frame-rate file.
    time_base: time base of ``pts`` (default 1/1000 s when pts is given).
    threads: encoder threads (1: single-threaded; even so the bytes of some files vary between runs, see
      input_pipeline/synthetic.py).
    faststart: mp4 only: put the index (moov atom) before the frames, as web videos do; such a file cut short still
      opens and indexes the frames it holds.
  """
  path = os.fspath(path)
  frames = _check_frames(frames, path)
  t, h, w, _ = frames.shape
  if h % 2 or w % 2:
    raise ValueError(f"{path}: yuv420p needs even frame sizes, got {h}x{w}")
  if pts is not None:
    pts = [int(p) for p in pts]
    if len(pts) != t or any(b <= a for a, b in zip(pts, pts[1:])):
      raise ValueError(f"{path}: pts must be {t} strictly increasing ints")
    time_base = time_base or fractions.Fraction(1, 1000)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  container = av.open(path, mode="w", container_options={"movflags": "faststart"} if faststart else None)
  try:
    rate = fractions.Fraction(fps).limit_denominator(1001)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuv420p"
    options = {}
    if codec in ("libx264", "libx265", "h264"):
      if crf is not None:
        options["crf"] = str(crf)
      options["preset"] = preset
      if threads:
        options["threads"] = str(threads)
    if gop is not None:
      options["g"] = str(gop)
      options["keyint_min"] = str(gop)
      options["sc_threshold"] = "0"
      stream.codec_context.gop_size = int(gop)
    if bframes is not None:
      options["bf"] = str(bframes)
      stream.codec_context.max_b_frames = int(bframes)
    stream.options = options
    if pts is not None:
      stream.codec_context.time_base = time_base
    for i in range(t):
      frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
      if pts is not None:
        frame.pts = pts[i]
        frame.time_base = time_base
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  finally:
    container.close()


def write_frame_zip(path: str | os.PathLike, frames: np.ndarray, quality: int = 95) -> None:
  """Writes uint8 RGB frames [T, H, W, 3] as a CtP frame zip (ZIP_STORED, ``img_00001.jpg ...``, JPEG)."""
  path = os.fspath(path)
  frames = _check_frames(frames, path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
    for i, rgb in enumerate(frames):
      ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
      if not ok:
        raise ValueError(f"{path}: JPEG encoding of frame {i} failed")
      info = zipfile.ZipInfo(f"img_{i + 1:05d}.jpg", date_time=(1980, 1, 1, 0, 0, 0))
      info.compress_type = zipfile.ZIP_STORED
      zf.writestr(info, buf.tobytes())


def is_video_path(path: str) -> bool:
  """True for a supported container or CtP zip extension."""
  return path.lower().endswith(VIDEO_EXTENSIONS + ZIP_EXTENSIONS)
