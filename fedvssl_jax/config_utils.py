"""Plumbing shared by the `configs/*.py` recipes: variant parsing, recipe loading and the blocks every recipe has.

Each config file is its paper's recipe and has `get_config(arg)`; `arg` is the text after the colon of
`--config=configs/x.py:arg`, parsed by `parse_arg` in the style of big_vision: comma-separated flags and `key=value`
pairs, e.g. `demo,federated` or `demo,task=vcop`. The hyperparameters live in the config files; this module holds
only what several of them share: the `config.data`, run-control, kNN, federated and frozen-evaluation blocks (their
keys and defaults), the test-time views, and `load_recipe` for a recipe built on another (fedvssl.py on ctp.py).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from types import ModuleType
from typing import Any

import ml_collections

from fedvssl_jax.errors import UserError


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


class ConfigError(UserError, ValueError):
  """A config value that cannot work (a missing data root, a wrong path); `main` prints it as one line."""


def data_config(dataset: str) -> ml_collections.ConfigDict:
  """The `config.data` block shared by every recipe (see fedvssl_jax/datasets.py for each key)."""
  return ml_collections.ConfigDict(dict(
      source=dataset,          # ucf101 | hmdb51 | kinetics400 | json | synthetic | tfds
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
      # source=tfds: a prepared TFDS video dataset in ArrayRecord format (scripts/prepare_dataset.py --tfds, or
      # your own, e.g. "ucf101"), read without TensorFlow, decoding only the frames a clip needs
      tfds_name="",            # e.g. "fedvssl_videos/ucf101" ("fedvssl_videos/synthetic*" is prepared on first use)
      data_dir="",             # TFDS data dir ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets)
      train_split="train",
      test_split="test",
      tfds_video_key="video",  # features: encoded frames, label, flow frames ("" = "flow" when with_flow)
      tfds_label_key="label",
      tfds_flow_key="",
      percent_per_class=1.0,   # low-data runs: keep this fraction of each class's train videos (GOCA percent_per_cls)
      percent_seed=0,          # seed of that draw
  ))


def add_run_settings(config: ml_collections.ConfigDict, log_every: int = 20, checkpoint_every: int = 1000) -> None:
  """The run-control keys every recipe has: logging / checkpoint intervals, early stop, JAX settings."""
  config.log_every = log_every                # steps between metric lines / TensorBoard points
  config.checkpoint_every = checkpoint_every  # steps between Orbax checkpoints (and one at the end)
  config.keep_checkpoints = 3
  config.max_steps_this_run = -1              # > 0: stop (with a checkpoint) after this many steps this run
  config.compilation_cache_dir = ""           # "" = ~/.cache/fedvssl_jax/jax_compilation_cache
  config.matmul_precision = ""                # e.g. "highest" for parity checks
  config.compute_dtype = "float32"            # "bfloat16": backbone compute in bf16, params / optimiser state float32
  config.prefetch_to_device = 2               # host batches put on the devices ahead of the step (0 = none)


# Test-time views of the synthetic demo videos (kNN, fine-tuning test, linear-probe features): 2 uniform 8-frame clips
# at stride 2, centre crop 64 of short side 64.
DEMO_EVAL_VIEWS = dict(clip_len=8, stride=2, num_clips=2, short_side=64, crop_size=64, batch_size=16)
# Test-time views of the real datasets (fine-tuning test, linear-probe features): 10 uniform 16-frame clips at stride
# 2, centre crop 112 of short side 128, 8 videos per batch.
TEST_VIEWS = dict(clip_len=16, stride=2, num_clips=10, short_side=128, crop_size=112, three_crop=False, batch_size=8)


def knn_config(batch_size: int = 8) -> ml_collections.ConfigDict:
  """`config.knn`: kNN retrieval after pretraining (fedvssl_jax/evaluation/knn.py)."""
  return ml_collections.ConfigDict(dict(
      enabled=True, clip_len=16, stride=2, num_clips=5, short_side=112, crop_size=112, three_crop=True,
      batch_size=batch_size, mean_center=False,
      clip_placement="ctp",  # "goca": 5 clips from frame 0 at a ceil step (GOCA's get_clips_uniformly)
      data=ml_collections.ConfigDict(),  # empty: the run's own data (train split = gallery, test = queries)
  ))


def federated_config(demo: bool, strategy: str = "fedvssl", alpha: float = 0.9, beta: int = 1
                     ) -> ml_collections.ConfigDict:
  """`config.federated`, shared by configs/fedvssl.py, configs/goca.py:federated and the toy trainer.

  Defaults are FedVSSL's setting (fedvssl.md; configs/fedvssl.py names each): 100 non-IID K400 clients, 5 per round,
  1 local epoch, 540 rounds, aggregation alpha / beta. Clients read `client_dist{k}.json` from `partitions.dir`.
  `demo`: every federated demo's departures: 3 IID clients of the synthetic set (its measured split), all in every
  round, 3 rounds of 2 local epochs, one CPU and no GPU per client.
  """
  fed = ml_collections.ConfigDict(dict(
      trainer="pretext",
      trainer_module="",
      strategy=strategy,          # fedvssl (backbone-only client update) | fedavg (full model) | flower_baseline
      alpha=float(alpha),         # weight of the loss-based average (softmax of -loss)
      beta=int(beta),             # 1: 0.5 moving average with the previous global model
      ema_factor=0.5,
      mix_coeff=0.9,              # flower_baseline only (reproduces the Flower baseline's list concatenation)
      num_clients=100,
      ray_num_cpus=0,             # CPUs given to Ray in the in-process simulation; 0 = those this process may use
      num_rounds=540,
      fraction_train=0.05,
      min_train_nodes=2,
      min_available_nodes=0,
      local_epochs=1,
      max_steps_per_round=-1,
      round_timeout_s=7200.0,     # includes each client's JAX compile in its first round (docs/federated.md)
      wait_timeout_s=600.0,       # how long to wait for min_available_nodes to connect / partition-id replies
      progress_every_s=5.0,       # server: seconds between "waiting for N nodes" / "k/n clients replied" lines
      sampling_seed=0,
      client_resources=ml_collections.ConfigDict(dict(num_cpus=2, num_gpus=1.0)),
      # dir: FedVSSL client_dist{k}.json files; without it the train split is cut by `scheme` (FedVSSL's non-IID
      # sliding window; iid with seed 7 as published) and the files are written to <workdir>/partitions/.
      partitions=ml_collections.ConfigDict(dict(dir="", scheme="fedvssl-noniid", seed=7, alpha=0.5,
                                                classes_per_side=0)),
  ))
  if demo:
    fed.partitions.update(dict(scheme="iid", seed=0))  # 3 clients of a 10-class set: the demos' measured split
    fed.update(dict(num_clients=3, num_rounds=3, fraction_train=1.0, min_train_nodes=2, local_epochs=2,
                    round_timeout_s=1800.0))
    fed.client_resources.update(dict(num_cpus=1, num_gpus=0.0))
  return fed


# ------------------------------------------------------------------------------------ evaluation

NUM_CLASSES = {"ucf101": 101, "hmdb51": 51, "kinetics400": 400}
EVAL_DATASETS = ("ucf101", "hmdb51")


def check_choice(key: str, value: Any, choices) -> None:
  """Raises ValueError naming the config variant `key=value` and the accepted values."""
  if value not in choices:
    raise ValueError(f"config variant {key}={value!r}: expected one of {', '.join(map(str, choices))}")


def eval_config(runner: str, dataset: str = "ucf101", demo: bool = False, split: int = 1, init: str = "",
                flow_init: str = "") -> ml_collections.ConfigDict:
  """The shared part of the frozen-backbone evaluations (`runner` "knn" or "linear_probe"; configs/knn.py and
  configs/linear_probe.py add their protocols).

  `config.init.backbone_checkpoint` is the exported backbone to evaluate; `config.init.flow_backbone_checkpoint`
  (optional) a second, flow stream (GOCA's `export/flow_backbone`): each view's feature is then the average of the
  two streams' pooled features (GOCA's `Avg`), and the flow videos are read beside the RGB ones
  (`config.data.flow_template`, default videos/ -> videos_flow/). Features are written to
  `<workdir>/features_{train,test}.npz`; `config.features_dir` reads them from an earlier run instead.
  """
  check_choice("dataset", dataset, EVAL_DATASETS + ("json", "synthetic"))
  check_choice("split", split, (1, 2, 3))
  demo = demo or dataset == "synthetic"
  config = ml_collections.ConfigDict()
  config.runner = runner
  config.seed = 0
  config.mesh = [("data", -1)]
  config.data = data_config("synthetic" if demo else dataset)
  config.data.split = split
  config.init = ml_collections.ConfigDict(dict(backbone_checkpoint=init, flow_backbone_checkpoint=flow_init))
  config.features_dir = ""  # a workdir holding features_{train,test}.npz to reuse (no backbone is run then)
  config.compilation_cache_dir = ""
  config.matmul_precision = ""
  if demo:
    config.data.synthetic_preset = "demo"
    config.data.num_workers = 1
  return config


COMPUTE_DTYPES = ("float32", "bfloat16")


def apply_compute_dtype(config: ml_collections.ConfigDict) -> None:
  """`config.compute_dtype` -> `config.model.backbone_kwargs.dtype` (the backbones' compute dtype, a dtype name).

  Parameters stay `param_dtype` (float32), so the optimiser state is float32 too; heads and losses promote the
  backbone's bf16 features to float32. No-op for float32 or configs without a model block.
  """
  dtype = config.get("compute_dtype", "float32") or "float32"
  if dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"config.compute_dtype={dtype!r}; known: {', '.join(COMPUTE_DTYPES)}")
  if dtype == "float32" or "model" not in config:
    return
  with config.unlocked():
    if "backbone_kwargs" not in config.model or config.model.backbone_kwargs is None:
      config.model.backbone_kwargs = ml_collections.ConfigDict()
    config.model.backbone_kwargs.dtype = dtype


CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_recipe(name: str, configs_dir: str = "") -> ModuleType:
  """The module of `configs/<name>.py` (a recipe built on another one, or a script that needs a recipe's function).

  Args:
    name: the recipe's file name without `.py`, e.g. "ctp".
    configs_dir: the folder holding it; "" = the repository's `configs/` (beside this package). A config file passes
      `os.path.dirname(__file__)`, so that a copied configs folder uses its own copies.
  Raises:
    ConfigError: the file does not exist.
  """
  path = os.path.join(configs_dir or CONFIGS_DIR, f"{name}.py")
  if not os.path.isfile(path):
    raise ConfigError(f"{path}: no such recipe file (the recipes are the configs/ folder of a fedvssl_jax checkout)")
  spec = importlib.util.spec_from_file_location(f"fedvssl_jax_recipe_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
