"""Helpers shared by the `configs/*.py` files.

Each config file has `get_config(arg)`; `arg` is the text after the colon of `--config=configs/x.py:arg`, parsed by
`parse_arg` in the style of big_vision: comma-separated flags and `key=value` pairs, e.g. `demo,federated` or
`demo,task=vcop`.
"""

from __future__ import annotations

import ast
from typing import Any

import ml_collections


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a config variant string against a set of known keys with defaults.

  Args:
    arg: e.g. "demo,federated" or "demo,task=vcop". Bare words set a boolean key to True.
    **defaults: every accepted key and its default; the type of a value given as `key=value` follows the default.

  Returns:
    A ConfigDict with every key of `defaults`.

  Raises:
    ValueError: for an unknown key, naming it and the accepted ones.
  """
  result = ml_collections.ConfigDict(dict(defaults))
  if not arg:
    return result
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, sep, value = item.partition("=")
    if key not in defaults:
      known = ", ".join(sorted(defaults))
      raise ValueError(f"unknown config variant {key!r} in {arg!r}; known: {known}")
    if not sep:
      result[key] = True
      continue
    default = defaults[key]
    if isinstance(default, bool):
      result[key] = value.lower() in ("1", "true", "yes", "on")
    elif isinstance(default, (int, float)):
      result[key] = type(default)(value)
    elif isinstance(default, str):
      result[key] = value
    else:
      result[key] = ast.literal_eval(value)
  return result


class ConfigError(ValueError):
  """A config value that cannot work (a missing data root, a wrong path); `main` prints it as one line."""


def data_config(dataset: str) -> ml_collections.ConfigDict:
  """The `config.data` block shared by every recipe (see fedvssl_jax/datasets.py for each key)."""
  return ml_collections.ConfigDict(dict(
      source=dataset,          # ucf101 | hmdb51 | kinetics400 | json | synthetic
      root="",                 # data root; required for real datasets
      format="official",       # official (video files + the dataset's split lists) | ctp (zips + CtP annotations)
      split=1,                 # official split index (UCF-101 / HMDB-51)
      train_annotations="",    # source=json: annotation files (CtP JSON / txt / Kinetics CSV)
      test_annotations="",
      path_template="",        # source=json: how a name becomes a path, e.g. "videos/{name}.mp4" (default by format)
      synthetic_preset="demo",  # source=synthetic
      cache_dir="",            # source=synthetic: where the videos are made (default ~/.cache/fedvssl_jax/synthetic)
      with_flow=False,         # two-stream runs: attach the optical-flow video of each record
      flow_template="",        # flow path template; default: the video path with videos/ -> videos_flow/
      num_workers=2,           # grain worker processes (0 = in-process)
  ))


def knn_config(batch_size: int = 8) -> ml_collections.ConfigDict:
  """`config.knn`: kNN retrieval after pretraining (fedvssl_jax/evaluation/knn.py)."""
  return ml_collections.ConfigDict(dict(
      enabled=True, clip_len=16, stride=2, num_clips=5, short_side=112, crop_size=112, three_crop=True,
      batch_size=batch_size, mean_center=False,
      data=ml_collections.ConfigDict(),  # empty: the run's own data (train split = gallery, test = queries)
  ))


def pretext_config(task: str, demo: bool) -> ml_collections.ConfigDict:
  """The shared part of the CtP / VCOP / Speed recipes (R3D-18, 16x112x112, SGD, wd 1e-4, clip 40, step lr).

  The original K400 runs: global batch 32 (4 per GPU x 8), 90 epochs, lr x0.1 at epochs 30 and 60, BN eps 1e-3.
  """
  config = ml_collections.ConfigDict()
  config.runner = "pretext"
  config.seed = 0
  config.mesh = [("data", -1)]
  config.data = data_config("synthetic" if demo else "kinetics400")
  if not demo:
    config.data.format = "ctp"
  config.model = ml_collections.ConfigDict(dict(
      arch="r3d_18", backbone_kwargs=ml_collections.ConfigDict(dict(width_multiplier=1.0, bn_epsilon=1e-3))))
  config.task = ml_collections.ConfigDict(dict(name=task, clip_len=16, crop_size=112))
  config.batch_size = 32
  config.num_epochs = 90
  config.num_steps = -1
  config.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=1e-4, grad_clip_norm=40.0,
      schedule="step", step_epochs=[30, 60], step_factor=0.1, warmup_epochs=0.0, warmup_start_lr=0.0, final_lr=0.0))
  config.knn = knn_config()
  config.knn.enabled = demo  # on real data, evaluate with the knn runner on UCF-101 / HMDB-51 instead
  config.log_every = 50
  config.checkpoint_every = 1000
  config.keep_checkpoints = 3
  config.max_steps_this_run = -1
  config.compilation_cache_dir = ""
  config.matmul_precision = ""
  if demo:
    config.data.num_workers = 1
    config.model.backbone_kwargs.width_multiplier = 0.125
    config.task.update(clip_len=8, crop_size=64)
    config.batch_size = 16
    config.num_epochs = 4
    config.optim.update(lr=0.05, schedule="warmup_cosine", warmup_epochs=0.5, final_lr=0.0)
    config.knn.update(clip_len=8, stride=2, num_clips=2, short_side=64, crop_size=64, three_crop=False,
                      batch_size=16)
    config.log_every = 5
    config.checkpoint_every = 50
  return config
