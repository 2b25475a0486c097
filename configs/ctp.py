"""Catch-the-Patch (CtP) pretraining, the pretext task of FedVSSL's main results.

  python -m fedvssl_jax.main --config=configs/ctp.py --workdir=DIR --config.data.root=/data/kinetics400
  python -m fedvssl_jax.main --config=configs/ctp.py:demo --workdir=DIR      # synthetic videos, CPU, minutes
  python -m fedvssl_jax.main --config=configs/ctp.py:demo,tfds --workdir=DIR  # the same from the TFDS-prepared JPEGs

Source: Wang et al., "Unsupervised Visual Representation Learning by Tracking Patches in Video" (CVPR 2021) and its
code, microsoft/CtP `configs/ctp/r3d_18_kinetics/pretraining.py` + `pretraining_runtime_kinetics.py`
(../shared/reference/pretext_tasks.md section 2.1). Data defaults to CtP's Kinetics layout
(`<root>/<name>/RGB_frames.zip` + `annotations/{train,val}.json`).
Variants: `demo` (see `demo` below: what it changes and why), `tfds` (read TFDS-prepared JPEG frames).
"""

import ml_collections

from fedvssl_jax.config_utils import DEMO_EVAL_VIEWS, add_run_settings, data_config, knn_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, tfds=False)
  config = ml_collections.ConfigDict()
  config.runner = "pretext"
  config.seed = 0
  config.mesh = [("data", -1)]

  config.data = data_config("kinetics400")
  config.data.format = "ctp"  # CtP's zipped RGB frames + JSON annotations

  # R3D-18 with CtP's pretraining strides (layer 4 keeps spatial stride 1: 512x2x14x14 maps); every BN eps 1e-3
  # (CtP r3d.py).
  config.model = ml_collections.ConfigDict(dict(
      arch="r3d_18", backbone_kwargs=ml_collections.ConfigDict(dict(width_multiplier=1.0, bn_epsilon=1e-3))))
  config.model.fc_init = "ctp"  # both fcs N(0, 0.001) as CtP's ctp_head.py; "fan_in" is ours (pretext/ctp.py)

  # Clips (CtP pipeline): 16 frames at a random stride 1..5 with temporal jitter, short side {112,128,144}, random
  # crop 112, flip 0.5; shorter videos are replaced by the pipeline (counted as num_replaced) instead of clamped.
  config.task = ml_collections.ConfigDict(dict(name="ctp", clip_len=16, crop_size=112))
  config.task.min_frames = 16
  config.task.update(dict(strides=(1, 2, 3, 4, 5), temporal_jitter=True, short_side_sizes=(112, 128, 144),
                          flip_prob=0.5))
  # PatchMask (CtP `PatchMask` transform): 3 patches per clip on smooth trajectories, sizes / aspect ratios / speeds
  # as the original, key frames at (0.5, 0.3, 0.2), a patch visible with p 0.8, cut from the clip itself.
  config.task.patch_mask = ml_collections.ConfigDict(dict(
      num_rois=3, scales=(16, 24, 28, 32, 48, 64), ratios=(0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0), scale_jitter=0.18,
      key_frame_probs=(0.5, 0.3, 0.2), loc_velocity=3.0, size_velocity=0.025, label_prob=0.8,
      patch_source="clip", noise_block=4))
  # Colour augmentation on the accelerator (off = CtP's host pipeline, exact). On: the host work ends at uint8 clips
  # (sampling, resize, crop, flip, PatchMask: 4x fewer bytes, no float work on the host, the fast path of the
  # prepared JPEG frames, docs/benchmarks.md) and the jitted step jitters and normalises them
  # (fedvssl_jax/ops/device_augment.py).
  # The device jitter is NOT CtP's: it has torchvision ColorJitter semantics (multiplicative brightness, contrast
  # towards the frame's mean luma, saturation towards the pixel's luma, hue rotation), one draw of factors per clip
  # applied to all its frames with probability p, in the fixed order brightness, contrast, saturation, hue. CtP's host
  # ops are an OpenCV-HSV hue/saturation jitter (p 0.25, hue +-12 OpenCV units, saturation x exp(+-0.1)) and additive
  # brightness (+-30) / multiplicative contrast (x exp(+-0.12)) that change from frame to frame between random key
  # frames (p 0.5 each). device_jitter (brightness, contrast, saturation, hue, p) matches their magnitudes roughly:
  # hue 0.067 turn = 12 OpenCV units (of 180), saturation 0.1, brightness 0.12 = CtP's contrast factor.
  config.task.device_augment = False
  config.task.device_jitter = (0.12, 0.12, 0.1, 0.067, 0.5)

  # Optimisation (pretraining_runtime_kinetics.py): batch 4 / GPU x 8 = 32, 90 epochs, SGD lr 0.01 momentum 0.9,
  # wd 1e-4, gradient clip 40, lr x0.1 at epochs 30 and 60, no warm-up.
  config.batch_size = 32
  config.num_epochs = 90
  config.num_steps = -1  # > 0 overrides num_epochs
  config.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=1e-4, grad_clip_norm=40.0,
      schedule="step", step_epochs=(30, 60), step_factor=0.1, warmup_epochs=0.0, warmup_start_lr=0.0, final_lr=0.0))

  # Evaluation: on real data run configs/knn.py on UCF-101 / HMDB-51 after pretraining; CtP's forward_test
  # (trajectory IoU on one clip of every test video) runs at the end -> results.json.
  config.knn = knn_config()
  config.knn.enabled = False
  config.trajectory_iou = ml_collections.ConfigDict(dict(enabled=True, batch_size=8))
  add_run_settings(config, log_every=50)

  if arg.demo:
    demo(config)
  if arg.tfds:  # train from a TFDS dataset of JPEG frames (scripts/prepare_dataset.py --tfds; made on first use)
    config.data.source = "tfds"
    config.data.tfds_name = "fedvssl_videos/synthetic" if arg.demo else "fedvssl_videos/kinetics400"
  return config


def demo(config: ml_collections.ConfigDict) -> None:
  """`:demo`: the synthetic videos on a CPU in minutes; every change from the recipe above and why."""
  # Small and fast: the synthetic demo videos (10 classes), one grain worker, R3D at 1/8 width, 8-frame 64 px clips.
  config.data = data_config("synthetic")
  config.data.num_workers = 1
  config.model.backbone_kwargs.width_multiplier = 0.125
  config.task.update(dict(clip_len=8, crop_size=64, min_frames=8, short_side_sizes=(64, 72, 80), strides=(1, 2, 3)))
  # Patch sizes and speeds scaled with the 64 px crop (the originals are for 112 px).
  config.task.patch_mask.update(dict(scales=(9, 14, 16, 18, 27, 36), loc_velocity=1.7))
  config.batch_size = 16
  config.num_epochs = 20
  # Three departures from CtP that make the task learnable in a CPU demo at every seed (docs/pretext.md):
  # - a patch cut from the synthetic videos' smooth backgrounds is nearly invisible, so the demo pastes
  #   colour-block textures instead (same trajectories, alphas, visibility and targets);
  # - CtP's N(0, 0.001) init of both fcs is a saddle (each fc's gradient scales with the other's tiny weights);
  #   fc_init="fan_in" (He-normal fc1, zero fc2) starts off it;
  # - SGD (and at some seeds AdamW at 2e-3) falls back to the zero predictor; AdamW at 5e-4 did not at 3 seeds.
  config.task.patch_mask.patch_source = "noise"
  config.model.fc_init = "fan_in"
  config.optim.update(dict(name="adamw", lr=0.0005, schedule="warmup_cosine", warmup_epochs=0.5, final_lr=0.0))
  # kNN on the synthetic test split at the end of the run (2 clips x 1 crop of 8 frames at 64 px).
  config.knn.enabled = True
  config.knn.update(DEMO_EVAL_VIEWS, three_crop=False)
  config.log_every = 5
  config.checkpoint_every = 50
