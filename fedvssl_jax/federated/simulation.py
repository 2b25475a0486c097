"""In-process federated simulation: `python -m fedvssl_jax.main --config=configs/fedvssl.py:demo --workdir=DIR`.

Runs the same ServerApp / ClientApp as `flwr run .` and a real deployment, on Flower's simulation engine (Ray), in
this process, through `flwr.simulation.run_simulation`. Flower deprecates it in favour of `flwr run`, but it is the
only in-process path and it is the robust choice here: no background SuperLink that could outlive the run, no
FLWR_HOME / config.toml / FAB, the caller's already-built config is used as is, and errors raised in the ServerApp
propagate to the caller. `flwr run .` (pyproject.toml `[tool.flwr.app]`) remains available; see docs/federated.md.

Ray gets the CPUs this process may use (or `config.federated.ray_num_cpus`); the number of concurrent clients is that
divided by `config.federated.client_resources.num_cpus`.

The config reaches the apps through a run config `{"config-file": <temp JSON of the config>, "workdir": ...}`
bound into the app objects (Ray ships them to its actors), so every client process rebuilds the very same
ConfigDict. `num_supernodes = config.federated.num_clients`; node i gets `partition-id = i`.

Process hygiene: `XLA_PYTHON_CLIENT_PREALLOCATE=false` and a persistent JAX compilation cache are set in the
environment before Ray starts, so the actors inherit them. Ray actors are fresh processes (not forks of this one),
so JAX state in this driver does not leak into them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import warnings
from typing import Any

import ml_collections

CONFIG_SNAPSHOT = "federated_config.json"


def write_config_snapshot(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes `config` as JSON into the workdir (atomically) and returns its path."""
  path = os.path.join(workdir, CONFIG_SNAPSHOT)
  fd, tmp = tempfile.mkstemp(dir=workdir, prefix=".config_", suffix=".json")
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(tmp, path)
  return path


def run_simulation(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the federated pretraining described by `config.federated` with the simulation engine.

  Args:
    config: the experiment config (`config.federated.*`, plus what the local trainer needs).
    workdir: run directory: server/ (resumable state), clients/ (per-client heads), final_global/, tensorboard/,
      federated_metrics.jsonl, federated_summary.json.

  Returns:
    The server summary: {"rounds", "resumed_from", "final_global", "final_global_loss", "num_arrays", ...}.

  Raises:
    UserError: the ServerApp failed on a user error (e.g. too few clients replied in a round: the last finished
      round is on disk and a rerun with the same workdir resumes from it).
    RuntimeError: the simulation ended without a summary.
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  from fedvssl_jax.federated.client_app import make_client_app, setup_process_env

  setup_process_env()
  os.environ.setdefault("RAY_DEDUP_LOGS", "0")
  from input_pipeline.progress import is_terminal

  if not is_terminal(sys.stdout):  # Ray prints the actors' lines with a colour-coded "(ClientAppActor pid=..)" prefix
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")
  fed = config.federated
  num_clients = int(fed.num_clients)
  snapshot = write_config_snapshot(config, workdir)
  summary_path = os.path.join(workdir, "federated_summary.json")
  error_path = os.path.join(workdir, "federated_error.txt")  # server_app.ERROR_FILE (not imported: pulls in Flower)
  for path in (summary_path, error_path):
    if os.path.exists(path):
      os.remove(path)  # written again by the server at the end of this run
  run_config = {"config-file": snapshot, "config-arg": "", "overrides": "", "workdir": workdir}

  from flwr.simulation import run_simulation as flwr_run_simulation

  from fedvssl_jax.federated.server_app import make_server_app

  res = fed.get("client_resources", None)
  resources = {"num_cpus": float(res.get("num_cpus", 1)) if res else 1.0,
               "num_gpus": float(res.get("num_gpus", 0.0)) if res else 0.0}
  try:
    cpus = len(os.sched_getaffinity(0))  # the CPUs this process may use (cgroup / taskset aware)
  except AttributeError:
    cpus = os.cpu_count() or 1
  cpus = int(fed.get("ray_num_cpus", 0) or cpus)
  backend_config = {"client_resources": resources, "init_args": {"include_dashboard": False, "num_cpus": cpus}}
  from absl import logging as absl_logging

  from fedvssl_jax.errors import UserError

  # Quiet command-line runs (absl verbosity below INFO, `fedvssl_jax.main` without --verbosity): Flower's own log
  # repeats every failing client's traceback several times; the strategy logs each failure as one warning line.
  flwr_logger = logging.getLogger("flwr")
  saved_level = flwr_logger.level
  if absl_logging.get_verbosity() < absl_logging.INFO:
    flwr_logger.setLevel(logging.CRITICAL)
  try:
    with warnings.catch_warnings():
      # Ray starts its processes with subprocess (fork + exec at once): JAX's fork warning is about a forked child
      # that keeps running Python with JAX's threads gone, which never happens here.
      warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning,
                              module="subprocess")
      # Ray's tip that a future version will stop hiding GPUs from actors with num_gpus=0: the clients rely on
      # today's behaviour (client_resources.num_gpus=0 clients stay off the GPU) and nothing here can opt in yet.
      warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
      flwr_run_simulation(server_app=make_server_app(run_config), client_app=make_client_app(run_config),
                          num_supernodes=num_clients, backend_config=backend_config)
  except Exception as e:
    if os.path.isfile(error_path):  # a user error in the ServerApp (too few replies, a mismatched server state)
      with open(error_path, encoding="utf-8") as f:
        raise UserError(f.read()) from e
    raise
  finally:
    flwr_logger.setLevel(saved_level)
  if os.path.isfile(error_path):  # the engine logged the ServerApp's error instead of raising it
    with open(error_path, encoding="utf-8") as f:
      raise UserError(f.read())
  if not os.path.isfile(summary_path):
    raise RuntimeError(f"the federated simulation ended without writing {summary_path}; see the log above")
  with open(summary_path, encoding="utf-8") as f:
    return json.load(f)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """`config.runner = "federated"` entry point used by `fedvssl_jax.main`."""
  return run_simulation(config, workdir)
