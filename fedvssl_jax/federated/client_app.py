"""The Flower ClientApp (message API): one FedVSSL client round per `train` message.

`app` is the module attribute named in pyproject.toml (`flwr run .`, deployment); `make_client_app(run_config)`
builds one with fixed run-config defaults for the in-process simulation. The client's partition comes from
`context.node_config["partition-id"]` (set by the simulation engine, or `flower-supernode --node-config
"partition-id=3"`), its experiment config from `context.run_config` (`config_from_run_config`), and its workdir from
`node_config["workdir"]` or `run_config["workdir"]`.

A round (`client_round`):
  fedvssl, flower_baseline: start = stored local model of the client (its last round; on first participation the
           trainer's initial model) with only the `backbone/` arrays replaced by the global ones; train E epochs;
           store the new local model (`client_state`); reply with the full model.
  fedavg:  start = the whole global model; train; reply (nothing stored).
Exceptions propagate: Flower turns them into an error reply, which the strategy reports and skips.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from typing import Any, Mapping

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedvssl_jax.federated import client_state
from fedvssl_jax.federated.arrays import arrayrecord_to_flat, check_finite, flat_to_arrayrecord, merge_backbone
from fedvssl_jax.federated.local_trainer import (LocalResult, LocalTrainer, config_from_run_config,
                                                 make_local_trainer, workdir_from_run_config)

logger = logging.getLogger(__name__)

_TRAINERS: dict[str, tuple[Any, LocalTrainer]] = {}
_LOCK = threading.Lock()
# Seconds spent by the last `train` call of this process, by part ("config", "decode", "trainer", "state-load",
# "train", "state-save", "encode"): the warm worker (one task at a time) logs them to show where a round's time
# outside training goes. Diagnostics only: clients training in threads of one process overwrite each other's.
LAST_TIMES: dict[str, float] = {}


class _DropRunSimulationNotice(logging.Filter):
  """Drops Flower's "DEPRECATED FEATURE: The `run_simulation` function is deprecated" record: the in-process
  simulation uses it on purpose (the only in-process path; `fedvssl_jax/federated/simulation.py` says why), and
  `flwr run .` is documented in docs/federated.md."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not any("`run_simulation` function is deprecated" in str(a) for a in (record.args or ()))


def configure_flower_logging() -> None:
  """Each Flower log line once, colour codes only on a terminal, without the `run_simulation` notice (idempotent).

  Flower's "flwr" logger has its own console handler and also propagates to the root logger, where absl's handler
  (the driver) or Ray's default handler (the actors) printed every record a second time.
  """
  from flwr.common.logger import update_console_handler

  from input_pipeline.progress import is_terminal

  flwr_logger = logging.getLogger("flwr")
  flwr_logger.propagate = False
  update_console_handler(colored=is_terminal(sys.stderr))
  if not any(isinstance(f, _DropRunSimulationNotice) for f in flwr_logger.filters):
    flwr_logger.addFilter(_DropRunSimulationNotice())


def setup_process_env() -> None:
  """Settings for a process that may train: no GPU preallocation (several actors share a GPU), a persistent JAX
  compilation cache (rounds and re-spawned client processes do not recompile), absl flags marked parsed (Flower's
  client processes have no absl `main`, and grain reads its flags)."""
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "fedvssl_jax", "jax_compilation_cache")
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", cache)
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
  from absl import flags

  if not flags.FLAGS.is_parsed():  # client processes have no absl main; grain reads its flags (grain#1355)
    flags.FLAGS.mark_as_parsed()

  configure_flower_logging()
  if "jax" in sys.modules:  # already imported: env vars are read at import time only
    jax = sys.modules["jax"]
    try:
      if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache)
    except Exception:  # pylint: disable=broad-except
      pass


def get_trainer(config) -> LocalTrainer:
  """The local trainer for `config`, cached per process (a Ray actor serves many rounds and clients)."""
  key = config.to_json_best_effort(sort_keys=True)
  with _LOCK:
    if key not in _TRAINERS:
      _TRAINERS.clear()
      _TRAINERS[key] = (config, make_local_trainer(config))
    return _TRAINERS[key][1]


def client_round(trainer: LocalTrainer, partition_id: int, global_arrays: Mapping[str, np.ndarray], *, mode: str,
                 server_round: int, local_epochs: int, workdir: str) -> LocalResult:
  """One client's round (see the module docstring); returns the trainer's result with "train-time-s" added.

  Raises:
    ValueError: unknown mode, or the trainer returned arrays with other keys/shapes than it was given.
    client_state.ClientStateError: the client's stored state is unreadable.
  """
  if mode not in ("fedavg", "fedvssl", "flower_baseline"):
    raise ValueError(f"unknown federated mode {mode!r} (fedavg | fedvssl | flower_baseline)")
  backbone_only = mode != "fedavg"  # the Flower baseline's clients also load only the backbone
  global_arrays = dict(global_arrays)
  t_load = time.time()
  if backbone_only:
    stored = client_state.load_client_state(workdir, partition_id, before_round=server_round)
    local = stored[0] if stored is not None else trainer.initial_arrays()
    start = merge_backbone(local, global_arrays)
  else:
    start = global_arrays
  t0 = time.time()
  LAST_TIMES["state-load"] = t0 - t_load
  result = trainer.train(partition_id, start, server_round=server_round, local_epochs=local_epochs,
                         workdir=client_state.client_scratch_dir(workdir, partition_id))
  elapsed = time.time() - t0
  missing = set(start) ^ set(result.arrays)
  if missing:
    raise ValueError(f"local trainer returned arrays with different keys than it was given: {sorted(missing)[:5]}")
  for k, v in result.arrays.items():
    if np.shape(v) != np.shape(start[k]):
      raise ValueError(f"local trainer changed the shape of {k!r}: {np.shape(start[k])} -> {np.shape(v)}")
  LAST_TIMES["train"] = elapsed
  t_save = time.time()
  finite = math.isfinite(result.mean_loss) and check_finite(result.arrays) is None
  if backbone_only:
    if finite:
      client_state.save_client_state(workdir, partition_id, server_round, result.arrays,
                                     meta={"loss": float(result.mean_loss), "num_examples": int(result.num_examples)})
    else:
      logger.warning("client %d round %d: non-finite result, local state not updated", partition_id, server_round)
  LAST_TIMES["state-save"] = time.time() - t_save
  metrics = dict(result.metrics)
  metrics["train-time-s"] = elapsed
  return LocalResult(arrays=result.arrays, num_examples=int(result.num_examples), mean_loss=float(result.mean_loss),
                     metrics=metrics)


def _merged_run_config(defaults: Mapping[str, Any] | None, context: Context) -> dict[str, Any]:
  rc = dict(defaults or {})
  rc.update(dict(context.run_config or {}))
  return rc


def _partition_id(context: Context) -> int:
  node_config = dict(context.node_config or {})
  if "partition-id" not in node_config:
    raise KeyError("node config has no 'partition-id' (start the SuperNode with --node-config \"partition-id=N\")")
  return int(node_config["partition-id"])


def make_client_app(run_config: Mapping[str, Any] | None = None) -> ClientApp:
  """A ClientApp whose run config is `run_config` updated by the run's own `context.run_config`."""
  defaults = dict(run_config or {})
  app = ClientApp()

  @app.query()
  def query(msg: Message, context: Context) -> Message:  # pylint: disable=unused-variable
    """Reports the node's partition id (used by the server to sample partitions reproducibly)."""
    pid = _partition_id(context)
    return Message(content=RecordDict({"metrics": MetricRecord({"partition-id": pid})}), reply_to=msg)

  @app.train()
  def train(msg: Message, context: Context) -> Message:  # pylint: disable=unused-variable
    LAST_TIMES.clear()
    t = time.time()
    rc = _merged_run_config(defaults, context)
    setup_process_env()
    workdir = workdir_from_run_config(rc, context.node_config)
    config = config_from_run_config(rc)
    pid = _partition_id(context)
    round_config: ConfigRecord = msg.content.config_records.get("config") or ConfigRecord()
    server_round = int(round_config.get("server-round", 0))
    local_epochs = int(round_config.get("local-epochs", config.federated.get("local_epochs", 1)))
    mode = str(round_config.get("mode", config.federated.get("strategy", "fedvssl")))
    LAST_TIMES["config"] = time.time() - t
    t = time.time()
    global_arrays = arrayrecord_to_flat(msg.content.array_records["arrays"])
    LAST_TIMES["decode"] = time.time() - t
    t = time.time()
    trainer = get_trainer(config)
    LAST_TIMES["trainer"] = time.time() - t  # the first round builds it (model, data records); cached after
    result = client_round(trainer, pid, global_arrays, mode=mode, server_round=server_round,
                          local_epochs=local_epochs, workdir=workdir)
    metrics: dict[str, Any] = {"num-examples": int(result.num_examples), "loss": float(result.mean_loss),
                               "partition-id": pid}
    for k, v in result.metrics.items():
      name = k if k == "train-time-s" else f"trainer.{k}"
      try:
        metrics[name] = float(v)
      except (TypeError, ValueError):
        logger.warning("dropping non-scalar trainer metric %r=%s", k, json.dumps(v, default=str)[:80])
    t = time.time()
    content = RecordDict({"arrays": flat_to_arrayrecord(result.arrays), "metrics": MetricRecord(metrics)})
    LAST_TIMES["encode"] = time.time() - t
    return Message(content=content, reply_to=msg)

  return app


app = make_client_app()
