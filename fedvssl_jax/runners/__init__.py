"""`config.runner` -> the module whose `train_and_evaluate(config, workdir) -> dict` runs the job.

Runner modules are imported only when chosen, so a GOCA run never imports Flower and vice versa.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable

import jax
import ml_collections
from absl import logging

RUNNERS = {
    "supervised": "fedvssl_jax.evaluation.supervised",
    "pretext": "fedvssl_jax.pretext.runner",
    "goca": "fedvssl_jax.goca.runner",
    "federated": "fedvssl_jax.runners.federated",
    "federated_simulation": "fedvssl_jax.federated.simulation",  # rounds only: no data, export or kNN (toy.py)
    "knn": "fedvssl_jax.evaluation.knn",
    "linear_probe": "fedvssl_jax.evaluation.linear_probe",
}


def setup_jax(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Persistent compilation cache, matmul precision, and a log of the devices this process sees."""
  cache_dir = config.get("compilation_cache_dir") or os.path.join(
      os.path.expanduser("~"), ".cache", "fedvssl_jax", "jax_compilation_cache")
  jax.config.update("jax_compilation_cache_dir", cache_dir)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  if config.get("matmul_precision"):
    jax.config.update("jax_default_matmul_precision", config.matmul_precision)
  logging.info("process %d/%d, %d local / %d global devices (%s), workdir %s", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices()[0].platform,
               workdir)


def get_runner(name: str):
  if name not in RUNNERS:
    raise ValueError(f"config.runner: unknown runner {name!r}; known: {', '.join(sorted(RUNNERS))}")
  return importlib.import_module(RUNNERS[name])


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Writes the config into the workdir and runs `config.runner` (after `apply_compute_dtype`)."""
  from fedvssl_jax.config_utils import apply_compute_dtype

  apply_compute_dtype(config)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    config_json = config.to_json_best_effort(indent=2)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
      f.write(config_json)
    from fedvssl_jax.core import metrics as metrics_lib

    metrics_lib.write_config_summary(workdir, config_json)  # hyperparameters beside the curves in TensorBoard
  runner = get_runner(config.runner)
  return runner.train_and_evaluate(config, workdir)


def run_cli(config: ml_collections.ConfigDict, workdir: str, quiet_logs: bool = True,
            on_results: Callable[[dict[str, Any]], None] | None = None) -> int:
  """A command-line run (`fedvssl_jax.main`, scripts/knn_eval.py): `setup_jax`, then `run`.

  Args:
    config: the run's config.
    workdir: where it writes (made if missing).
    quiet_logs: keep the absl log to warnings (Orbax and grain log every save at INFO; progress lines are printed).
    on_results: called with the runner's results after a successful run (e.g. to print a summary).
  Returns:
    The exit status: 0, or 2 after a user error (config, path, permission, disk space, checkpoint, a missing
    optional package), printed to
    stderr as one `error: ...` line. Other exceptions (bugs) propagate with their traceback.
  """
  from fedvssl_jax import preflight
  from fedvssl_jax.errors import UserError, find_missing_dependency, find_user_os_error, os_error_line

  if quiet_logs:
    logging.set_verbosity(logging.WARNING)
  try:
    preflight.check(config, workdir)  # before any compile, Ray start or data read
    setup_jax(config, workdir)
    results = run(config, workdir)
  except UserError as e:
    return _print_error(str(e))
  except Exception as e:  # noqa: BLE001 - only an OSError about the user's paths / disk is turned into one line
    missing = find_missing_dependency(e)  # an optional package this run needs (tfds, simplejpeg, ray, torch)
    if missing is not None:
      return _print_error(missing)
    os_error = find_user_os_error(e)
    if os_error is not None:
      return _print_error(os_error_line(os_error))
    if "No space left on device" in str(e):  # an asynchronous writer (Orbax) that re-raises the text only
      return _print_error(f"{workdir}: no space left on device; free space or choose another --workdir")
    raise
  if on_results is not None:
    on_results(results)
  return 0


def _print_error(message: str) -> int:
  """Prints `error: <message>` as one line on stderr (after the buffered output) and returns exit status 2."""
  sys.stdout.flush()
  print("error: " + " ".join(message.split()), file=sys.stderr, flush=True)
  return 2
