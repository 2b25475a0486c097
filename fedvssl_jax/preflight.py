"""Checks of a run's config and workdir that need no compile, no Ray and no data read (`runners.run_cli`).

Each failure is a `ConfigError` naming the key or path, so a mistake costs seconds instead of a compile, a Ray start
or a trained round. The runners keep their own checks; these only move the cheap ones to the front.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Iterable

import ml_collections

from fedvssl_jax.config_utils import ConfigError


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(config: ml_collections.ConfigDict, key: str) -> None:
  value = config.get(key)
  if value is not None and not (_is_int(value) and value > 0):
    raise ConfigError(f"config.{key} must be a positive integer, got {value!r}")


def _ints(value: Any, key: str) -> None:
  items = value if isinstance(value, (tuple, list)) else (value,)
  if not items or not all(_is_int(v) for v in items):
    raise ConfigError(f"config.{key} must be integers, e.g. --config.{key}=1,2,3; got {value!r}")


def _choice(value: Any, known: Iterable[str], key: str) -> None:
  known = sorted(known)
  if value not in known:
    raise ConfigError(f"config.{key}: unknown {value!r}; known: {', '.join(known)}")


def check_workdir(workdir: str) -> None:
  """The workdir is (or can be made as) a writable folder, and its `checkpoints` entry, if any, is a folder."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir} is a file, not a folder; choose another --workdir")
  try:
    os.makedirs(workdir, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=workdir, prefix=".write_check_")
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"--workdir {workdir} is not writable ({e.strerror}); choose another --workdir") from e
  for name in ("checkpoints", "server"):
    path = os.path.join(workdir, name)
    if os.path.exists(path) and not os.path.isdir(path):
      raise ConfigError(f"{path} is a file, not a checkpoint folder; move it away or choose another --workdir")


def _check_model_and_data(config: ml_collections.ConfigDict) -> None:
  from fedvssl_jax import datasets
  from fedvssl_jax.models import BACKBONES, RESIDUAL_FRAME_BACKBONES

  if "data" in config and "source" in config.data:
    _choice(config.data.source, datasets.DATA_SOURCES.names(), "data.source")
  if "model" in config and "arch" in config.model:
    _choice(config.model.arch, BACKBONES.names(), "model.arch")
    model = config.model
    for key, on in (("model.backbone_kwargs.residual_frames", model.get("backbone_kwargs", {}).get("residual_frames")),
                    ("model.rgb_residual_frames", model.get("rgb_residual_frames"))):
      if on and model.arch not in RESIDUAL_FRAME_BACKBONES:
        raise ConfigError(f"config.{key}=True: residual frames are an input of the ResNet backbones "
                          f"({', '.join(RESIDUAL_FRAME_BACKBONES)}); config.model.arch is {model.arch!r}")


def _check_task(config: ml_collections.ConfigDict) -> None:
  from fedvssl_jax.pretext import PRETEXT_TASKS

  task = config.task
  _choice(task.get("name"), PRETEXT_TASKS.names(), "task.name")
  for key in ("clip_len", "crop_size", "min_frames"):
    if key in task:
      value = task[key]
      if not (_is_int(value) and value > 0):
        raise ConfigError(f"config.task.{key} must be a positive integer, got {value!r}")
  for key in ("strides", "short_side_sizes"):
    if key in task:
      _ints(task[key], f"task.{key}")


def _check_federated(config: ml_collections.ConfigDict) -> None:
  from fedvssl_jax.federated.local_trainer import LOCAL_TRAINERS, TRAINER_MODULES

  fed = config.federated
  modes = ("fedavg", "fedvssl", "flower_baseline")  # strategy.MODES, without importing Flower here
  _choice(fed.get("strategy", "fedvssl"), modes, "federated.strategy")
  if not fed.get("trainer_module"):  # a module of the user's may register more trainers
    _choice(fed.get("trainer", "pretext"), set(LOCAL_TRAINERS.names()) | set(TRAINER_MODULES), "federated.trainer")
  for key in ("num_clients", "num_rounds", "local_epochs"):
    _positive_int(config, f"federated.{key}")
  n = fed.num_clients
  fraction = fed.get("fraction_train", 1.0)
  if not 0 < fraction <= 1:
    raise ConfigError(f"config.federated.fraction_train must be in (0, 1], got {fraction}")
  min_train = int(fed.get("min_train_nodes", 1))
  if not 1 <= min_train <= n:
    raise ConfigError(f"config.federated.min_train_nodes={min_train} must be in 1..num_clients ({n}): a round "
                      "needs that many usable replies")
  if int(fed.get("min_available_nodes", 0)) > n:
    raise ConfigError(f"config.federated.min_available_nodes={fed.min_available_nodes} exceeds num_clients={n}")
  for key in ("round_timeout_s", "wait_timeout_s"):
    if key in fed and not fed[key] > 0:
      raise ConfigError(f"config.federated.{key} must be > 0, got {fed[key]}")
  if fed.get("ray_num_cpus", 0) and not (_is_int(fed.ray_num_cpus) and fed.ray_num_cpus > 0):
    raise ConfigError(f"config.federated.ray_num_cpus must be a positive integer or 0 (= all), got "
                      f"{fed.ray_num_cpus!r}")
  part_dir = fed.partitions.get("dir", "")
  if part_dir:
    if not os.path.isdir(part_dir):
      raise ConfigError(f"config.federated.partitions.dir: {part_dir} is not a folder")
    missing = [f"client_dist{k + 1}.json" for k in range(n)
               if not os.path.isfile(os.path.join(part_dir, f"client_dist{k + 1}.json"))]
    if missing:
      raise ConfigError(f"config.federated.partitions.dir: {part_dir} lacks {len(missing)} of the {n} client files "
                        f"(e.g. {missing[0]}); num_clients={n} needs client_dist1.json..client_dist{n}.json")


def check(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Every cheap check of `config` and `workdir`; raises `ConfigError` naming the key / path."""
  check_workdir(workdir)
  for key in ("batch_size", "log_every"):
    _positive_int(config, key)
  if "checkpoint_every" in config and not _is_int(config.checkpoint_every):
    raise ConfigError(f"config.checkpoint_every must be an integer, got {config.checkpoint_every!r}")
  _check_model_and_data(config)
  runner = config.get("runner")
  if runner in ("supervised", "pretext") and "optim" in config:
    from fedvssl_jax.core.optim import OPTIMIZERS

    _choice(config.optim.get("name", "sgd"), OPTIMIZERS, "optim.name")
  if "task" in config and (runner == "pretext" or (runner == "federated"
                                                   and config.federated.get("trainer", "pretext") == "pretext")):
    _check_task(config)
  if runner in ("federated", "federated_simulation"):
    _check_federated(config)
