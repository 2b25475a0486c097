"""TV-L1 optical flow for GOCA: computation, GOCA's uint8 encoding, flow videos per dataset, resume-safe folders.

GOCA (reference/goca.md §3) computes OpenCV Dual TV-L1 flow (default parameters) between consecutive grayscale frames
at short side 256, clips it to +-20 px and stores it as 3-channel 8-bit images, which read back as RGB are
`(R, G, B) = (128, v, u)` with `u8 = round((clip(f, -20, 20) + 20) * 255 / 40)`; the flow images are then stored as
`videos_flow/*.mp4` next to `videos/*.mp4`. This module writes those mp4 files directly (H.264 yuv420p at a low CRF,
default 8). yuv420 is lossy and subsamples chroma, and u lives mostly in the blue-difference chroma plane: on a
textured random flow field (64x80, blur sigma 3) the mean absolute error was ~1.6 / 2.1 / 4.4 grey levels for
R / G(v) / B(u) at CRF 8 (2.2 / 3.0 / 5.4 at CRF 18); one grey level is 0.16 px. Smooth flow fields fare better.

Frame alignment (our choice; GOCA leaves the first frame without flow and uses min(n_rgb, n_flow) frames): flow frame
i is the *forward* flow TVL1(gray[i], gray[i+1]). It lives on RGB frame i's pixel grid (it says where each pixel of
frame i moves to), so RGB frame i and flow frame i correspond spatially and temporally. The last frame has no
successor and repeats the flow of frame N-2, so the flow video has exactly as many frames as the RGB video (a
1-frame video gets zero flow). Frame rate and frame count match the source.

Backends (`backend=`): "opencv" is the CPU `cv2.optflow.DualTVL1OpticalFlow` (opencv-contrib), one pair per call and
one video per worker process; "jax" is `input_pipeline.tvl1.tvl1_batch`, the same algorithm batched over the frame
pairs of a video on the default JAX device (one process; the first video of each frame size compiles); "auto" picks
jax on an accelerator and otherwise `CPU_BACKEND`, the faster of the two on a CPU as measured (docs/benchmarks.md).
Both write the same files (same encoding, same `flow_params.json`), so a folder may be resumed with the other one.

Notes:
  * OpenCV's Dual TV-L1 defaults (tau 0.25, lambda 0.15,
    theta 0.3, 5 scales, 5 warps, epsilon 0.01, 30 inner x 10 outer iterations, scale step 0.8) are not the CUDA
    version's (300 iterations); GOCA's README warns that versions differ, so use one setting per dataset.
  * `FAST_TVL1` is a much cheaper setting for demos and tests (fewer scales, warps and iterations).
  * Memory per video: the resized grayscale frames plus the encoded flow frames (~4 bytes per pixel per frame at the
    output size); sources are decoded in chunks.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import glob
import json
import multiprocessing
import os
import sys
import time
import traceback
from typing import Callable, Optional, Sequence

import av
import cv2
import numpy as np

from input_pipeline import video as video_lib

FLOW_BOUND = 20.0
DEFAULT_CRF = 8
DECODE_CHUNK = 128
BACKENDS = ("auto", "jax", "opencv")
# The faster backend on a CPU-only machine: scripts/benchmark.py --mode=flow (docs/benchmarks.md, TV-L1 section).
CPU_BACKEND = "jax"
# Frame pairs per tvl1_batch call by default (the last batch of a video is padded, so each frame size compiles
# once). On a CPU about one 256x340 frame's pixels per call: at 256x340 batch 1 was the fastest (docs/benchmarks.md;
# larger batches fall out of the caches), while small frames need batches to amortise the per-call cost. On
# accelerators 8 pairs (not yet measured).
JAX_PIXELS_PER_CALL_CPU = 256 * 340
JAX_MAX_BATCH_CPU = 64
JAX_BATCH_ACCELERATOR = 8


def default_batch_size(height: int, width: int) -> int:
  """Frame pairs per call of the jax backend when none is given (see JAX_PIXELS_PER_CALL_CPU)."""
  import jax

  if jax.default_backend() != "cpu":
    return JAX_BATCH_ACCELERATOR
  return int(min(JAX_MAX_BATCH_CPU, max(1, round(JAX_PIXELS_PER_CALL_CPU / (height * width)))))


@dataclasses.dataclass(frozen=True)
class TVL1Params:
  """Dual TV-L1 parameters (defaults = OpenCV's `cv2.optflow.DualTVL1OpticalFlow_create()`)."""
  tau: float = 0.25
  lambda_: float = 0.15
  theta: float = 0.3
  nscales: int = 5
  warps: int = 5
  epsilon: float = 0.01
  inner_iterations: int = 30
  outer_iterations: int = 10
  scale_step: float = 0.8
  gamma: float = 0.0
  median_filtering: int = 5


DEFAULT_TVL1 = TVL1Params()
# Cheap setting for demos / tests: ~10x faster, still recovers pixel-scale motion on small frames.
FAST_TVL1 = TVL1Params(nscales=2, warps=2, inner_iterations=10, outer_iterations=3)

_TVL1_CACHE: dict = {}


def make_tvl1(params: TVL1Params = DEFAULT_TVL1):
  """A (per-process cached) `cv2.optflow.DualTVL1OpticalFlow` configured with `params`."""
  obj = _TVL1_CACHE.get(params)
  if obj is None:
    if not hasattr(cv2, "optflow") or not hasattr(cv2.optflow, "DualTVL1OpticalFlow_create"):
      raise RuntimeError("cv2.optflow.DualTVL1OpticalFlow_create is missing: install opencv-contrib-python-headless")
    obj = cv2.optflow.DualTVL1OpticalFlow_create()
    obj.setTau(float(params.tau))
    obj.setLambda(float(params.lambda_))
    obj.setTheta(float(params.theta))
    obj.setScalesNumber(int(params.nscales))
    obj.setWarpingsNumber(int(params.warps))
    obj.setEpsilon(float(params.epsilon))
    obj.setInnerIterations(int(params.inner_iterations))
    obj.setOuterIterations(int(params.outer_iterations))
    obj.setScaleStep(float(params.scale_step))
    obj.setGamma(float(params.gamma))
    obj.setMedianFiltering(int(params.median_filtering))
    _TVL1_CACHE[params] = obj
  return obj


def _to_gray(img: np.ndarray, name: str) -> np.ndarray:
  img = np.asarray(img)
  if img.ndim == 3 and img.shape[-1] == 3:
    if img.dtype != np.uint8:
      raise ValueError(f"{name}: RGB frames must be uint8, got {img.dtype}")
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
  if img.ndim != 2:
    raise ValueError(f"{name}: expected a grayscale [H, W] (or RGB [H, W, 3]) frame, got shape {img.shape}")
  if img.dtype != np.uint8:
    raise ValueError(f"{name}: grayscale frames must be uint8, got {img.dtype}")
  return np.ascontiguousarray(img)


def tvl1_flow(prev_gray: np.ndarray, next_gray: np.ndarray, params: TVL1Params = DEFAULT_TVL1) -> np.ndarray:
  """Dual TV-L1 flow from `prev_gray` to `next_gray`.

  Args:
    prev_gray, next_gray: uint8 [H, W] grayscale frames (uint8 [H, W, 3] RGB is converted to gray).
    params: TV-L1 parameters (`DEFAULT_TVL1` = OpenCV defaults, `FAST_TVL1` for demos).

  Returns:
    float32 [H, W, 2] flow (u, v) in pixels on prev's grid: pixel (x, y) of prev moves to (x + u, y + v) in next.
  """
  a = _to_gray(prev_gray, "tvl1_flow: prev_gray")
  b = _to_gray(next_gray, "tvl1_flow: next_gray")
  if a.shape != b.shape:
    raise ValueError(f"tvl1_flow: frame shapes differ: {a.shape} vs {b.shape}")
  flow = make_tvl1(params).calc(a, b, None)
  return np.asarray(flow, np.float32)


def encode_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
  """GOCA's 8-bit flow image: float [..., H, W, 2] (u, v) -> uint8 [..., H, W, 3] (R, G, B) = (128, v, u).

  u8 = round((clip(f, -bound, bound) + bound) * 255 / (2 * bound)), bound = 20 px.
  """
  flow = np.asarray(flow, np.float32)
  if flow.ndim < 3 or flow.shape[-1] != 2:
    raise ValueError(f"encode_flow: flow must be [..., H, W, 2], got shape {flow.shape}")
  q = np.round((np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound)))
  q = np.clip(q, 0, 255).astype(np.uint8)
  out = np.empty(flow.shape[:-1] + (3,), np.uint8)
  out[..., 0] = 128
  out[..., 1] = q[..., 1]
  out[..., 2] = q[..., 0]
  return out


def decode_flow(image: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
  """Inverse of `encode_flow`: uint8 [..., 3] (128, v, u) -> float32 [..., 2] (u, v) in pixels (+-bound)."""
  image = np.asarray(image)
  if image.ndim < 3 or image.shape[-1] != 3:
    raise ValueError(f"decode_flow: expected [..., H, W, 3] flow images, got shape {image.shape}")
  scale = np.float32(2.0 * bound / 255.0)
  u = image[..., 2].astype(np.float32) * scale - np.float32(bound)
  v = image[..., 1].astype(np.float32) * scale - np.float32(bound)
  return np.stack([u, v], axis=-1)


def flow_path_for(video_path: str, videos_dirname: str = "videos", flow_dirname: str = "videos_flow",
                  ext: Optional[str] = ".mp4") -> str:
  """GOCA's rule: the flow video sits at the same path with the directory `videos/` replaced by `videos_flow/`.

  The last path component equal to `videos_dirname` is replaced. The extension becomes `ext` (flow is always written
  as mp4; pass ext=None to keep the source's).

  Raises:
    ValueError: the path has no `videos_dirname` directory component.
  """
  dirs, name, i = _split_at_videos_dir(video_path, videos_dirname)
  dirs[i] = flow_dirname
  if ext is not None:
    name = os.path.splitext(name)[0] + ext
  return os.sep.join(dirs + [name])


def flow_root_for(video_path: str, videos_dirname: str = "videos",
                  flow_dirname: str = "videos_flow") -> tuple[str, str]:
  """(videos root, flow root) of `video_path` by the same rule: the folders that `extract_flow_folder` mirrors."""
  dirs, _, i = _split_at_videos_dir(video_path, videos_dirname)
  return os.sep.join(dirs[:i + 1]), os.sep.join(dirs[:i] + [flow_dirname])


def _split_at_videos_dir(video_path: str, videos_dirname: str) -> tuple[list[str], str, int]:
  """(directory components, file name, index of the last `videos_dirname` component)."""
  path = os.fspath(video_path)
  parts = path.replace(os.sep, "/").split("/")
  dirs = parts[:-1]
  hits = [i for i, p in enumerate(dirs) if p == videos_dirname]
  if not hits:
    raise ValueError(f"{path!r} has no '{videos_dirname}/' directory to map to its flow directory")
  return dirs, parts[-1], hits[-1]


def video_fps(path: str) -> float:
  """Average frame rate of the first video stream (25 if the container does not say, or for a CtP frame zip, which
  records none)."""
  if os.fspath(path).lower().endswith(video_lib.ZIP_EXTENSIONS):
    return 25.0
  try:
    with av.open(os.fspath(path)) as container:
      stream = container.streams.video[0]
      rate = stream.average_rate or stream.guessed_rate or stream.base_rate
  except (av.FFmpegError, IndexError, OSError) as e:
    raise video_lib.VideoDecodeError(f"{path}: cannot read the frame rate ({e})") from e
  fps = float(rate) if rate else 25.0
  return fps if 0 < fps < 1000 else 25.0


def _output_size(h: int, w: int, short_side: Optional[int]) -> tuple[int, int]:
  """(height, width) with the short side = short_side (None: keep), both even (yuv420p)."""
  if short_side:
    if h <= w:
      nh, nw = short_side, int(round(w * short_side / h))
    else:
      nh, nw = int(round(h * short_side / w)), short_side
  else:
    nh, nw = h, w
  nh, nw = max(2, nh - nh % 2), max(2, nw - nw % 2)
  return nh, nw


def resolve_backend(backend: str) -> str:
  """"jax" or "opencv" for `backend` in BACKENDS ("auto": jax on an accelerator, else `CPU_BACKEND`)."""
  if backend not in BACKENDS:
    raise ValueError(f"flow backend {backend!r} is not one of {', '.join(BACKENDS)}")
  if backend != "auto":
    return backend
  import jax

  return "jax" if jax.default_backend() != "cpu" else CPU_BACKEND


def _jax_flows(frames_gray: Sequence[np.ndarray], params: TVL1Params, batch_size: Optional[int]) -> np.ndarray:
  """float32 [N-1, H, W, 2] flows TVL1(gray[i], gray[i+1]) with `tvl1_batch`, `batch_size` pairs per call (split over
  every accelerator of this host when there are several)."""
  import jax

  from input_pipeline import tvl1

  grays = np.stack([_to_gray(g, "video_flow: frame") for g in frames_gray]).astype(np.float32)
  batch_size = int(batch_size or default_batch_size(*grays.shape[1:]))
  mesh = None
  if jax.default_backend() != "cpu" and jax.local_device_count() > 1:
    mesh = jax.sharding.Mesh(np.asarray(jax.local_devices()), ("data",))
  prev, nxt = grays[:-1], grays[1:]
  n = len(prev)
  out = []
  for start in range(0, n, batch_size):
    a, b = prev[start:start + batch_size], nxt[start:start + batch_size]
    k = len(a)
    if k < batch_size:  # pad with copies so that every call has the compiled shape
      a = np.concatenate([a, np.repeat(a[-1:], batch_size - k, axis=0)])
      b = np.concatenate([b, np.repeat(b[-1:], batch_size - k, axis=0)])
    out.append(np.asarray(tvl1.tvl1_batch(a, b, params, mesh=mesh))[:k])
  return np.concatenate(out)


def video_flow(frames_gray: Sequence[np.ndarray], params: TVL1Params = DEFAULT_TVL1,
               bound: float = FLOW_BOUND, backend: str = "opencv", batch_size: Optional[int] = None) -> np.ndarray:
  """Encoded flow frames of a whole video, aligned to the RGB frames (see the module doc).

  Args:
    frames_gray: N uint8 [H, W] grayscale frames.
    params: TV-L1 parameters.
    bound: flow clipped to +-bound px before the 8-bit encoding (GOCA: 20 px at short side 256).
    backend: "opencv", "jax" or "auto" (see the module doc).
    batch_size: frame pairs per call of the jax backend (None: `default_batch_size(H, W)`).

  Returns:
    uint8 [N, H, W, 3] (128, v, u): frame i = encode(TVL1(gray[i], gray[i+1])), the last repeats frame N-2.
  """
  n = len(frames_gray)
  if n == 0:
    raise ValueError("video_flow: no frames")
  h, w = frames_gray[0].shape[:2]
  out = np.empty((n, h, w, 3), np.uint8)
  if n == 1:
    out[0] = encode_flow(np.zeros((h, w, 2), np.float32), bound)
    return out
  if resolve_backend(backend) == "jax":
    out[:n - 1] = encode_flow(_jax_flows(frames_gray, params, batch_size), bound)
  else:
    for i in range(n - 1):
      out[i] = encode_flow(tvl1_flow(frames_gray[i], frames_gray[i + 1], params), bound)
  out[n - 1] = out[n - 2]
  return out


def _partial_path(dst_path: str) -> str:
  d, name = os.path.split(os.path.abspath(dst_path))
  stem, ext = os.path.splitext(name)
  return os.path.join(d, f".{stem}.partial-{os.getpid()}{ext or '.mp4'}")


def extract_video_flow(src_path: str, dst_path: str, short_side: Optional[int] = 256,
                       params: TVL1Params = DEFAULT_TVL1, crf: int = DEFAULT_CRF, max_frames: Optional[int] = None,
                       bound: float = FLOW_BOUND, backend: str = "opencv", batch_size: Optional[int] = None) -> int:
  """Computes the TV-L1 flow video of one RGB video and writes it as an H.264 mp4.

  Args:
    src_path: RGB video (any container PyAV reads).
    dst_path: output `.mp4`; written to a hidden temp file in the same directory and renamed when complete, so an
      interrupted run never leaves a half-written `dst_path`.
    short_side: frames are resized (bilinear) so the short side is this many pixels (GOCA: 256); None keeps the
      source size. Both sides are rounded down to even sizes (yuv420p).
    params: TV-L1 parameters.
    crf: x264 CRF of the flow video (low = high quality; 8 keeps the quantised flow within ~1 level).
    max_frames: optional cap on the number of frames (demo); None = all.
    bound: clipping bound of the encoding in px at the output size (GOCA: 20 at 256; scale it with `short_side`
      so that the same motion fills the same share of the 8-bit range).
    backend, batch_size: see `video_flow`.

  Returns:
    The number of frames written (= the source's frame count, or `max_frames`).
  """
  src_path = os.fspath(src_path)
  dst_path = os.fspath(dst_path)
  src = video_lib.VideoFile(src_path)
  n = src.num_frames
  if max_frames is not None:
    n = min(n, int(max_frames))
  fps = video_fps(src_path)
  grays = []
  size = None
  for start in range(0, n, DECODE_CHUNK):
    chunk = src.decode(np.arange(start, min(start + DECODE_CHUNK, n)))
    if size is None:
      size = _output_size(chunk.shape[1], chunk.shape[2], short_side)
    for rgb in chunk:
      if rgb.shape[:2] != size:
        rgb = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
      grays.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
  flow = video_flow(grays, params, bound, backend, batch_size)
  os.makedirs(os.path.dirname(os.path.abspath(dst_path)), exist_ok=True)
  tmp = _partial_path(dst_path)
  try:
    video_lib.write_video(tmp, flow, fps=fps, crf=crf)
    os.replace(tmp, dst_path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return len(flow)


def is_complete(src_path: str, dst_path: str, max_frames: Optional[int] = None) -> bool:
  """True when `dst_path` exists, decodes, and has the source's frame count (resume check)."""
  if not os.path.isfile(dst_path) or os.path.getsize(dst_path) == 0:
    return False
  try:
    want = video_lib.video_num_frames(src_path)
    if max_frames is not None:
      want = min(want, int(max_frames))
    return video_lib.video_num_frames(dst_path) == want
  except video_lib.VideoDecodeError:
    return False


def find_videos(videos_dir: str, exts: Sequence[str] = video_lib.VIDEO_EXTENSIONS) -> list[str]:
  """Video files under `videos_dir` (recursive, sorted), as paths relative to it. Hidden files are skipped."""
  exts = tuple(e.lower() for e in exts)
  found = []
  for root, dirs, files in os.walk(videos_dir):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for f in files:
      if not f.startswith(".") and f.lower().endswith(exts):
        found.append(os.path.relpath(os.path.join(root, f), videos_dir))
  return sorted(found)


def _worker_init() -> None:
  cv2.setNumThreads(1)


PARAMS_FILE = "flow_params.json"


@dataclasses.dataclass(frozen=True)
class FlowSettings:
  """The settings a flow folder is made with (see `extract_video_flow`); its `dataclasses.asdict` is the content of
  `<out_dir>/flow_params.json`."""
  short_side: Optional[int]
  bound: float
  crf: int
  max_frames: Optional[int]
  tvl1: TVL1Params


def flow_settings(short_side: Optional[int], params: TVL1Params, bound: float, crf: int,
                  max_frames: Optional[int]) -> dict:
  """The settings a flow folder was made with, as recorded in `<out_dir>/flow_params.json`."""
  return dataclasses.asdict(FlowSettings(short_side, float(bound), int(crf), max_frames, params))


def _worker(settings: FlowSettings, overwrite: bool, backend: str, batch_size: Optional[int],
            job: tuple[str, str, str]) -> tuple[str, str, Optional[str], int]:
  """(rel, status, error, frames) for one video `job` = (rel, src, dst); status in {"done", "skipped", "failed"}."""
  rel, src, dst = job
  try:
    if not overwrite and is_complete(src, dst, settings.max_frames):
      return rel, "skipped", None, 0
    for stale in glob.glob(os.path.join(os.path.dirname(os.path.abspath(dst)),
                                        "." + glob.escape(os.path.splitext(os.path.basename(dst))[0]) + ".partial-*")):
      try:
        os.remove(stale)
      except OSError:
        pass
    frames = extract_video_flow(src, dst, settings.short_side, settings.tvl1, settings.crf, settings.max_frames,
                                settings.bound, backend, batch_size)
    return rel, "done", None, frames
  except Exception as e:  # noqa: BLE001 - reported per video, the folder run goes on
    msg = f"{type(e).__name__}: {e}"
    if not isinstance(e, (video_lib.VideoDecodeError, ValueError, OSError)):
      msg += "\n" + traceback.format_exc()
    return rel, "failed", msg, 0


def read_flow_settings(out_dir: str) -> Optional[dict]:
  """The recorded settings of a flow folder, or None (not made by `extract_flow_folder`, or made before it wrote
  them)."""
  path = os.path.join(out_dir, PARAMS_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def extract_flow_folder(videos_dir: str, out_dir: str, short_side: Optional[int] = 256,
                        workers: Optional[int] = None, params: TVL1Params = DEFAULT_TVL1, crf: int = DEFAULT_CRF,
                        max_frames: Optional[int] = None, overwrite: bool = False,
                        exts: Sequence[str] = video_lib.VIDEO_EXTENSIONS,
                        log_fn: Optional[Callable[[str], None]] = None, bound: float = FLOW_BOUND,
                        remake_other_settings: bool = False, backend: str = "opencv",
                        batch_size: Optional[int] = None) -> dict:
  """Flow videos for every video under `videos_dir`, mirrored under `out_dir` as `.mp4` (same relative path).

  Resumable: outputs that already exist with the right frame count are skipped (unless `overwrite`), and outputs
  are written atomically (temp file + rename), so a killed run can simply be restarted. Videos that fail are
  reported (path + error) and the run continues. The settings are recorded in `<out_dir>/flow_params.json`; a folder
  recorded with other settings raises ValueError, unless `overwrite` or `remake_other_settings`, which first delete
  its outputs (a folder without a record is taken as made with these settings).

  Args:
    videos_dir: root of the RGB videos.
    out_dir: root of the flow videos (e.g. `.../videos_flow` for `.../videos`).
    short_side, params, crf, max_frames, bound: see `extract_video_flow`.
    workers: processes of the opencv backend (default: every core; 0 or 1 = in this process); the jax backend runs
      in this process (JAX spreads each batch over the device's cores itself).
    overwrite: recompute even complete outputs.
    remake_other_settings: remake a folder recorded with other settings (and resume one recorded with these).
    exts: video extensions to pick up.
    log_fn: progress lines (default: print to stderr).
    backend: "opencv", "jax" or "auto" (see the module doc); the files are the same either way, so the backend is
      not part of the recorded settings.
    batch_size: frame pairs per call of the jax backend (None: `default_batch_size(H, W)`).

  Returns:
    {"total", "done", "skipped", "failed": [(relpath, error), ...], "seconds"}.
  """
  if not os.path.isdir(videos_dir):
    raise FileNotFoundError(f"extract_flow_folder: videos directory {videos_dir!r} does not exist")
  if log_fn is None:
    log_fn = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
  jobs = [(rel, os.path.join(videos_dir, rel), os.path.join(out_dir, os.path.splitext(rel)[0] + ".mp4"))
          for rel in find_videos(videos_dir, exts)]
  backend = resolve_backend(backend)
  workers = (os.cpu_count() or 1) if workers is None else int(workers)
  if backend == "jax":
    workers = 1
  summary = {"total": len(jobs), "done": 0, "skipped": 0, "failed": [], "seconds": 0.0}
  settings = FlowSettings(short_side, float(bound), int(crf), max_frames, params)
  record = dataclasses.asdict(settings)
  recorded = read_flow_settings(out_dir)
  if recorded is not None and recorded != record:
    if not (overwrite or remake_other_settings):
      raise ValueError(f"{out_dir} holds flow made with other settings ({os.path.join(out_dir, PARAMS_FILE)}: "
                       f"{recorded}; asked for {record}): pass overwrite=True (--overwrite) or another output folder")
    # The resume check (`is_complete`) only counts frames: drop the old outputs before recording the new settings, so
    # a remake that is interrupted and then resumed never keeps flow of the old settings.
    log_fn(f"flow: {out_dir} was made with other settings ({recorded}); remaking it")
    for _, _, dst in jobs:
      if os.path.exists(dst):
        os.remove(dst)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, PARAMS_FILE), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)
  if backend == "jax":
    how = f"jax backend, batches of {batch_size or 'size-dependent'} pairs"
  else:
    how = f"opencv, {max(workers, 1)} worker(s)"
  log_fn(f"flow: {len(jobs)} videos in {videos_dir} -> {out_dir} (short side {short_side}, {how}, {params})")
  worker = functools.partial(_worker, settings, overwrite, backend, batch_size)
  t0 = time.time()
  frames_done = 0

  def report(result, finished):
    nonlocal frames_done
    rel, status, err, frames = result
    if status == "failed":
      summary["failed"].append((rel, err))
      log_fn(f"flow: FAILED {rel}: {err}")
    else:
      summary[status] += 1
      frames_done += frames
    elapsed = time.time() - t0
    computed = summary["done"] + len(summary["failed"])
    remaining = len(jobs) - finished
    eta = elapsed / max(finished, 1) * remaining
    if finished == len(jobs) or finished % max(1, len(jobs) // 100) == 0 or status == "failed":
      log_fn(f"flow: {finished}/{len(jobs)} (computed {computed}, skipped {summary['skipped']}, failed "
             f"{len(summary['failed'])}) {frames_done / max(elapsed, 1e-9):.1f} frames/s, eta {eta:.0f}s")

  if workers <= 1 or len(jobs) <= 1:
    for i, job in enumerate(jobs, 1):
      report(worker(job), i)
  else:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx,
                                                initializer=_worker_init) as pool:
      futures = [pool.submit(worker, job) for job in jobs]
      for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
        report(fut.result(), i)
  summary["seconds"] = time.time() - t0
  log_fn(f"flow: finished in {summary['seconds']:.1f}s: {summary['done']} computed, {summary['skipped']} skipped, "
         f"{len(summary['failed'])} failed")
  return summary
