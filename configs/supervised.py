"""Supervised video classification from scratch (the TSN recipe of CtP and FedVSSL); fine-tuning starts from it.

  python -m fedvssl_jax.main --config=configs/supervised.py --workdir=DIR --config.data.root=/data/ucf101
  python -m fedvssl_jax.main --config=configs/supervised.py:demo --workdir=DIR     # synthetic videos, CPU, minutes

Source: microsoft/CtP `configs/recognizers/_base_/{model_r3d18,runtime_ucf101,runtime_hmdb51}.py` (the TSN recipe),
which FedVSSL's fine-tuning follows (../shared/reference/pretext_tasks.md section 3, fedvssl.md section 5).
configs/finetune_{ucf101,hmdb51}.py start from `supervised_config`.
Variants: `demo` (see `demo` below: what it changes and why), `dataset=ucf101|hmdb51|kinetics400|json`.
"""

import ml_collections

from fedvssl_jax.config_utils import (DEMO_EVAL_VIEWS, NUM_CLASSES, TEST_VIEWS, add_run_settings, data_config,
                                      parse_arg)


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, dataset="ucf101")
  config = supervised_config(arg.dataset, arg.demo)
  if arg.demo:
    _residual_frames_demo(config)
  return config


def supervised_config(dataset: str = "ucf101", demo: bool = False) -> ml_collections.ConfigDict:
  """The recipe on `dataset` (`runner = "supervised"`), or its demo on the synthetic videos."""
  config = ml_collections.ConfigDict()
  config.runner = "supervised"
  config.seed = 0
  config.mesh = [("data", -1)]

  config.data = data_config(dataset)
  # TSN: R3D-18 (BN eps 1e-3 as CtP) -> pooled feature -> dropout 0.5 -> fc to the dataset's classes.
  config.model = ml_collections.ConfigDict(dict(
      arch="r3d_18",
      backbone_kwargs=ml_collections.ConfigDict(dict(width_multiplier=1.0, bn_epsilon=1e-3)),
      num_classes=NUM_CLASSES.get(dataset, 101),
      dropout=0.5,
  ))
  # Initial weights: an exported backbone directory (ours, an imported torchvision / FedVSSL one), or "" = random.
  config.init = ml_collections.ConfigDict(dict(backbone_checkpoint=""))

  # Training clips: one 16-frame clip at stride 2, no jitter; random crop 112, flip 0.35 (CtP's); colour:
  # augment="colorjitter" (random short side {112,128,144} + torchvision-style ColorJitter, this recipe) or
  # augment="ctp" (CtP's own: resize to a (w, h) pair, then brightness +-32, contrast and HSV each with p 0.2).
  config.train = ml_collections.ConfigDict(dict(
      clip_len=16, stride=2, crop_size=112, flip_p=0.35,
      augment="colorjitter",  # "colorjitter": short_side_sizes + jitter; "ctp": scales_wh + ctp_color (CtP's own)
      short_side_sizes=(112, 128, 144),
      jitter=(0.125, 0.2, 0.2, 0.05, 0.2),  # brightness (+-32/255), contrast, saturation, hue, probability
      scales_wh=((149, 112), (171, 128), (192, 144)),  # augment="ctp": resize to one (width, height) pair
      ctp_color=(32.0, 0.2, 12.0, 0.1, 0.2),  # augment="ctp": brightness +-32, contrast / saturation log-deltas,
                                              # hue +-12 OpenCV units, p of each op (transforms.ctp_color_augment)
  ))
  # Test (CtP's UniformFrameSampler + tsn_model.py): 10 uniform 16-frame clips at stride 2, centre crop 112 of short
  # side 128, logits averaged; top-1 / top-5 / mean class. resize_wh (w, h): resize to it instead of the short side.
  config.test = ml_collections.ConfigDict(dict(TEST_VIEWS, resize_wh=()))
  # Optimisation (runtime_ucf101.py): batch 4 / GPU x 8 = 32, 150 epochs, SGD lr 0.01 momentum 0.9, wd 5e-4, clip 40,
  # lr x0.1 at epochs 60 and 120.
  config.batch_size = 32  # global
  config.num_epochs = 150
  config.num_steps = -1   # > 0 overrides num_epochs
  config.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4, grad_clip_norm=40.0,
      schedule="step", step_epochs=(60, 120), step_factor=0.1,
      warmup_epochs=0.0, warmup_start_lr=0.0, final_lr=0.0,
  ))
  add_run_settings(config, log_every=20)
  if demo:
    _demo(config)
  return config


def _demo(config: ml_collections.ConfigDict) -> None:
  """`:demo`: the synthetic videos, a few minutes on 2 CPU cores; every change from the recipe above and why."""
  config.data = data_config("synthetic")
  config.data.synthetic_preset = "demo"
  config.data.num_workers = 1
  # Small: R3D at 1/8 width, 8-frame clips at 64 px from short sides {64,72,80}; the classes come from the dataset.
  config.model.backbone_kwargs.width_multiplier = 0.125
  config.model.num_classes = -1  # taken from the dataset
  config.train.update(clip_len=8, stride=2, crop_size=64, short_side_sizes=(64, 72, 80))
  # No flip: a mirrored synthetic video is another class (move_left <-> move_right, rotate_cw <-> rotate_ccw).
  config.train.flip_p = 0.0
  config.test.update(DEMO_EVAL_VIEWS)
  config.batch_size = 16
  # Measured (README): 3 epochs of SGD lr 0.05 ended at chance (loss 2.30 -> 2.68 by step 20), and AdamW with
  # dropout 0.5 stayed at 2.29 for 100 steps, while the same net without dropout fits fixed clips in 60 steps:
  # - dropout 0.5 on the 64-d pooled feature of the 1/8-width R3D hides half of a small feature: off;
  # - AdamW (as the CtP demo) instead of SGD, whose lr 0.05 diverged; 12 epochs (216 steps) instead of 3.
  config.model.dropout = 0.0
  config.num_epochs = 12
  config.optim.update(name="adamw", lr=0.001, schedule="warmup_cosine", warmup_epochs=0.5, final_lr=0.0)
  config.log_every = 5
  config.checkpoint_every = 20


def _residual_frames_demo(config: ml_collections.ConfigDict) -> None:
  """This recipe's `:demo` only (the fine-tuning demos start from `_demo` and a backbone pretrained on frames).

  Residual frames (the backbone sees x[t + 1] - x[t]; 9 frames -> 8 differences): each synthetic video's background,
  texture and colours are random and its class is its motion only, so on RGB frames the net memorised the 300
  training videos' appearance (train 86% / test 8% top-1, then 25% after 12 epochs); the differences of a static
  background are zero. With them, AdamW's lr can be 3e-3 (1e-3 on frames).
  """
  config.model.backbone_kwargs.residual_frames = True
  config.train.clip_len = 9
  config.test.clip_len = 9
  config.optim.lr = 0.003
