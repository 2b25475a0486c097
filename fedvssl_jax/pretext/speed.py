"""Speed (playback-rate classification, "SpeedNet" in CtP) pretext task: data builder, head, model and loss.

Reference: microsoft/CtP `pyvrl/models/pretraining/speednet/*`, `configs/speednet/*` (reference notes §2.3). This is
a 7-way classification of the signed frame stride, not SpeedNet's binary task.

Data (`SpeedBuilder`), task_config keys and their CtP defaults:
  clip_len          16
  strides           (-4, -2, -1, 0, 1, 2, 4)   drawn uniformly; label = index in this list; negative plays
                                                backwards, 0 repeats one frame
  short_side_sizes  (112, 128, 144)
  flip_prob         0.5
  brightness        (0.2, 32)                  RandomBrightness (prob, delta)
  contrast          (0.2, 0.2)                 RandomContrast (prob, log-delta)
  hue_saturation    (0.2, 12, 0.1)             RandomHueSaturation (prob, hue in OpenCV units, saturation log-delta)
  crop_size         112                        one random square crop
  mean, std         ImageNet
  min_frames        1
  device_augment    False                      True: "video" leaves the host as uint8 after resize / flip / crop;
                                               the colour ops above become `device_jitter` + normalisation in the
                                               jitted step (`base.PretextTask.train_loss_fn`)
  device_jitter     None                       (brightness, contrast, saturation, hue, p), torchvision ColorJitter
                                               semantics (`ops.device_augment`); None = normalise only
The colour ops are pointwise, so they are applied after the crop (same result as CtP's order, less work).
Output: {"video": float32 [T, S, S, 3] (uint8 with device_augment), "label": int32 scalar}.

Model (`SpeedModel`), model_config keys:
  arch             (required)
  backbone_kwargs  {}    `output` is forced to "pooled"
  num_classes      7     (len(strides))
  dropout          0.5
Head: pooled features -> dropout -> fc (D -> 7), fc N(0, 0.001), zero bias. Loss: cross-entropy; metrics loss,
loss_cls, accuracy.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fedvssl_jax.pretext import base
from input_pipeline import samplers, transforms

_FILE = "fedvssl_jax/pretext/speed.py"

SPEED_STRIDES = (-4, -2, -1, 0, 1, 2, 4)


class SpeedBuilder(base.ClipBuilder):
  """Speed training example from one video (see the module docstring for the config keys)."""

  def __init__(self, task_config: Any = None):
    where = f"{_FILE}: task_config"
    get = base.config_getter(task_config, where)
    self.clip_len = int(get("clip_len", 16))
    self.strides = tuple(int(s) for s in get("strides", SPEED_STRIDES))
    if not self.strides:
      raise ValueError(f"{where}: strides must not be empty")
    sizes = get("short_side_sizes", (112, 128, 144))
    self.short_side_sizes = None if sizes is None else tuple(int(s) for s in sizes)
    self.flip_prob = float(get("flip_prob", 0.5))
    self.brightness = tuple(float(v) for v in get("brightness", (0.2, 32.0)))
    self.contrast = tuple(float(v) for v in get("contrast", (0.2, 0.2)))
    self.hue_saturation = tuple(float(v) for v in get("hue_saturation", (0.2, 12.0, 0.1)))
    self.crop_size = int(get("crop_size", 112))
    self.mean = tuple(get("mean", transforms.IMAGENET_MEAN))
    self.std = tuple(get("std", transforms.IMAGENET_STD))
    self.min_frames = int(get("min_frames", 1))
    self.uint8_video = base.device_augment_flag(task_config, where)
    if len(self.brightness) != 2 or len(self.contrast) != 2 or len(self.hue_saturation) != 3:
      raise ValueError(f"{where}: brightness / contrast need (prob, delta), hue_saturation (prob, hue, sat)")

  @property
  def num_classes(self) -> int:
    return len(self.strides)

  def build(self, reader: Any, record: Any, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    label = int(rng.integers(0, len(self.strides)))
    idx = samplers.speed_indices(reader.num_frames, self.clip_len, self.strides[label], rng)
    clip = base.check_reader_frames(reader.read(idx), self.clip_len, f"{_FILE}: SpeedBuilder")
    if self.short_side_sizes:
      clip = transforms.random_short_side_resize(clip, self.short_side_sizes, rng)
    clip = transforms.random_hflip(clip, self.flip_prob, rng)
    clip = transforms.random_crop(clip, self.crop_size, rng)
    if self.uint8_video:
      return {"video": clip, "label": np.int32(label)}
    x = base.random_brightness(clip, rng, *self.brightness)
    x = base.random_contrast(x, rng, *self.contrast)
    x = base.random_hue_saturation(x, rng, *self.hue_saturation)
    return {"video": transforms.normalize(x, self.mean, self.std), "label": np.int32(label)}


class SpeedHead(nnx.Module):
  """TSN-style head on pooled features: dropout -> fc."""

  def __init__(self, in_features: int, *, num_classes: int = 7, dropout: float = 0.5, rngs: nnx.Rngs):
    self.in_features = int(in_features)
    self.dropout = nnx.Dropout(float(dropout))
    self.fc = nnx.Linear(self.in_features, int(num_classes), kernel_init=jax.nn.initializers.normal(stddev=0.001),
                         bias_init=jax.nn.initializers.zeros, rngs=rngs)

  def __call__(self, feats: jax.Array, rng: Optional[jax.Array] = None) -> jax.Array:
    """feats [B, D] -> logits float32 [B, num_classes]; `rng` is the dropout key (train mode)."""
    if feats.ndim != 2 or feats.shape[-1] != self.in_features:
      raise ValueError(f"{_FILE}: SpeedHead expects [B, {self.in_features}], got {feats.shape}")
    return self.fc(base.train_dropout(self.dropout, feats.astype(jnp.float32), rng, f"{_FILE}: SpeedHead"))


class SpeedModel(base.PretextModel):
  """Backbone (pooled output) + `SpeedHead`."""

  def __call__(self, video: jax.Array, rng: Optional[jax.Array] = None) -> jax.Array:
    """video [B, T, H, W, 3] -> logits [B, num_classes]."""
    return self.head(self.backbone(video), rng)


class SpeedTask(base.ClassificationTask):
  """The Speed pretext task (registered as "speed")."""

  name = "speed"
  builder_cls = SpeedBuilder
  model_cls = SpeedModel
  source = _FILE

  def make_head(self, in_features: int, get: Callable[[str, Any], Any], *, rngs: nnx.Rngs) -> SpeedHead:
    return SpeedHead(in_features, num_classes=int(get("num_classes", len(SPEED_STRIDES))),
                     dropout=float(get("dropout", 0.5)), rngs=rngs)

  def batch_spec(self, task_config: Any) -> Dict[str, Tuple[Tuple[int, ...], Any]]:
    b = self.make_builder(task_config)
    return {"video": ((b.clip_len, b.crop_size, b.crop_size, 3), np.uint8 if b.uint8_video else np.float32),
            "label": ((), np.int32)}
