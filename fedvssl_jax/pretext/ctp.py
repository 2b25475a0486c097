"""Catch-the-Patch (CtP) pretext task: data builder, head, model and loss.

Reference: microsoft/CtP (`pyvrl/models/pretraining/ctp/*`, `configs/ctp/*`), see reference notes §2.1.

Data (`CtPBuilder`), task_config keys and their CtP defaults:
  clip_len            16                  frames per clip
  strides             (1, 2, 3, 4, 5)     RandomFrameSampler strides (uniform), with per-frame temporal jitter
  temporal_jitter     True
  short_side_sizes    (112, 128, 144)     random short-side resize
  crop_size           112                 one random square crop for all frames
  flip_prob           0.5                 horizontal flip (before PatchMask, so trajectories are in flipped coords)
  patch_mask          {}                  PatchMask kwargs: num_rois 3, scales (16, 24, 28, 32, 48, 64),
                                          ratios (.5, .67, .75, 1, 1.33, 1.5, 2), scale_jitter .18,
                                          key_frame_probs (.5, .3, .2), loc_velocity 3, size_velocity .025,
                                          label_prob .8, patch_source "clip" (or "noise",
                                          see ctp_patch_mask.PATCH_SOURCES), noise_block 4
  hue_saturation      (0.25, 12, 0.1)     (prob, hue delta in OpenCV units, saturation log-delta)
  dynamic_brightness  (0.5, 30)           (prob, delta), key frames p (.7, .3)
  dynamic_contrast    (0.5, 0.12)         (prob, log-delta), key frames p (.7, .3)
  mean, std           ImageNet            normalisation (RGB, [0, 1] units)
  min_frames          1                   shortest accepted video (the sampler clamps indices otherwise)
  device_augment      False               True: "video" leaves the host as uint8 after PatchMask; the three colour
                                          ops above are replaced by `device_jitter` + normalisation in the jitted
                                          step (`base.PretextTask.train_loss_fn`)
  device_jitter       None                (brightness, contrast, saturation, hue, p) of the device jitter
Output: {"video": float32 [T, S, S, 3] (uint8 with device_augment), "gt_trajs": float32 [N, T, 4],
"gt_weights": float32 [N, T] (ones)}.

Model (`CtPModel`), model_config keys:
  arch                (required) backbone registry name, e.g. "r3d_18"
  backbone_kwargs     {}   merged over the CtP defaults spatial_downsample (F, T, T, F),
                           temporal_downsample (F, T, T, T); `output` is forced to "feature_map"
  clip_len            16   input frames, used to infer the feature map's temporal size T' (eval_shape)
  in_temporal_size    None explicit T' (skips the inference)
  hidden_channels     None (= backbone out_channels; 512 for R3D-18)
  roi_feat_size       5
  spatial_stride      8    backbone spatial stride at the feature map (RoIAlign scale 1 / 8)
  target_means        (0, 0, 0, 0)
  target_stds         (0.8, 0.8, 0.04, 0.04)
  fc_init             "ctp"  the fcs' init: "ctp" or "fan_in" (see the head below)
Head: temporal conv (kernel (T', 1, 1), valid, bias) -> ReLU -> RoIAlign(5 x 5, 1/8, sampling_ratio 2, aligned) on
the frame-0 boxes -> flatten in PyTorch (C, H, W) order -> fc1 -> ReLU -> fc2 (hidden -> T * 4) -> [B, N, T, 4].
Init: kaiming normal (fan_out, relu) for the conv, N(0, 0.001) for both fcs (fc_init="ctp"), zero biases.
fc_init="fan_in" (not in CtP; the synthetic demo's): kaiming normal (fan_in, relu) for fc1 and zeros for fc2. Both
start near the zero predictor, but CtP's is a saddle: each fc's gradient is scaled by the other's 0.001 weights, and
the backbone's by both, so learning starts late and at some seeds not at all (docs/pretext.md).

Loss: `losses.ctp.ctp_loss(pred, encode_ctp_targets(gt_trajs), gt_weights)`; metrics loss, loss_ctr, loss_size.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fedvssl_jax.losses.ctp import (DEFAULT_TARGET_MEANS, DEFAULT_TARGET_STDS, aligned_box_iou, ctp_loss,
                                    decode_ctp_targets, encode_ctp_targets)
from fedvssl_jax.models import layers
from fedvssl_jax.ops.roi_align import roi_align
from fedvssl_jax.pretext import base
from fedvssl_jax.pretext.ctp_patch_mask import (DEFAULT_NOISE_BLOCK, DEFAULT_PATCH_SOURCE, check_patch_source,
                                                patch_mask)
from input_pipeline import samplers, transforms

_FILE = "fedvssl_jax/pretext/ctp.py"

CTP_SPATIAL_DOWNSAMPLE = (False, True, True, False)
CTP_TEMPORAL_DOWNSAMPLE = (False, True, True, True)

_PATCH_MASK_KEYS = ("num_rois", "scales", "ratios", "scale_jitter", "key_frame_probs", "loc_velocity",
                    "size_velocity", "label_prob", "patch_source", "noise_block")


# ----------------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------------

class CtPBuilder(base.ClipBuilder):
  """CtP training example from one video (see the module docstring for the config keys)."""

  def __init__(self, task_config: Any = None):
    where = f"{_FILE}: task_config"
    get = base.config_getter(task_config, where)
    self.clip_len = int(get("clip_len", 16))
    self.strides = tuple(int(s) for s in get("strides", (1, 2, 3, 4, 5)))
    self.temporal_jitter = bool(get("temporal_jitter", True))
    self.short_side_sizes = get("short_side_sizes", (112, 128, 144))
    self.short_side_sizes = None if self.short_side_sizes is None else tuple(int(s) for s in self.short_side_sizes)
    self.crop_size = int(get("crop_size", 112))
    self.flip_prob = float(get("flip_prob", 0.5))
    self.patch_mask_kwargs = base.to_plain_dict(get("patch_mask", None))
    unknown = set(self.patch_mask_kwargs) - set(_PATCH_MASK_KEYS)
    if unknown:
      raise KeyError(f"{where}.patch_mask: unknown keys {sorted(unknown)}; known: {list(_PATCH_MASK_KEYS)}")
    check_patch_source(self.patch_mask_kwargs.get("patch_source", DEFAULT_PATCH_SOURCE),
                       self.patch_mask_kwargs.get("noise_block", DEFAULT_NOISE_BLOCK), where=f"{where}.patch_mask")
    self.hue_saturation = tuple(float(v) for v in get("hue_saturation", (0.25, 12.0, 0.1)))
    self.dynamic_brightness = tuple(float(v) for v in get("dynamic_brightness", (0.5, 30.0)))
    self.dynamic_contrast = tuple(float(v) for v in get("dynamic_contrast", (0.5, 0.12)))
    self.mean = tuple(get("mean", transforms.IMAGENET_MEAN))
    self.std = tuple(get("std", transforms.IMAGENET_STD))
    self.min_frames = int(get("min_frames", 1))
    self.uint8_video = base.device_augment_flag(task_config, where)
    if self.clip_len < 2:
      raise ValueError(f"{where}: clip_len must be >= 2 for CtP, got {self.clip_len}")
    if len(self.hue_saturation) != 3 or len(self.dynamic_brightness) != 2 or len(self.dynamic_contrast) != 2:
      raise ValueError(f"{where}: hue_saturation needs (prob, hue, sat), dynamic_brightness / dynamic_contrast "
                       "need (prob, delta)")

  def build(self, reader: Any, record: Any, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    where = f"{_FILE}: CtPBuilder"
    indices = samplers.random_stride_indices(reader.num_frames, self.clip_len, self.strides, rng,
                                             temporal_jitter=self.temporal_jitter)
    clip = base.check_reader_frames(reader.read(indices), self.clip_len, where)
    if self.short_side_sizes:  # resize -> crop -> flip, frame by frame (the same values and random draws)
      clip = transforms.random_short_side_crop(clip, self.short_side_sizes, self.crop_size, rng, self.flip_prob)
    else:
      clip = transforms.random_hflip(transforms.random_crop(clip, self.crop_size, rng), self.flip_prob, rng)
    clip, gt_trajs = patch_mask(np.ascontiguousarray(clip), rng, **self.patch_mask_kwargs)
    out = {"gt_trajs": gt_trajs, "gt_weights": np.ones(gt_trajs.shape[:2], np.float32)}
    if self.uint8_video:
      return {"video": clip, **out}
    x = base.random_hue_saturation(clip, rng, *self.hue_saturation)
    x = base.dynamic_brightness(x, rng, *self.dynamic_brightness)
    x = base.dynamic_contrast(x, rng, *self.dynamic_contrast)
    return {"video": transforms.normalize(x, self.mean, self.std), **out}


# ----------------------------------------------------------------------------------------------------------------------
# Head and model
# ----------------------------------------------------------------------------------------------------------------------

def flatten_chw(x: jax.Array) -> jax.Array:
  """[K, H, W, C] -> [K, C * H * W] in PyTorch's (C, H, W) order (so fc1 kernels port from PyTorch unpermuted)."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def make_rois(boxes: jax.Array) -> jax.Array:
  """[B, N, 4] boxes -> [B * N, 5] RoIs `(batch_index, x1, y1, x2, y2)` (batch-major, as CtP)."""
  b, n = boxes.shape[:2]
  idx = jnp.broadcast_to(jnp.arange(b, dtype=boxes.dtype)[:, None, None], (b, n, 1))
  return jnp.concatenate([idx, boxes], axis=-1).reshape(b * n, 5)


FC_INITS = ("ctp", "fan_in")


class CtPHead(nnx.Module):
  """CtP trajectory head.

  Args:
    in_channels: channels C of the backbone feature map.
    in_temporal_size: temporal size T' of the feature map (the temporal conv's kernel).
    num_pred_frames: T, frames whose boxes are predicted.
    hidden_channels: temporal-conv output channels and fc1 width (CtP: 512 = in_channels).
    roi_feat_size: RoIAlign output size (5).
    spatial_stride: feature-map stride in input pixels (8).
    sampling_ratio: RoIAlign samples per bin side (2).
    fc_init: "ctp" (N(0, 0.001) for fc1 and fc2, the original) or "fan_in" (kaiming normal fc1, zero fc2).
    rngs: parameter initialisation.
  """

  def __init__(self, in_channels: int, in_temporal_size: int, num_pred_frames: int, *,
               hidden_channels: Optional[int] = None, roi_feat_size: int = 5, spatial_stride: float = 8.0,
               sampling_ratio: int = 2, fc_init: str = "ctp", rngs: nnx.Rngs):
    if fc_init not in FC_INITS:
      raise ValueError(f"{_FILE}: fc_init must be one of {FC_INITS}, got {fc_init!r}")
    hidden = int(hidden_channels or in_channels)
    self.in_channels = int(in_channels)
    self.in_temporal_size = int(in_temporal_size)
    self.num_pred_frames = int(num_pred_frames)
    self.hidden_channels = hidden
    self.roi_feat_size = int(roi_feat_size)
    self.spatial_scale = 1.0 / float(spatial_stride)
    self.sampling_ratio = int(sampling_ratio)
    kaiming = jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    small = jax.nn.initializers.normal(stddev=0.001)
    if fc_init == "ctp":
      fc1_init, fc2_init = small, small
    else:  # "fan_in"
      fc1_init, fc2_init = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal"), jax.nn.initializers.zeros
    self.temporal_conv = nnx.Conv(self.in_channels, hidden, kernel_size=(self.in_temporal_size, 1, 1),
                                  padding="VALID", use_bias=True, kernel_init=kaiming,
                                  bias_init=jax.nn.initializers.zeros,
                                  conv_general_dilated=layers.conv_general_dilated, rngs=rngs)
    self.fc1 = nnx.Linear(hidden * self.roi_feat_size ** 2, hidden, kernel_init=fc1_init,
                          bias_init=jax.nn.initializers.zeros, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, self.num_pred_frames * 4, kernel_init=fc2_init,
                          bias_init=jax.nn.initializers.zeros, rngs=rngs)

  def __call__(self, feats: jax.Array, boxes: jax.Array) -> jax.Array:
    """Predicts normalised trajectory deltas.

    Args:
      feats: [B, T', H', W', C] backbone feature map.
      boxes: [B, N, 4] query boxes (frame-0 boxes) in input pixels.

    Returns:
      float32 [B, N, num_pred_frames, 4] predicted normalised deltas.
    """
    if feats.ndim != 5 or feats.shape[1] != self.in_temporal_size or feats.shape[-1] != self.in_channels:
      raise ValueError(f"{_FILE}: CtPHead expects features [B, {self.in_temporal_size}, H, W, {self.in_channels}], "
                       f"got {feats.shape} (check model_config.clip_len / in_temporal_size and backbone_kwargs)")
    b, n = boxes.shape[:2]
    x = jax.nn.relu(self.temporal_conv(feats.astype(jnp.float32)))[:, 0]          # [B, H', W', hidden]
    rois = make_rois(boxes.astype(jnp.float32))
    pooled = roi_align(x, rois, self.roi_feat_size, self.spatial_scale, self.sampling_ratio, aligned=True)
    h = jax.nn.relu(self.fc1(flatten_chw(pooled)))
    return self.fc2(h).reshape(b, n, self.num_pred_frames, 4)


class CtPModel(base.PretextModel):
  """Backbone (feature-map output) + `CtPHead`."""

  def __init__(self, backbone: nnx.Module, head: CtPHead, target_means: Sequence[float] = DEFAULT_TARGET_MEANS,
               target_stds: Sequence[float] = DEFAULT_TARGET_STDS):
    super().__init__(backbone, head)
    self.target_means = tuple(float(v) for v in target_means)
    self.target_stds = tuple(float(v) for v in target_stds)

  def __call__(self, video: jax.Array, gt_trajs: jax.Array) -> jax.Array:
    """video [B, T, H, W, 3], gt_trajs [B, N, T, 4] -> predicted deltas [B, N, T, 4] (queries: frame-0 boxes)."""
    feats = self.backbone(video)
    return self.head(feats, gt_trajs[:, :, 0, :])


def trajectory_iou(model: CtPModel, video: jax.Array, gt_trajs: jax.Array) -> jax.Array:
  """CtP's `forward_test` (pyvrl/models/pretraining/ctp/ctp_model.py): the predicted trajectories of the patches
  (queried by their frame-0 boxes, deltas decoded as `CtPHead.predict`) against the true ones, IoU per frame.

  Args:
    model: a CtP model (put it in eval mode first).
    video: [B, T, H, W, 3] clips with pasted patches; gt_trajs: [B, N, T, 4] their boxes (x1, y1, x2, y2), px.

  Returns:
    float32 [B, N, T] IoU (`aligned_box_iou`).
  """
  gt_trajs = jnp.asarray(gt_trajs, jnp.float32)
  pred = model(video, gt_trajs)
  boxes = decode_ctp_targets(pred, gt_trajs[:, :, 0, :], means=model.target_means, stds=model.target_stds)
  return aligned_box_iou(boxes, gt_trajs)


def infer_feature_shape(backbone: nnx.Module, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
  """Shape of `backbone(zeros(input_shape))` without computing it (`jax.eval_shape`)."""
  graphdef, state = nnx.split(backbone)

  def forward(state, x):
    return nnx.merge(graphdef, state)(x)

  out = jax.eval_shape(forward, state, jax.ShapeDtypeStruct(input_shape, jnp.float32))
  return tuple(out.shape)


# ----------------------------------------------------------------------------------------------------------------------
# Task
# ----------------------------------------------------------------------------------------------------------------------

class CtPTask(base.PretextTask):
  """The CtP pretext task (registered as "ctp")."""

  name = "ctp"
  builder_cls = CtPBuilder

  def make_model(self, model_config: Any, *, rngs: nnx.Rngs) -> CtPModel:
    where = f"{_FILE}: model_config"
    get = base.config_getter(model_config, where)
    backbone = base.build_task_backbone(
        model_config, rngs=rngs, where=where,
        defaults={"spatial_downsample": CTP_SPATIAL_DOWNSAMPLE, "temporal_downsample": CTP_TEMPORAL_DOWNSAMPLE},
        forced={"output": "feature_map"})
    in_channels = base.backbone_width(backbone, "out_channels", where)
    clip_len = int(get("clip_len", 16))
    t_feat = get("in_temporal_size", None)
    if t_feat is None:
      size = int(get("infer_spatial_size", 32))
      shape = infer_feature_shape(backbone, (1, clip_len, size, size, 3))
      if len(shape) != 5:
        raise ValueError(f"{where}: backbone output must be a feature map [N, T', H', W', C], got shape {shape}")
      t_feat = shape[1]
    head = CtPHead(in_channels, int(t_feat), clip_len, hidden_channels=get("hidden_channels", None),
                   roi_feat_size=int(get("roi_feat_size", 5)), spatial_stride=float(get("spatial_stride", 8)),
                   fc_init=str(get("fc_init", "ctp")), rngs=rngs)
    return CtPModel(backbone, head, target_means=get("target_means", DEFAULT_TARGET_MEANS),
                    target_stds=get("target_stds", DEFAULT_TARGET_STDS))

  def loss_fn(self, model: CtPModel, batch: Mapping[str, jax.Array],
              rng: Optional[jax.Array] = None) -> Tuple[jax.Array, base.Metrics]:
    del rng  # CtP has no stochastic layers in the head.
    gt_trajs = jnp.asarray(batch["gt_trajs"], jnp.float32)
    weights = batch.get("gt_weights") if hasattr(batch, "get") else None
    pred = model(batch["video"], gt_trajs)
    targets = encode_ctp_targets(gt_trajs, means=model.target_means, stds=model.target_stds)
    loss, terms = ctp_loss(pred, jax.lax.stop_gradient(targets), weights)
    return loss, {"loss": loss, **terms}

  def batch_spec(self, task_config: Any) -> Dict[str, Tuple[Tuple[int, ...], Any]]:
    b = self.make_builder(task_config)
    num_rois = int(b.patch_mask_kwargs.get("num_rois", 3))
    return {"video": ((b.clip_len, b.crop_size, b.crop_size, 3), np.uint8 if b.uint8_video else np.float32),
            "gt_trajs": ((num_rois, b.clip_len, 4), np.float32),
            "gt_weights": ((num_rois, b.clip_len), np.float32)}
