"""VCOP (video clip order prediction) pretext task: data builder, head, model and loss.

Reference: microsoft/CtP `pyvrl/models/pretraining/vcop/*`, `configs/vcop/*` (reference notes §2.2).

Data (`VCOPBuilder`), task_config keys and their CtP defaults:
  clip_len       16          consecutive frames per clip
  tuple_len      3           clips per example (3! = 6 classes)
  interval       8           frames between clips: an int or (min, max); shrinks for short videos
  resize_wh      (171, 128)  resize every frame to (w, h) (swapped for portrait frames), as CtP's GroupScale
  crop_size      112         one random square crop shared by all tuple_len * clip_len frames
  mean, std      ImageNet    normalisation
  min_frames     1
  device_augment False       True: "video" leaves the host as uint8, normalised (and jittered with `device_jitter`,
                             default None: VCOP has no colour jitter) in the jitted step
No flip and no colour jitter. The label k ~ U{0 .. tuple_len! - 1}; the clips are returned in the order
`list(itertools.permutations(range(tuple_len)))[k]` (lexicographic: 012, 021, 102, 120, 201, 210), i.e. output
clip j is temporal clip perm[j].
Output: {"video": float32 [tuple_len, T, S, S, 3] (uint8 with device_augment), "label": int32 scalar}.

Model (`VCOPModel`), model_config keys:
  arch             (required) backbone registry name
  backbone_kwargs  {}    `output` is forced to "pooled" (fine-tune strides are the backbone default)
  tuple_len        3
  hidden_channels  512   fc1 width
  dropout          0.5   (the config's value; the code default is 0.25)
Head: f_i = pooled backbone features of clip i; for pairs (0,1), (0,2), (1,2): relu(fc1([f_i; f_j])) with
fc1: 2D -> 512; concat (3 * 512) -> dropout -> fc2 -> 6 logits. Init: fc1 kaiming normal (fan_out, relu),
fc2 N(0, 0.001), zero biases. Loss: cross-entropy; metrics loss, loss_cls, accuracy.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fedvssl_jax.pretext import base
from input_pipeline import samplers, transforms

_FILE = "fedvssl_jax/pretext/vcop.py"


def permutations(tuple_len: int) -> np.ndarray:
  """int64 [tuple_len!, tuple_len] permutations of range(tuple_len) in `itertools.permutations` order."""
  return np.array(list(itertools.permutations(range(int(tuple_len)))), np.int64)


def pair_indices(tuple_len: int) -> Tuple[Tuple[int, int], ...]:
  """All pairs (i, j), i < j, in row-major order: (0,1), (0,2), (1,2) for 3 clips."""
  return tuple((i, j) for i in range(tuple_len) for j in range(i + 1, tuple_len))


class VCOPBuilder(base.ClipBuilder):
  """VCOP training example from one video (see the module docstring for the config keys)."""

  def __init__(self, task_config: Any = None):
    where = f"{_FILE}: task_config"
    get = base.config_getter(task_config, where)
    self.clip_len = int(get("clip_len", 16))
    self.tuple_len = int(get("tuple_len", 3))
    interval = get("interval", 8)
    self.interval = tuple(int(v) for v in interval) if isinstance(interval, (tuple, list)) else int(interval)
    resize_wh = get("resize_wh", (171, 128))
    self.resize_wh = None if resize_wh is None else (int(resize_wh[0]), int(resize_wh[1]))
    self.crop_size = int(get("crop_size", 112))
    self.mean = tuple(get("mean", transforms.IMAGENET_MEAN))
    self.std = tuple(get("std", transforms.IMAGENET_STD))
    self.min_frames = int(get("min_frames", 1))
    self.uint8_video = base.device_augment_flag(task_config, where)
    if self.tuple_len < 2:
      raise ValueError(f"{where}: tuple_len must be >= 2, got {self.tuple_len}")
    self.perms = permutations(self.tuple_len)

  @property
  def num_classes(self) -> int:
    return len(self.perms)

  def build(self, reader: Any, record: Any, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    idx = samplers.vcop_tuple_indices(reader.num_frames, self.clip_len, self.tuple_len, self.interval, rng)
    frames = base.check_reader_frames(reader.read(idx.reshape(-1)), idx.size, f"{_FILE}: VCOPBuilder")
    if self.resize_wh is not None:
      frames = base.scale_to(frames, self.resize_wh)
    frames = transforms.random_crop(frames, self.crop_size, rng)
    label = int(rng.integers(0, len(self.perms)))
    # Shuffle the uint8 clips (one copy), then normalise once into the output.
    clips = frames.reshape((self.tuple_len, self.clip_len) + frames.shape[1:])[self.perms[label]]
    if self.uint8_video:
      return {"video": clips, "label": np.int32(label)}
    video = transforms.normalize(clips.reshape(frames.shape), self.mean, self.std)
    return {"video": video.reshape(clips.shape), "label": np.int32(label)}


class VCOPHead(nnx.Module):
  """Clip-order head over `tuple_len` pooled clip features of size `in_features`."""

  def __init__(self, in_features: int, *, tuple_len: int = 3, hidden_channels: int = 512, dropout: float = 0.5,
               rngs: nnx.Rngs):
    self.in_features = int(in_features)
    self.tuple_len = int(tuple_len)
    self.pairs = pair_indices(self.tuple_len)
    self.num_classes = math.factorial(self.tuple_len)
    kaiming = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    self.fc1 = nnx.Linear(2 * self.in_features, int(hidden_channels), kernel_init=kaiming,
                          bias_init=jax.nn.initializers.zeros, rngs=rngs)
    self.dropout = nnx.Dropout(float(dropout))
    self.fc2 = nnx.Linear(int(hidden_channels) * len(self.pairs), self.num_classes,
                          kernel_init=jax.nn.initializers.normal(stddev=0.001),
                          bias_init=jax.nn.initializers.zeros, rngs=rngs)

  def __call__(self, feats: jax.Array, rng: Optional[jax.Array] = None) -> jax.Array:
    """feats [B, tuple_len, D] -> logits float32 [B, tuple_len!]; `rng` is the dropout key (train mode)."""
    if feats.ndim != 3 or feats.shape[1] != self.tuple_len or feats.shape[2] != self.in_features:
      raise ValueError(f"{_FILE}: VCOPHead expects [B, {self.tuple_len}, {self.in_features}], got {feats.shape}")
    feats = feats.astype(jnp.float32)
    first = jnp.array([i for i, _ in self.pairs])
    second = jnp.array([j for _, j in self.pairs])
    pair_feats = jnp.concatenate([feats[:, first], feats[:, second]], axis=-1)     # [B, P, 2D]
    h = jax.nn.relu(self.fc1(pair_feats)).reshape(feats.shape[0], -1)               # [B, P * hidden]
    return self.fc2(base.train_dropout(self.dropout, h, rng, f"{_FILE}: VCOPHead"))


class VCOPModel(base.PretextModel):
  """Backbone (pooled output) applied to every clip + `VCOPHead`."""

  def __call__(self, video: jax.Array, rng: Optional[jax.Array] = None) -> jax.Array:
    """video [B, tuple_len, T, H, W, 3] -> order logits [B, tuple_len!] (the backbone sees B * tuple_len clips)."""
    if video.ndim != 6:
      raise ValueError(f"{_FILE}: VCOP video must be [B, tuple_len, T, H, W, 3], got {video.shape}")
    b, n = video.shape[:2]
    feats = self.backbone(video.reshape((b * n,) + video.shape[2:]))
    return self.head(feats.reshape(b, n, -1), rng)


class VCOPTask(base.ClassificationTask):
  """The VCOP pretext task (registered as "vcop")."""

  name = "vcop"
  builder_cls = VCOPBuilder
  model_cls = VCOPModel
  source = _FILE

  def make_head(self, in_features: int, get: Callable[[str, Any], Any], *, rngs: nnx.Rngs) -> VCOPHead:
    return VCOPHead(in_features, tuple_len=int(get("tuple_len", 3)), hidden_channels=int(get("hidden_channels", 512)),
                    dropout=float(get("dropout", 0.5)), rngs=rngs)

  def batch_spec(self, task_config: Any) -> Dict[str, Tuple[Tuple[int, ...], Any]]:
    b = self.make_builder(task_config)
    return {"video": ((b.tuple_len, b.clip_len, b.crop_size, b.crop_size, 3),
                      np.uint8 if b.uint8_video else np.float32),
            "label": ((), np.int32)}
