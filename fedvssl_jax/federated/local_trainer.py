"""The contract between the federated machinery and a task's local training code.

A task (CtP, VCOP, Speed, GOCA, the test `toy`) registers a factory `factory(config) -> LocalTrainer` in
`LOCAL_TRAINERS`; `make_local_trainer(config)` picks it by `config.federated.trainer`. The Flower client app calls
`train` once per round it is sampled in; the server app calls `initial_arrays` once (round 0) and, after the last
round, `export(arrays, workdir) -> {stream: directory}` with the final global model when the trainer has an `export`
(optional, not part of the protocol: the toy trainer has no backbone to export).

Arrays cross this boundary as flat float32 dicts keyed by pytree path (`fedvssl_jax.federated.arrays`): the full
model, i.e. `backbone/...` plus the task's head and any other state that must persist between a client's rounds
(BatchNorm statistics included). The local optimiser is created fresh in every `train` call, as in the original
FedVSSL (mmcv builds a new SGD each round, and the epoch counter, hence the LR schedule, restarts).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

import ml_collections
import numpy as np

from fedvssl_jax.registry import Registry


@dataclasses.dataclass
class LocalResult:
  """What one client's local training returns.

  Attributes:
    arrays: the full local model after training, flat `{path: float32 array}` with the same keys and shapes as the
      input arrays.
    num_examples: n_k, the number of training examples (videos) of the client (FedAvg weight).
    mean_loss: L_k, the mean training loss over the round (FedVSSL's loss-based weight is softmax(-L)).
    metrics: any other scalars to log (floats), e.g. {"steps": 571, "lr": 0.01}.
  """
  arrays: dict[str, np.ndarray]
  num_examples: int
  mean_loss: float
  metrics: dict[str, float] = dataclasses.field(default_factory=dict)


@runtime_checkable
class LocalTrainer(Protocol):
  """One task's local training, used by every client (partition) of a run."""

  def initial_arrays(self) -> dict[str, np.ndarray]:
    """The initial full model, flat float32; deterministic (same seed on the server and every client)."""
    ...

  def num_examples(self, partition_id: int) -> int:
    """Number of training examples of client `partition_id`."""
    ...

  def train(self, partition_id: int, arrays: dict[str, np.ndarray], *, server_round: int, local_epochs: int,
            workdir: str) -> LocalResult:
    """Trains client `partition_id`'s model `arrays` for `local_epochs` epochs on its own data.

    Args:
      partition_id: 0-based client index (its data partition).
      arrays: the model to start from (for FedVSSL: the client's stored head + the global backbone).
      server_round: 1-based round number (for seeding and logging).
      local_epochs: E, passes over the client's data.
      workdir: a per-client scratch directory that persists between rounds (logs, caches).

    Returns:
      LocalResult with the full trained model.
    """
    ...


LOCAL_TRAINERS: Registry = Registry("local trainer")


def make_local_trainer(config: ml_collections.ConfigDict) -> LocalTrainer:
  """Builds the local trainer named by `config.federated.trainer` (factory called with the whole config).

  `config.federated.trainer_module` (optional) names a module to import first, for trainers registered outside
  the modules this package knows about.

  Raises:
    KeyError: `config.federated.trainer` missing or not registered (lists the known ones).
  """
  federated = config.get("federated")
  if federated is not None and federated.get("trainer_module"):
    import importlib

    importlib.import_module(federated.trainer_module)  # a module that registers more trainers
  if federated is None or not federated.get("trainer"):
    raise KeyError(f"config.federated.trainer is not set; known local trainers: {', '.join(LOCAL_TRAINERS.names())}")
  name = federated.trainer
  if name not in LOCAL_TRAINERS and name in TRAINER_MODULES:
    import importlib

    importlib.import_module(TRAINER_MODULES[name])  # registers it; imported only when asked for (may pull in JAX)
  return LOCAL_TRAINERS.get(name)(config)


# Where the known local trainers are registered (imported on demand, so a toy run never imports JAX models).
TRAINER_MODULES = {
    "toy": "fedvssl_jax.federated.toy",
    "pretext": "fedvssl_jax.pretext.federated",
    "goca": "fedvssl_jax.goca.federated",
}


# --- Flower run config -> ConfigDict -------------------------------------------------------------------------------

RUN_CONFIG_DEFAULTS = {
    "config-file": "configs/fedvssl.py",
    "config-arg": "demo",
    "overrides": "",
    "workdir": "workdir/flwr_run",
}

# Flat run-config keys for the common knobs (Flower's `flwr new` style, `--run-config "num-server-rounds=2"`) -> the
# dotted config key they set. An empty string (their default in pyproject.toml) keeps the config file's value.
FLAT_RUN_CONFIG_KEYS = {
    "num-server-rounds": "federated.num_rounds",
    "local-epochs": "federated.local_epochs",
    "fraction-train": "federated.fraction_train",
    "min-train-nodes": "federated.min_train_nodes",
    "alpha": "federated.alpha",
    "beta": "federated.beta",
    "strategy": "federated.strategy",
}
# Flat keys that pick a variant of the config file: appended to `config-arg` as `key=value` (configs/fedvssl.py).
VARIANT_RUN_CONFIG_KEYS = ("task",)


def _package_root() -> str:
  import os

  return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_config_file(path: str) -> str:
  """A config file path: as given if it exists (relative to the cwd), else relative to the repository root (the
  directory holding the `fedvssl_jax` package, i.e. the Flower app directory in `flwr run`)."""
  import os

  candidates = [path] if os.path.isabs(path) else [path, os.path.join(_package_root(), path)]
  for c in candidates:
    if os.path.isfile(c):
      return os.path.abspath(c)
  raise FileNotFoundError(f"run config 'config-file': {path!r} not found (tried {', '.join(candidates)})")


def _imported_module_at(path: str):
  """An already imported module whose file is `path`; for files inside this package, imports it by name."""
  import importlib
  import os
  import sys

  for module in list(sys.modules.values()):
    f = getattr(module, "__file__", None)
    if f and os.path.abspath(f) == path:
      return module
  pkg = os.path.join(_package_root(), "fedvssl_jax") + os.sep
  if path.startswith(pkg) and path.endswith(".py"):
    rel = os.path.relpath(path[:-3], _package_root()).replace(os.sep, ".")
    return importlib.import_module(rel)
  return None


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Imports a config file and returns `get_config(arg)` (`get_config()` when `arg` is empty and the function takes
  no required argument), like `ml_collections.config_flags` does for `--config=path:arg`. A `.json` file is a
  config snapshot (`config_from_json`)."""
  import hashlib
  import importlib.util
  import inspect

  path = resolve_config_file(path)
  if path.endswith(".json"):
    return config_from_json(path)
  module = _imported_module_at(path)  # a package module used as a config (e.g. federated/toy.py): no re-import
  if module is None:
    name = "fedvssl_jax_config_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
      raise ImportError(f"cannot import config file {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise AttributeError(f"config file {path} has no get_config()")
  fn = module.get_config
  required = [p for p in inspect.signature(fn).parameters.values()
              if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
  return fn(arg) if (arg or required) else fn()


def config_from_json(path: str) -> ml_collections.ConfigDict:
  """Reads a ConfigDict saved as JSON (`config.to_json_best_effort()`); JSON lists become tuples."""
  import json

  with open(path, encoding="utf-8") as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"config snapshot {path} is not valid JSON ({e})") from e

  def tuplify(x):
    if isinstance(x, dict):
      return {k: tuplify(v) for k, v in x.items()}
    if isinstance(x, list):
      return tuple(tuplify(v) for v in x)
    return x

  return ml_collections.ConfigDict(tuplify(data))


def apply_override(config: ml_collections.ConfigDict, dotted_key: str, value) -> None:
  """Sets `config.<dotted_key> = value`, keeping the field's type (lists become tuples where the field is a tuple).

  Raises:
    KeyError: the key does not exist in the config (naming it).
  """
  parts = dotted_key.split(".")
  node = config
  for i, part in enumerate(parts[:-1]):
    if part not in node:
      raise KeyError(f"override {dotted_key!r}: config has no key {'.'.join(parts[:i + 1])!r}")
    node = node[part]
  last = parts[-1]
  if last not in node:
    raise KeyError(f"override {dotted_key!r}: config has no key {dotted_key!r}")
  current = node[last]
  if isinstance(current, tuple) and isinstance(value, list):
    value = tuple(value)
  elif isinstance(current, ml_collections.ConfigDict) and isinstance(value, dict):
    for k, v in value.items():
      apply_override(config, f"{dotted_key}.{k}", v)
    return
  elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  node[last] = value


def config_from_run_config(run_config) -> ml_collections.ConfigDict:
  """The experiment config of a Flower run, from its flat `context.run_config`.

  Keys (all optional; defaults in `RUN_CONFIG_DEFAULTS` and in pyproject.toml's `[tool.flwr.app.config]`):
    config-file: a config file with `get_config(arg)`, relative to the cwd or to the repository root.
    config-arg: the variant string passed to `get_config` (the part after ":" of `--config=file.py:arg`).
    overrides: a JSON object of `{"dotted.key": value}` applied in order (e.g. '{"federated.num_rounds": 3}');
      JSON lists become tuples for tuple fields.
    num-server-rounds, local-epochs, fraction-train, min-train-nodes, alpha, beta, strategy: the common knobs as
      flat keys (`FLAT_RUN_CONFIG_KEYS`), applied after `overrides`; "" keeps the config file's value.
    task: a variant of the config file (`configs/fedvssl.py`: ctp | vcop | speed | goca), appended to config-arg.
    override.<dotted.key>: flat per-key overrides (TOML tables under `[tool.flwr.app.config.override]`), applied
      last.
    workdir: the run directory (not part of the ConfigDict; see `workdir_from_run_config`).

  Raises:
    FileNotFoundError / KeyError / ValueError naming the bad file, key or JSON.
  """
  import json

  rc = dict(RUN_CONFIG_DEFAULTS)
  rc.update(dict(run_config or {}))
  arg = str(rc.get("config-arg") or "")
  for k in VARIANT_RUN_CONFIG_KEYS:
    if str(rc.get(k, "")) != "":
      arg = f"{arg},{k}={rc[k]}" if arg else f"{k}={rc[k]}"
  config = load_config_file(str(rc["config-file"]), arg or None)
  overrides = rc.get("overrides") or ""
  if overrides:
    try:
      parsed = json.loads(overrides)
    except json.JSONDecodeError as e:
      raise ValueError(f"run config 'overrides' is not valid JSON: {overrides!r} ({e})") from e
    if not isinstance(parsed, dict):
      raise ValueError(f"run config 'overrides' must be a JSON object, got {overrides!r}")
    for k, v in parsed.items():
      apply_override(config, k, v)
  for k, dotted in FLAT_RUN_CONFIG_KEYS.items():
    v = rc.get(k, "")
    if isinstance(v, str) and v == "":
      continue
    apply_override(config, dotted, _check_flat_type(k, dotted, config, v))
  for k, v in rc.items():
    if k.startswith("override."):
      apply_override(config, k[len("override."):], v)
  return config


def _check_flat_type(key: str, dotted: str, config: ml_collections.ConfigDict, value):
  """`value` as the config field's type: a number for a number (an int field takes whole numbers only).

  Raises:
    KeyError / ValueError naming the run-config key.
  """
  node = config
  for part in dotted.split("."):
    if part not in node:
      raise KeyError(f"run config {key!r}: the config has no key {dotted!r}")
    node = node[part]
  current = node
  if isinstance(current, bool) or isinstance(value, bool):
    ok = isinstance(current, bool) == isinstance(value, bool)
  elif isinstance(current, int):
    ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
  elif isinstance(current, float):
    ok = isinstance(value, (int, float))
  else:
    ok = isinstance(value, type(current))
  if not ok:
    raise ValueError(f"run config {key!r}={value!r}: {dotted} needs a {type(current).__name__}")
  return int(value) if isinstance(current, int) and not isinstance(current, bool) else value


def workdir_from_run_config(run_config, node_config=None) -> str:
  """The run directory: `node_config["workdir"]` (a SuperNode's own, e.g. on another machine) if set, else
  `run_config["workdir"]`; relative paths are made absolute against the process's cwd."""
  import os

  wd = (dict(node_config or {}).get("workdir") or dict(run_config or {}).get("workdir")
        or RUN_CONFIG_DEFAULTS["workdir"])
  return os.path.abspath(os.path.expanduser(str(wd)))
