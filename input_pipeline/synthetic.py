"""A synthetic action dataset whose classes are defined by motion only (real H.264 mp4 files + annotations).

Every video shows one randomly textured shape (rectangle, ellipse or triangle; random colours and pattern) over a
random smooth textured background. Appearance, size and position are random and independent of the class; the class
is the shape's motion: direction and speed of translation, direction of rotation, growing vs shrinking, horizontal
oscillation, vertical bouncing. A model therefore has to use time (several frames, and their order) to tell classes
apart; e.g. "move left" and "move right" are time reversals of each other.

Layout written by ``make_dataset(out_dir, ...)``::

  out_dir/videos/<class_name>/<name>.mp4        H.264, yuv420p, ``fps`` frames per second
  out_dir/annotations/train.json, test.json     CtP JSON [{"name": "<class_name>/<video>", "label": 1-based}]
  out_dir/annotations/train.txt, test.txt       CtP txt "<name> <1-based label>"
  out_dir/annotations/classInd.txt              "<1-based id> <class_name>"
  out_dir/dataset.json                          manifest: parameters, classes, counts, path template

Videos are rendered with vectorised numpy (inverse-mapping every pixel to the sprite), so a seed gives identical
frames, and encoded single-threaded. The encoding is not always byte-identical: making the demo preset three times
gave 24 of 400 files whose bytes (and decoded pixels, by up to 4 grey levels) differed between runs, though repeated
encodings of the tests' tiny preset have always matched. The cause is inside PyAV / x264 and was not found; setting
the codec context's thread_count and thread_type did not remove it. Read the annotations with
``annotations.read_json_list(out/"annotations/train.json", out, "videos/{name}.mp4")``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fcntl
import json
import math
import os
import sys
import time
from typing import Any, Callable

import cv2
import numpy as np

from input_pipeline import annotations as annotations_lib
from input_pipeline import progress as progress_lib
from input_pipeline import video as video_lib

MANIFEST_VERSION = 1
PATH_TEMPLATE = "videos/{name}.mp4"

# Motion classes in label order; ``num_classes`` takes the first n.
CLASS_NAMES = (
    "move_left_slow",
    "move_right_slow",
    "rotate_cw",
    "rotate_ccw",
    "grow",
    "shrink",
    "move_up_fast",
    "move_down_fast",
    "oscillate_horizontal",
    "bounce_vertical",
    "move_left_fast",
    "move_right_fast",
)
MAX_CLASSES = len(CLASS_NAMES)

# ~30 s of CPU for 400 clips of 64 frames at 80x80: the demos crop 48-64 px from a short side of 48-80 and read
# 8-frame clips at stride 2 (GOCA's full 2x32 + 4x16-frame multi-crop at stride 1 fits in 64 frames too).
DEMO_PRESET = dict(num_classes=10, videos_per_class_train=30, videos_per_class_test=10, num_frames=64, height=80,
                   width=80, seed=0)
# A few seconds: used by tests/conftest.py.
TEST_PRESET = dict(num_classes=4, videos_per_class_train=3, videos_per_class_test=2, num_frames=40, height=64,
                   width=64, seed=0)
PRESETS = {"demo": DEMO_PRESET, "test": TEST_PRESET}


# ----------------------------------------------------------------------------------------------------------------
# Motion parameters


@dataclasses.dataclass(frozen=True)
class Trajectory:
  """Per-frame pose of the sprite: float64 [T] arrays (pixels, radians, scale factors).

  ``cx, cy`` centre in pixels (x right, y down; positions wrap around the frame), ``angle`` in radians (positive =
  clockwise on screen), ``scale`` multiplies the sprite's base half-size.
  """

  cx: np.ndarray
  cy: np.ndarray
  angle: np.ndarray
  scale: np.ndarray


def make_trajectory(class_name: str, num_frames: int, height: int, width: int, rng: np.random.Generator
                    ) -> Trajectory:
  """Samples the motion of one video of class ``class_name`` (speeds scale with the frame size)."""
  t = np.arange(num_frames, dtype=np.float64)
  ref = min(height, width) / 112.0  # speeds are given for a 112-pixel frame
  cx = np.full_like(t, rng.uniform(0.25, 0.75) * width)
  cy = np.full_like(t, rng.uniform(0.25, 0.75) * height)
  angle = np.full_like(t, rng.uniform(0, 2 * np.pi))
  scale = np.ones_like(t)
  slow, fast = rng.uniform(0.6, 1.0) * ref, rng.uniform(1.8, 2.6) * ref
  if class_name == "move_left_slow":
    cx = cx - slow * t
  elif class_name == "move_right_slow":
    cx = cx + slow * t
  elif class_name == "move_left_fast":
    cx = cx - fast * t
  elif class_name == "move_right_fast":
    cx = cx + fast * t
  elif class_name == "move_up_fast":
    cy = cy - fast * t
  elif class_name == "move_down_fast":
    cy = cy + fast * t
  elif class_name in ("rotate_cw", "rotate_ccw"):
    omega = np.deg2rad(rng.uniform(4.0, 8.0))
    angle = angle + (omega if class_name == "rotate_cw" else -omega) * t
  elif class_name in ("grow", "shrink"):
    # Scale changes by a factor ~2.5 over the clip (rate per frame ~ln(2.5)/T).
    rate = math.log(2.5) / max(num_frames - 1, 1) * rng.uniform(0.85, 1.15)
    if class_name == "grow":
      scale = 0.45 * np.exp(rate * t)
    else:
      scale = 1.1 * np.exp(-rate * t)
  elif class_name == "oscillate_horizontal":
    period = rng.uniform(12.0, 20.0)
    amp = rng.uniform(0.18, 0.28) * width
    cx = np.full_like(t, width / 2) + amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
  elif class_name == "bounce_vertical":
    period = rng.uniform(12.0, 20.0)
    amp = rng.uniform(0.3, 0.45) * height
    floor = 0.78 * height
    cy = floor - amp * np.abs(np.sin(np.pi * t / period + rng.uniform(0, np.pi)))
  else:
    raise ValueError(f"unknown synthetic class {class_name!r}; known: {', '.join(CLASS_NAMES)}")
  return Trajectory(cx=cx, cy=cy, angle=angle, scale=scale)


# ----------------------------------------------------------------------------------------------------------------
# Rendering


def _smooth_texture(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
  """float32 [H, W, 3] in [0, 1]: random colour noise on a ``cells`` grid, bicubically upsampled."""
  base = rng.uniform(0, 1, size=(cells, cells, 3)).astype(np.float32)
  up = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
  return np.clip(up, 0.0, 1.0)


def _sprite_texture(rng: np.random.Generator, size: int = 32) -> np.ndarray:
  """float32 [size, size, 3] in [0, 1]: two random colours mixed by a random pattern (stripes, checker or blobs)."""
  c1, c2 = rng.uniform(0, 1, size=3), rng.uniform(0, 1, size=3)
  v, u = np.mgrid[0:size, 0:size].astype(np.float32) / size
  kind = rng.integers(3)
  freq = rng.uniform(2, 5)
  if kind == 0:
    theta = rng.uniform(0, np.pi)
    mix = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (u * np.cos(theta) + v * np.sin(theta)))
  elif kind == 1:
    mix = ((np.floor(u * freq * 2) + np.floor(v * freq * 2)) % 2).astype(np.float32)
  else:
    mix = _smooth_texture(rng, size, size, 4)[..., 0]
  return (mix[..., None] * c1 + (1 - mix[..., None]) * c2).astype(np.float32)


def _shape_alpha(shape: int, size: int) -> np.ndarray:
  """float32 [size, size] coverage of the shape in sprite coordinates u (columns), v (rows) in [-1, 1] (the aspect
  ratio is applied when the sprite is warped)."""
  ss = 4  # supersampling for smooth edges
  grid = (np.arange(size * ss, dtype=np.float32) + 0.5) / (size * ss) * 2 - 1
  v, u = np.meshgrid(grid, grid, indexing="ij")
  if shape == 0:
    inside = (np.abs(u) <= 1) & (np.abs(v) <= 1)
  elif shape == 1:
    inside = u * u + v * v <= 1
  else:
    inside = (v <= 0.8) & (v >= 1.8 * np.abs(u) - 1.0)
  return inside.astype(np.float32).reshape(size, ss, size, ss).mean(axis=(1, 3))


def render_video(class_name: str, num_frames: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
  """Renders one video of class ``class_name``.

  The sprite (texture + shape coverage, [S, S, 4]) is warped per frame with an affine map (rotation, scale, sub-pixel
  translation) into a local patch that is alpha-blended onto the background at wrapped (toroidal) positions, so a
  shape leaving one side re-enters on the other and translation never stops.

  Returns:
    uint8 [num_frames, height, width, 3] RGB.
  """
  traj = make_trajectory(class_name, num_frames, height, width, rng)
  background = _smooth_texture(rng, height, width, int(rng.integers(3, 7)))
  if rng.uniform() < 0.5:
    background = 0.25 + 0.5 * background
  texture = _sprite_texture(rng, 64)
  size = texture.shape[0]
  shape = int(rng.integers(3))  # 0 rectangle, 1 ellipse, 2 triangle
  half = rng.uniform(0.12, 0.2) * min(height, width)  # base half-size in pixels
  aspect = float(rng.uniform(0.55, 1.0))
  sprite = np.concatenate([texture, _shape_alpha(shape, size)[..., None]], axis=-1)
  # Sprite pixel index p -> sprite coordinate u = a * p + b in [-1, 1] (cv2 puts pixel centres at integers).
  a, b = 2.0 / size, 1.0 / size - 1.0
  max_radius = float(np.max(half * traj.scale)) * math.sqrt(1 + aspect * aspect)
  patch = min(int(2 * math.ceil(max_radius) + 4), height, width)
  frames = np.empty((num_frames, height, width, 3), np.float32)
  for t in range(num_frames):
    radius = half * traj.scale[t]
    cos, sin = math.cos(traj.angle[t]), math.sin(traj.angle[t])
    # Frame position of the sprite centre; the patch's top-left corner is an integer pixel (x0, y0).
    cx, cy = traj.cx[t], traj.cy[t]
    x0, y0 = int(math.floor(cx)) - patch // 2, int(math.floor(cy)) - patch // 2
    # Continuous coords (pixel centres at +0.5): x = cx + R (cos u - sin aspect v), y = cy + R (sin u + cos aspect v).
    lin = radius * np.array([[cos, -sin * aspect], [sin, cos * aspect]], np.float64)
    offset = np.array([cx - 0.5 - x0, cy - 0.5 - y0]) + lin @ np.array([b, b])
    m = np.concatenate([lin * a, offset[:, None]], axis=1)
    warped = cv2.warpAffine(sprite, m, (patch, patch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(0, 0, 0, 0))
    rows = np.mod(np.arange(y0, y0 + patch), height)
    cols = np.mod(np.arange(x0, x0 + patch), width)
    frame = background.copy()
    region = frame[np.ix_(rows, cols)]
    alpha = warped[..., 3:4]
    frame[np.ix_(rows, cols)] = alpha * warped[..., :3] + (1 - alpha) * region
    frames[t] = frame
  return np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Dataset


@dataclasses.dataclass(frozen=True)
class _Job:
  split: str
  label: int
  index: int
  name: str
  path: str


def _video_rng(seed: int, split: str, label: int, index: int) -> np.random.Generator:
  return np.random.default_rng([int(seed), 0 if split == "train" else 1, int(label), int(index)])


def _make_one(job: _Job, params: dict[str, Any]) -> str:
  rng = _video_rng(params["seed"], job.split, job.label, job.index)
  frames = render_video(CLASS_NAMES[job.label], params["num_frames"], params["height"], params["width"], rng)
  tmp = job.path + ".tmp.mp4"
  video_lib.write_video(tmp, frames, fps=params["fps"], crf=params["crf"], gop=params["gop"], threads=1)
  os.replace(tmp, job.path)
  return job.path


def _params(num_classes, videos_per_class_train, videos_per_class_test, num_frames, height, width, seed, fps,
            crf=18, gop=16) -> dict[str, Any]:
  if not 1 <= num_classes <= MAX_CLASSES:
    raise ValueError(f"num_classes must be in 1..{MAX_CLASSES}, got {num_classes}")
  if videos_per_class_train < 0 or videos_per_class_test < 0:
    raise ValueError("videos_per_class_train/test must be >= 0")
  if num_frames < 2:
    raise ValueError(f"num_frames must be >= 2, got {num_frames}")
  if height % 2 or width % 2 or height < 16 or width < 16:
    raise ValueError(f"height and width must be even and >= 16 (H.264 yuv420p), got {height}x{width}")
  return {"num_classes": int(num_classes), "videos_per_class_train": int(videos_per_class_train),
          "videos_per_class_test": int(videos_per_class_test), "num_frames": int(num_frames), "height": int(height),
          "width": int(width), "seed": int(seed), "fps": fps, "crf": int(crf), "gop": int(gop)}


def _jobs(out_dir: str, params: dict[str, Any]) -> list[_Job]:
  jobs = []
  for split, per_class in (("train", params["videos_per_class_train"]), ("test", params["videos_per_class_test"])):
    for label in range(params["num_classes"]):
      cls = CLASS_NAMES[label]
      for i in range(per_class):
        name = f"{cls}/v_{cls}_{split}_{i:04d}"
        jobs.append(_Job(split, label, i, name, os.path.join(out_dir, PATH_TEMPLATE.format(name=name))))
  return jobs


def _summary(out_dir: str, manifest: dict[str, Any]) -> dict[str, Any]:
  ann = os.path.join(out_dir, "annotations")
  return dict(manifest, root=out_dir, data_root=out_dir, path_template=PATH_TEMPLATE,
              train_annotations=os.path.join(ann, "train.json"), test_annotations=os.path.join(ann, "test.json"),
              train_txt=os.path.join(ann, "train.txt"), test_txt=os.path.join(ann, "test.txt"),
              class_index=os.path.join(ann, "classInd.txt"))


def make_dataset(out_dir, *, num_classes: int, videos_per_class_train: int, videos_per_class_test: int,
                 num_frames: int, height: int, width: int, seed: int, fps: float = 25, workers: int = 1,
                 crf: int = 18, gop: int = 16, progress: Callable[[int, int], None] | bool | None = None
                 ) -> dict[str, Any]:
  """Writes the synthetic dataset (videos, annotations, manifest) into ``out_dir``.

  Args:
    out_dir: output directory (created; existing files of the same names are overwritten).
    num_classes: number of motion classes, the first ``num_classes`` of ``CLASS_NAMES`` (<= 12).
    videos_per_class_train, videos_per_class_test: videos per class in each split.
    num_frames, height, width: clip size (height, width even).
    seed: the dataset seed; each video's randomness is derived from (seed, split, class, index), so the files are
      identical for any ``workers``.
    fps: frame rate written in the files.
    workers: rendering / encoding threads.
    crf, gop: x264 quality and keyframe interval.
    progress: True prints a progress line to stderr; a callable gets (done, total).

  Returns:
    The manifest plus paths: ``root``/``data_root``, ``path_template`` ("videos/{name}.mp4"),
    ``train_annotations``/``test_annotations`` (JSON), ``train_txt``/``test_txt``, ``class_index``.
  """
  out_dir = os.fspath(out_dir)
  params = _params(num_classes, videos_per_class_train, videos_per_class_test, num_frames, height, width, seed, fps,
                   crf, gop)
  manifest_path = os.path.join(out_dir, "dataset.json")
  if os.path.exists(manifest_path):
    os.remove(manifest_path)  # an interrupted rewrite must not look complete
  classes = list(CLASS_NAMES[:num_classes])
  for cls in classes:
    os.makedirs(os.path.join(out_dir, "videos", cls), exist_ok=True)
  jobs = _jobs(out_dir, params)
  start = time.time()
  report = progress if callable(progress) else None
  bar = progress_lib.Progress(len(jobs), "synthetic videos", unit="video") if progress is True else None
  done = 0

  def tick():
    if report is not None:
      report(done, len(jobs))
    elif bar is not None:
      bar.update(done)

  if workers <= 1:
    for job in jobs:
      _make_one(job, params)
      done += 1
      tick()
  else:
    with concurrent.futures.ThreadPoolExecutor(max_workers=int(workers)) as pool:
      for _ in pool.map(lambda j: _make_one(j, params), jobs):
        done += 1
        tick()
  if bar is not None:
    bar.close()

  ann_dir = os.path.join(out_dir, "annotations")
  counts = {}
  for split in ("train", "test"):
    records = [annotations_lib.VideoRecord(path=j.path, label=j.label, name=j.name) for j in jobs if j.split == split]
    annotations_lib.write_json_list(records, os.path.join(ann_dir, f"{split}.json"))
    annotations_lib.write_txt_list(records, os.path.join(ann_dir, f"{split}.txt"))
    counts[split] = len(records)
  annotations_lib.write_class_index(classes, os.path.join(ann_dir, "classInd.txt"))
  manifest = {"version": MANIFEST_VERSION, "params": params, "classes": classes, "counts": counts,
              "path_template": PATH_TEMPLATE, "seconds": round(time.time() - start, 3)}
  tmp = manifest_path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=2)
    f.write("\n")
  os.replace(tmp, manifest_path)
  return _summary(out_dir, manifest)


def load_manifest(out_dir) -> dict[str, Any] | None:
  """The dataset's manifest (with paths, as ``make_dataset`` returns it), or None when missing / unreadable."""
  out_dir = os.fspath(out_dir)
  try:
    with open(os.path.join(out_dir, "dataset.json"), encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, json.JSONDecodeError):
    return None
  if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
    return None
  return _summary(out_dir, manifest)


def is_complete(out_dir, **kwargs) -> bool:
  """True when ``out_dir`` holds a complete dataset made with exactly these ``make_dataset`` parameters."""
  out_dir = os.fspath(out_dir)
  manifest = load_manifest(out_dir)
  if manifest is None:
    return False
  kw = dict(kwargs)
  for k in ("workers", "progress"):
    kw.pop(k, None)
  kw.setdefault("fps", 25)
  try:
    params = _params(**kw)
  except TypeError:
    return False
  if manifest.get("params") != json.loads(json.dumps(params)):
    return False
  for key in ("train_annotations", "test_annotations", "train_txt", "test_txt", "class_index"):
    if not os.path.isfile(manifest[key]):
      return False
  for job in _jobs(out_dir, params):
    if not os.path.isfile(job.path) or os.path.getsize(job.path) == 0:
      return False
  return True


def ensure_dataset(out_dir, preset: dict[str, Any] | str = "demo", progress: bool = False,
                   **overrides) -> dict[str, Any]:
  """Reuses a complete dataset in ``out_dir`` made with the same parameters, else (re)generates it.

  Args:
    out_dir: dataset directory (a cache location for demos).
    preset: "demo", "test" or a dict of ``make_dataset`` keyword arguments.
    progress: say on stderr that the dataset is being made, with a progress line.
    **overrides: keyword arguments replacing the preset's (e.g. ``workers=2``).
  """
  if isinstance(preset, str) and preset not in PRESETS:
    raise ValueError(f"unknown synthetic preset {preset!r}; known: {', '.join(PRESETS)}")
  kwargs = dict(PRESETS[preset] if isinstance(preset, str) else preset)
  kwargs.update(overrides)
  if is_complete(out_dir, **kwargs):
    return load_manifest(out_dir)
  # Several processes (e.g. Flower clients on one machine) may ask at once: one makes it, the others wait for it.
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, ".lock"), "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if is_complete(out_dir, **kwargs):
        return load_manifest(out_dir)
      if progress:
        n = kwargs["num_classes"] * (kwargs["videos_per_class_train"] + kwargs["videos_per_class_test"])
        print(f"making the synthetic video dataset ({n} videos, cached for later runs) in {out_dir}",
              file=sys.stderr, flush=True)
      return make_dataset(out_dir, progress=progress, **kwargs)
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
