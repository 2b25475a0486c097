"""Supervised video classification / fine-tuning (the TSN recipe of CtP and FedVSSL).

  python -m fedvssl_jax.main --config=configs/supervised.py --workdir=DIR --config.data.root=/data/ucf101
  python -m fedvssl_jax.main --config=configs/supervised.py:demo --workdir=DIR     # synthetic videos, CPU, minutes

Recipe (CtP `configs/recognizers/*`, FedVSSL fine-tuning): R3D-18, one 16-frame clip at stride 2, random short side
{112,128,144}, crop 112, flip, colour jitter; SGD lr 0.01, momentum 0.9, weight decay 5e-4, clip 40; 150 epochs with
x0.1 steps at 60 and 120; test on 10 uniform clips (centre crop 112 of short side 128), logits averaged.
Variants: `demo` (synthetic videos, tiny R3D, a few minutes on 2 CPU cores), `dataset=ucf101|hmdb51|kinetics400|json`.
"""

import ml_collections

from fedvssl_jax.config_utils import add_run_settings, data_config, parse_arg

_NUM_CLASSES = {"ucf101": 101, "hmdb51": 51, "kinetics400": 400}


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, dataset="ucf101")
  config = ml_collections.ConfigDict()
  config.runner = "supervised"
  config.seed = 0
  config.mesh = [("data", -1)]

  config.data = data_config("synthetic" if arg.demo else arg.dataset)
  config.model = ml_collections.ConfigDict(dict(
      arch="r3d_18",
      backbone_kwargs=ml_collections.ConfigDict(dict(width_multiplier=1.0, bn_epsilon=1e-3)),
      num_classes=_NUM_CLASSES.get(arg.dataset, 101),
      dropout=0.5,
  ))
  # Initial weights: an exported backbone directory (ours, an imported torchvision / FedVSSL one), or "" = random.
  config.init = ml_collections.ConfigDict(dict(backbone_checkpoint=""))

  config.train = ml_collections.ConfigDict(dict(
      clip_len=16, stride=2, crop_size=112, short_side_sizes=(112, 128, 144), flip_p=0.35,
      jitter=(0.125, 0.2, 0.2, 0.05, 0.2),  # brightness (+-32/255), contrast, saturation, hue, probability
  ))
  config.test = ml_collections.ConfigDict(dict(
      clip_len=16, stride=2, num_clips=10, short_side=128, crop_size=112, three_crop=False, batch_size=8,
  ))
  config.batch_size = 32  # global
  config.num_epochs = 150
  config.num_steps = -1   # > 0 overrides num_epochs
  config.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4, grad_clip_norm=40.0,
      schedule="step", step_epochs=(60, 120), step_factor=0.1,
      warmup_epochs=0.0, warmup_start_lr=0.0, final_lr=0.0,
  ))
  add_run_settings(config, log_every=20)

  if arg.demo:
    config.data.synthetic_preset = "demo"
    config.data.num_workers = 1
    config.model.backbone_kwargs.width_multiplier = 0.125
    config.model.num_classes = -1  # taken from the dataset
    config.train.update(clip_len=8, stride=2, crop_size=64, short_side_sizes=(64, 72, 80))
    config.test.update(clip_len=8, stride=2, num_clips=2, short_side=64, crop_size=64, batch_size=16)
    config.batch_size = 16
    config.num_epochs = 3
    config.optim.update(lr=0.05, schedule="warmup_cosine", warmup_epochs=0.5, final_lr=0.0)
    config.log_every = 5
    config.checkpoint_every = 20
  return config
