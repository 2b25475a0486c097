"""Speed (playback-rate classification) pretraining, one of FedVSSL's pretext tasks.

  python -m fedvssl_jax.main --config=configs/speed.py --workdir=DIR --config.data.root=/data/kinetics400
  python -m fedvssl_jax.main --config=configs/speed.py:demo --workdir=DIR

Source: microsoft/CtP `configs/speednet/*` and `pyvrl/models/pretraining/speednet/*` (a 7-way playback-rate
classifier, not SpeedNet's binary task), the code FedVSSL ran (../shared/reference/pretext_tasks.md section 2.3).
Variants: `demo` (see `demo` below: what it changes and why).
"""

import ml_collections

from fedvssl_jax.config_utils import DEMO_EVAL_VIEWS, add_run_settings, data_config, knn_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False)
  config = ml_collections.ConfigDict()
  config.runner = "pretext"
  config.seed = 0
  config.mesh = [("data", -1)]

  config.data = data_config("kinetics400")
  config.data.format = "ctp"  # CtP's zipped RGB frames + JSON annotations

  # R3D-18, BN eps 1e-3 (CtP r3d.py); pooled feature -> dropout 0.5 -> fc 512 -> 7.
  config.model = ml_collections.ConfigDict(dict(
      arch="r3d_18", backbone_kwargs=ml_collections.ConfigDict(dict(width_multiplier=1.0, bn_epsilon=1e-3))))

  # Clips (speednet_dataset.py): 16 frames at one of 7 strides [-4,-2,-1,0,1,2,4] (negative = reversed, 0 = one
  # frame repeated; the label is the stride's index), short side {112,128,144}, flip 0.5, random crop 112.
  config.task = ml_collections.ConfigDict(dict(name="speed", clip_len=16, crop_size=112))
  config.task.min_frames = 16
  config.task.update(dict(strides=(-4, -2, -1, 0, 1, 2, 4), short_side_sizes=(112, 128, 144), flip_prob=0.5))
  # device_augment: uint8 clips off the host, colour jitter + normalisation in the jitted step (fedvssl_jax/ops/
  # device_augment.py; off = CtP's host ops, exact). The device jitter has torchvision ColorJitter semantics (one
  # draw per clip, fixed order brightness, contrast, saturation, hue, all with probability p), not CtP's independent
  # RandomBrightness (+-32 additive, p 0.2) / RandomContrast (x exp(+-0.2), p 0.2) / OpenCV-HSV hue-saturation (+-12
  # OpenCV units = 0.067 turn, x exp(+-0.1), p 0.2); device_jitter (brightness, contrast, saturation, hue, p) matches
  # their magnitudes roughly (see configs/ctp.py).
  config.task.device_augment = False
  config.task.device_jitter = (0.2, 0.12, 0.1, 0.067, 0.2)

  # Optimisation (CtP configs/speednet, CtP's schedule): batch 4 / GPU x 8 = 32, 90 epochs on Kinetics, SGD lr 0.01
  # momentum 0.9, wd 1e-4, gradient clip 40, lr x0.1 at epochs 30 and 60.
  config.batch_size = 32
  config.num_epochs = 90
  config.num_steps = -1  # > 0 overrides num_epochs
  config.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=1e-4, grad_clip_norm=40.0,
      schedule="step", step_epochs=(30, 60), step_factor=0.1, warmup_epochs=0.0, warmup_start_lr=0.0, final_lr=0.0))

  # Evaluation: on real data run configs/knn.py on UCF-101 / HMDB-51 after pretraining.
  config.knn = knn_config()
  config.knn.enabled = False
  add_run_settings(config, log_every=50)

  if arg.demo:
    demo(config)
  return config


def demo(config: ml_collections.ConfigDict) -> None:
  """`:demo`: the synthetic videos on a CPU in minutes; every change from the recipe above and why."""
  # Small and fast: the synthetic demo videos, one grain worker, R3D at 1/8 width, 8-frame 64 px clips from short
  # sides {64,72,80}.
  config.data = data_config("synthetic")
  config.data.num_workers = 1
  config.model.backbone_kwargs.width_multiplier = 0.125
  config.task.update(dict(clip_len=8, crop_size=64, min_frames=8, short_side_sizes=(64, 72, 80)))
  # 4 epochs of the 300 synthetic videos: a higher lr with a half-epoch warm-up and a cosine decay.
  config.batch_size = 16
  config.num_epochs = 4
  config.optim.update(dict(lr=0.05, schedule="warmup_cosine", warmup_epochs=0.5, final_lr=0.0))
  # kNN on the synthetic test split at the end of the run (2 clips x 1 crop of 8 frames at 64 px).
  config.knn.enabled = True
  config.knn.update(DEMO_EVAL_VIEWS, three_crop=False)
  config.log_every = 5
  config.checkpoint_every = 50
