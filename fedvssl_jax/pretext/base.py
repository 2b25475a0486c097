"""Shared pieces of the pretext tasks: the task interface, the model container, config access, and the CtP-style
key-frame and colour augmentations used by the CtP and Speed data builders.

A pretext task (registered in `fedvssl_jax.pretext.PRETEXT_TASKS`) is an object with

  make_builder(task_config) -> clip builder   (`build(reader, record, rng) -> dict[str, np.ndarray]`, `min_frames`)
  make_model(model_config, *, rngs) -> PretextModel   (nnx.Module with `backbone` and `head` attributes)
  loss_fn(model, batch, rng) -> (loss, metrics)       (pure; metrics are float32 scalars)

`ClassificationTask` is the shared implementation of the tasks whose head classifies pooled backbone features
(VCOP, Speed): pooled backbone, `model(video, rng) -> logits`, cross-entropy on `batch["label"]`.

Colour ops follow microsoft/CtP `pyvrl/datasets/transforms/color.py` and work on float32 clips with values in
[0, 255] (any channel order for brightness / contrast; RGB for the hue/saturation op, which is the same as CtP's
BGR op on BGR frames). Every op draws its parameters once per clip from the given `np.random.Generator`.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fedvssl_jax.losses.classification import accuracy, cross_entropy
from fedvssl_jax.ops import device_augment
from input_pipeline import transforms

Metrics = Dict[str, jax.Array]

_FILE = "fedvssl_jax/pretext/base.py"


# ----------------------------------------------------------------------------------------------------------------------
# Config access
# ----------------------------------------------------------------------------------------------------------------------

def cfg_get(config: Any, key: str, default: Any = None, *, where: str = "config") -> Any:
  """Reads `key` from a dict / ml_collections ConfigDict / attribute object, or returns `default`.

  Raises:
    KeyError naming `where` and the key if `default` is the `REQUIRED` sentinel and the key is missing.
  """
  if config is None:
    value = default
  elif isinstance(config, Mapping) or hasattr(config, "get"):
    try:
      value = config.get(key, default)
    except (AttributeError, KeyError, TypeError):
      value = default
  else:
    value = getattr(config, key, default)
  if value is REQUIRED:
    raise KeyError(f"{where}: missing required key {key!r}")
  return value


class _Required:
  def __repr__(self) -> str:
    return "REQUIRED"


REQUIRED = _Required()


def config_getter(config: Any, where: str) -> Callable[[str, Any], Any]:
  """`get(key, default)`: `cfg_get(config, key, default, where=where)`."""
  return lambda key, default: cfg_get(config, key, default, where=where)


def to_plain_dict(config: Any) -> Dict[str, Any]:
  """A shallow plain-dict copy of a dict / ConfigDict (None -> {})."""
  if config is None:
    return {}
  if hasattr(config, "to_dict"):
    return dict(config.to_dict())
  return dict(config)


# ----------------------------------------------------------------------------------------------------------------------
# Task interface and model container
# ----------------------------------------------------------------------------------------------------------------------

class PretextModel(nnx.Module):
  """Backbone + task head. Flat parameter keys start with `backbone/` and `head/`.

  Subclasses define `__call__` (the task forward pass); `loss_fn` of the task calls it.
  """

  def __init__(self, backbone: nnx.Module, head: nnx.Module):
    self.backbone = backbone
    self.head = head


class ClipBuilder(abc.ABC):
  """A task's data builder: turns one video into one training example.

  Attributes:
    min_frames: the shortest video (frames) the builder accepts; the pipeline skips / rejects shorter ones.
    uint8_video: True when `task_config.device_augment` is on: `build` returns the clip as uint8 (after sampling,
      resize, crop, flip and the task's geometric ops) and the colour jitter + normalisation run in the jitted step
      (`PretextTask.train_loss_fn`). Builders read it from the task config.
  """

  min_frames: int = 1
  uint8_video: bool = False

  @abc.abstractmethod
  def build(self, reader: Any, record: Any, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Reads frames through `reader` (`num_frames`, `read(indices) -> uint8 [T, H, W, 3]`) and returns arrays."""

  def __call__(self, reader: Any, record: Any, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    return self.build(reader, record, rng)


class PretextTask(abc.ABC):
  """Interface of a pretext task (see the module docstring).

  Attributes:
    name: registry name.
    builder_cls: the task's `ClipBuilder`, constructed as `builder_cls(task_config)` by `make_builder`.
  """

  name: str = ""
  builder_cls: type

  def make_builder(self, task_config: Any) -> ClipBuilder:
    """Data builder for `task_config` (clip_len, crop_size, ...; see the task's docstring)."""
    return self.builder_cls(task_config)

  @abc.abstractmethod
  def make_model(self, model_config: Any, *, rngs: nnx.Rngs) -> PretextModel:
    """Backbone (`model_config.arch`, `model_config.backbone_kwargs`) + head."""

  @abc.abstractmethod
  def loss_fn(self, model: PretextModel, batch: Mapping[str, jax.Array],
              rng: Optional[jax.Array]) -> Tuple[jax.Array, Metrics]:
    """Scalar loss and a dict of scalar metrics on a batch (model mode set by the caller)."""

  def batch_spec(self, task_config: Any) -> Dict[str, Tuple[Tuple[int, ...], Any]]:
    """Per-example array shapes and dtypes the builder produces (for dummy batches and shape checks)."""
    raise NotImplementedError

  def train_loss_fn(self, task_config: Any) -> Callable[..., Tuple[jax.Array, Metrics]]:
    """The training loss for `task_config`: `loss_fn`, preceded by the device colour augmentation when
    `task_config.device_augment` is on (the builder then yields uint8 clips; see `device_video_fn`)."""
    prepare = device_video_fn(self.make_builder(task_config), task_config, train=True)
    if prepare is None:
      return self.loss_fn

    def loss_fn(model, batch, rng):
      if rng is None:
        raise ValueError(f"{_FILE}: device_augment needs the step's rng (loss_fn(model, batch, rng))")
      # A key of its own, so the task's own randomness (dropout) draws as without device augmentation.
      video = prepare(batch["video"], jax.random.fold_in(rng, 0x0A06))
      return self.loss_fn(model, {**batch, "video": video}, rng)

    return loss_fn


DEVICE_JITTER_LEN = 5


def device_video_fn(builder: ClipBuilder, task_config: Any, *, train: bool
                    ) -> Optional[Callable[[jax.Array, Optional[jax.Array]], jax.Array]]:
  """`prepare(video, key) -> float32 video` for a builder that yields uint8 clips (`builder.uint8_video`), else None.

  `video`: uint8 [B, ..., T, H, W, 3] (VCOP's tuples flatten to clips); train=True applies
  `ops.device_augment.jitter_and_normalize` with `task_config.device_jitter` ((brightness, contrast, saturation, hue,
  p), torchvision ColorJitter semantics, one draw per clip; None = normalise only); train=False only normalises (the
  builder's mean / std).
  """
  if not getattr(builder, "uint8_video", False):
    return None
  jitter = cfg_get(task_config, "device_jitter", None) if train else None
  if jitter is not None:
    jitter = tuple(float(v) for v in jitter)
    if len(jitter) != DEVICE_JITTER_LEN:
      raise ValueError(f"{_FILE}: task_config.device_jitter must be (brightness, contrast, saturation, hue, p) or "
                       f"None, got {jitter}")
  mean, std = tuple(builder.mean), tuple(builder.std)

  def prepare(video: jax.Array, key: Optional[jax.Array]) -> jax.Array:
    shape = video.shape
    clips = video.reshape((-1,) + tuple(shape[-4:]))
    if key is None:
      key = jax.random.key(0)  # unused without jitter
    out = device_augment.jitter_and_normalize(clips, key, jitter=jitter, mean=mean, std=std)
    return out.reshape(shape)

  return prepare


def device_augment_flag(task_config: Any, where: str) -> bool:
  """`task_config.device_augment` as a bool (False when absent)."""
  value = cfg_get(task_config, "device_augment", False, where=where)
  if not isinstance(value, (bool, np.bool_)):
    raise ValueError(f"{where}.device_augment must be True or False, got {value!r}")
  return bool(value)


class ClassificationTask(PretextTask):
  """A task whose head classifies pooled backbone features (VCOP, Speed).

  Subclasses set `name`, `builder_cls`, `model_cls` (built as `model_cls(backbone, head)`, called as
  `model(video, rng) -> logits [B, C]`) and `source` (the module path named in errors), and define `make_head`.
  The backbone is built with `output="pooled"`; the loss is the cross-entropy of the logits against the int
  `batch["label"]`, with metrics loss, loss_cls and accuracy.
  """

  model_cls: type
  source: str

  @abc.abstractmethod
  def make_head(self, in_features: int, get: Callable[[str, Any], Any], *, rngs: nnx.Rngs) -> nnx.Module:
    """The head on `in_features`-wide pooled features; `get(key, default)` reads the model config."""

  def make_model(self, model_config: Any, *, rngs: nnx.Rngs) -> PretextModel:
    where = f"{self.source}: model_config"
    backbone = build_task_backbone(model_config, rngs=rngs, where=where, defaults={}, forced={"output": "pooled"})
    head = self.make_head(backbone_width(backbone, "feature_dim", where), config_getter(model_config, where),
                          rngs=rngs)
    return self.model_cls(backbone, head)

  def loss_fn(self, model: PretextModel, batch: Mapping[str, jax.Array],
              rng: Optional[jax.Array] = None) -> Tuple[jax.Array, Metrics]:
    logits = model(batch["video"], rng)
    labels = jnp.asarray(batch["label"]).reshape(-1).astype(jnp.int32)
    loss = cross_entropy(logits, labels)
    return loss, {"loss": loss, "loss_cls": loss, "accuracy": accuracy(logits, labels)}


def train_dropout(dropout: nnx.Dropout, x: jax.Array, rng: Optional[jax.Array], where: str) -> jax.Array:
  """`dropout(x, rngs=rng)`; in train mode `rng` (the task's `loss_fn` key) is required."""
  if not dropout.deterministic and rng is None:
    raise ValueError(f"{where} in train mode needs a dropout rng (loss_fn(model, batch, rng))")
  return dropout(x, rngs=rng)


def build_task_backbone(model_config: Any, *, rngs: nnx.Rngs, defaults: Mapping[str, Any],
                        forced: Mapping[str, Any], where: str) -> nnx.Module:
  """Builds `model_config.arch` with `defaults` < `model_config.backbone_kwargs` < `forced` keyword arguments.

  Raises:
    KeyError: `arch` missing. ValueError: `backbone_kwargs` contradicts a forced kwarg (e.g. `output`).
  """
  from fedvssl_jax.models import build_backbone  # Imported lazily: the models package is optional for data code.

  arch = cfg_get(model_config, "arch", REQUIRED, where=where)
  user_kwargs = to_plain_dict(cfg_get(model_config, "backbone_kwargs", None, where=where))
  for key, value in forced.items():
    if key in user_kwargs and user_kwargs[key] != value:
      raise ValueError(f"{where}: backbone_kwargs[{key!r}] = {user_kwargs[key]!r} is not supported by this task "
                       f"(it needs {value!r})")
  kwargs = dict(defaults)
  kwargs.update(user_kwargs)
  kwargs.update(forced)
  for key in ("spatial_downsample", "temporal_downsample"):
    if key in kwargs and kwargs[key] is not None:
      kwargs[key] = tuple(bool(v) for v in kwargs[key])
  return build_backbone(arch, rngs=rngs, **kwargs)


def backbone_width(backbone: nnx.Module, attr: str, where: str) -> int:
  """`backbone.<attr>` (`out_channels` or `feature_dim`) as an int, with a clear error when missing."""
  value = getattr(backbone, attr, None)
  if value is None:
    raise AttributeError(f"{where}: backbone {type(backbone).__name__} has no attribute {attr!r} "
                         "(see the backbone contract in docs/design.md)")
  return int(value)


# ----------------------------------------------------------------------------------------------------------------------
# Key frames (CtP dynamic_utils)
# ----------------------------------------------------------------------------------------------------------------------

def sample_key_frames(num_frames: int, key_frame_probs: Sequence[float], rng: np.random.Generator) -> np.ndarray:
  """Random key-frame indices: always 0 and num_frames - 1, plus k inner ones with P(k) = key_frame_probs[k].

  The inner ticks sit at `int(num_frames / (k + 1) * i)`, i = 1..k, each shifted by `U{-j .. j - 1}` with
  `j = int(num_frames / (k + 1) / 3)` (numpy `randint` semantics: high exclusive). The result is uniqued and sorted.

  Returns:
    int64 [K] sorted unique indices in [0, num_frames - 1], first 0 and last num_frames - 1.
  """
  num_frames = int(num_frames)
  if num_frames < 2:
    raise ValueError(f"{_FILE}: sample_key_frames needs num_frames >= 2, got {num_frames}")
  probs = np.asarray(key_frame_probs, np.float64)
  num_inner = int(rng.choice(len(probs), p=probs / probs.sum()))
  if num_inner == 0:
    return np.array([0, num_frames - 1], np.int64)
  avg = num_frames / (num_inner + 1)
  ticks = np.array([int(avg * i) for i in range(1, num_inner + 1)], np.int64)
  jitter_range = int(avg / 3)
  if jitter_range > 0:
    ticks = ticks + rng.integers(-jitter_range, jitter_range, size=len(ticks))
  ticks = np.concatenate([ticks, np.array([0, num_frames - 1], np.int64)])
  ticks = np.clip(ticks, 0, num_frames - 1)  # Jitter cannot leave the clip for these ranges; kept for safety.
  return np.unique(ticks).astype(np.int64)


INTERPOLATIONS = ("uniform", "accelerate", "decelerate")
_RANDOM_INTERP_PROBS = (0.7, 0.15, 0.15)


def interpolate_key_frames(values: np.ndarray, key_inds: np.ndarray, mode: str = "uniform",
                           rng: Optional[np.random.Generator] = None) -> np.ndarray:
  """Fills all frames between key frames (CtP `extend_key_frame_to_all`).

  Segment [a, b] with values v_a -> v_b and d = b - a, for step i = 0..d:
    uniform:    v_a + i * (v_b - v_a) / d
    accelerate: v_a + 0.5 * a * i^2,          a = 2 (v_b - v_a) / d^2
    decelerate: v_b + 0.5 * a * (d - i)^2,    a = 2 (v_a - v_b) / d^2
  mode "random" draws one rule per segment with p = (0.7, 0.15, 0.15) from `rng`.

  Args:
    values: [K, ...] values at the key frames.
    key_inds: [K] increasing key-frame indices, key_inds[0] == 0.
    mode: "uniform", "accelerate", "decelerate" or "random".

  Returns:
    [key_inds[-1] + 1, ...] values for every frame, dtype of `values`.
  """
  values = np.asarray(values)
  key_inds = np.asarray(key_inds, np.int64)
  if key_inds.ndim != 1 or len(key_inds) != len(values) or key_inds[0] != 0 or key_inds[-1] <= 0:
    raise ValueError(f"{_FILE}: interpolate_key_frames needs key_inds [K] starting at 0 matching values [K, ...], "
                     f"got key_inds={key_inds.tolist()} and values of shape {values.shape}")
  if mode not in INTERPOLATIONS + ("random",):
    raise ValueError(f"{_FILE}: unknown interpolation {mode!r}; known: {INTERPOLATIONS + ('random',)}")
  out = np.zeros((int(key_inds[-1]) + 1,) + values.shape[1:], values.dtype)
  for seg in range(len(key_inds) - 1):
    a, b = int(key_inds[seg]), int(key_inds[seg + 1])
    seg_mode = mode
    if mode == "random":
      if rng is None:
        raise ValueError(f"{_FILE}: interpolate_key_frames(mode='random') needs an rng")
      seg_mode = INTERPOLATIONS[int(rng.choice(3, p=_RANDOM_INTERP_PROBS))]
    start, end = values[seg].astype(np.float64), values[seg + 1].astype(np.float64)
    d = b - a
    steps = np.arange(d + 1, dtype=np.float64).reshape((-1,) + (1,) * (values.ndim - 1))
    if seg_mode == "uniform":
      seg_values = start + steps * ((end - start) * (1.0 / d))
    elif seg_mode == "accelerate":
      acc = 2.0 * (end - start) / (d ** 2)
      seg_values = start + 0.5 * acc * steps ** 2
    else:
      acc = 2.0 * (start - end) / (d ** 2)
      seg_values = end + 0.5 * acc * (d - steps) ** 2
    out[a:b + 1] = seg_values.astype(values.dtype)
  return out


# ----------------------------------------------------------------------------------------------------------------------
# CtP colour augmentations (float32 [T, H, W, 3] in [0, 255])
# ----------------------------------------------------------------------------------------------------------------------

def _as_float(clip: np.ndarray) -> np.ndarray:
  clip = np.asarray(clip)
  if clip.ndim != 4 or clip.shape[-1] != 3:
    raise ValueError(f"{_FILE}: colour ops need [T, H, W, 3] clips, got shape {clip.shape}")
  return clip.astype(np.float32, copy=clip.dtype != np.float32)


def _flag(rng: np.random.Generator, prob: float) -> bool:
  """CtP's `0 < rand() < prob` draw."""
  u = rng.random()
  return 0.0 < u < prob


def random_brightness(clip: np.ndarray, rng: np.random.Generator, prob: float, delta: float) -> np.ndarray:
  """With probability `prob`: `clip + U(-delta, delta)` clipped to [0, 255] (one value per clip). float32 out."""
  x = _as_float(clip)
  flag = _flag(rng, prob)
  shift = rng.uniform(-delta, delta)
  return np.clip(x + np.float32(shift), 0.0, 255.0) if flag else x


def random_contrast(clip: np.ndarray, rng: np.random.Generator, prob: float, delta: float) -> np.ndarray:
  """With probability `prob`: `clip * exp(U(-delta, delta))` clipped to [0, 255]. float32 out."""
  x = _as_float(clip)
  flag = _flag(rng, prob)
  factor = np.exp(rng.uniform(-delta, delta))
  return np.clip(x * np.float32(factor), 0.0, 255.0) if flag else x


def random_hue_saturation(clip: np.ndarray, rng: np.random.Generator, prob: float, hue_delta: float,
                          saturation_delta: float) -> np.ndarray:
  """With probability `prob`: OpenCV-HSV jitter, hue += U(-hue_delta, hue_delta) (OpenCV units, 0..179),
  saturation *= exp(U(-saturation_delta, saturation_delta)).

  As in CtP, the clip is rounded to uint8 before the HSV conversion, and the jittered HSV values are rounded,
  clipped to [0, 255] and the hue clipped (not wrapped) to [0, 179] before converting back.

  Args:
    clip: [T, H, W, 3] RGB, values in [0, 255].

  Returns:
    float32 [T, H, W, 3].
  """
  x = _as_float(clip)
  flag = _flag(rng, prob)
  hue = rng.uniform(-hue_delta, hue_delta)
  sat = np.exp(rng.uniform(-saturation_delta, saturation_delta))
  if not flag:
    return x
  out = np.empty_like(x)
  for t in range(x.shape[0]):
    img = np.round(np.clip(x[t], 0, 255)).astype(np.uint8)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] += hue
    hsv[..., 1] *= sat
    hsv = np.round(np.clip(hsv, 0, 255)).astype(np.uint8)
    hsv[..., 0] = np.clip(hsv[..., 0], 0, 179)
    out[t] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
  return out


def dynamic_brightness(clip: np.ndarray, rng: np.random.Generator, prob: float, delta: float,
                       key_frame_probs: Sequence[float] = (0.7, 0.3)) -> np.ndarray:
  """With probability `prob`: per-frame brightness shifts U(-delta, delta) drawn at random key frames and
  interpolated between them ("random" rule per segment); `clip + shift_t` clipped to [0, 255]. float32 out."""
  x = _as_float(clip)
  if not rng.random() < prob:
    return x
  keys = sample_key_frames(x.shape[0], key_frame_probs, rng)
  shifts = interpolate_key_frames(rng.uniform(-delta, delta, size=len(keys)), keys, "random", rng)
  return np.clip(x + shifts.astype(np.float32)[:, None, None, None], 0.0, 255.0)


def dynamic_contrast(clip: np.ndarray, rng: np.random.Generator, prob: float, delta: float,
                     key_frame_probs: Sequence[float] = (0.7, 0.3)) -> np.ndarray:
  """With probability `prob`: per-frame contrast factors exp(U(-delta, delta)) at random key frames, interpolated;
  `clip * factor_t` clipped to [0, 255]. float32 out."""
  x = _as_float(clip)
  if not rng.random() < prob:
    return x
  keys = sample_key_frames(x.shape[0], key_frame_probs, rng)
  factors = interpolate_key_frames(np.exp(rng.uniform(-delta, delta, size=len(keys))), keys, "random", rng)
  return np.clip(x * factors.astype(np.float32)[:, None, None, None], 0.0, 255.0)


def scale_to(clip: np.ndarray, size_wh: Sequence[int]) -> np.ndarray:
  """CtP `GroupScale` with a (long, short) pair: (w, h) = size_wh for landscape frames, swapped for portrait."""
  w, h = int(size_wh[0]), int(size_wh[1])
  if clip.shape[1] > clip.shape[2]:
    w, h = h, w
  return transforms.resize(clip, (w, h))


def check_reader_frames(frames: np.ndarray, expected_len: int, where: str) -> np.ndarray:
  """Validates `reader.read(...)` output: uint8 [T, H, W, 3] with T == expected_len."""
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[0] != expected_len or frames.shape[-1] != 3:
    raise ValueError(f"{where}: reader.read returned shape {frames.shape}, expected [{expected_len}, H, W, 3]")
  if frames.dtype != np.uint8:
    frames = np.clip(frames, 0, 255).astype(np.uint8)
  return frames


