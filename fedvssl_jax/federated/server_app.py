"""The Flower ServerApp (message API): R rounds of FedVSSL / FedAvg, resumable from `<workdir>/server/`.

`app` is the module attribute named in pyproject.toml; `make_server_app(run_config)` builds one with fixed run
config defaults for the in-process simulation. `run_server(grid, config, workdir)` is the whole server loop:

  global = stored global of the last finished round, or trainer.initial_arrays() (round 0)
  for r in last_finished + 1 .. R:
    sample clients, send (global, {"server-round", "local-epochs", "mode"}), wait (round timeout)
    aggregate (strategy.FedVSSLStrategy), save the server state (atomic, waited for), log metrics
  save <workdir>/final_global/ and export the backbone(s) to <workdir>/export/ (the local trainer's `export`, if any)

Metrics per round go to stdout, TensorBoard (`<workdir>/tensorboard`, tags `federated/...`) and one JSON object per
round in `<workdir>/federated_metrics.jsonl` (per-client loss, examples, time, weight, failures; global loss).
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Mapping

import ml_collections
import numpy as np
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from fedvssl_jax.errors import UserError
from fedvssl_jax.federated import server_state
from fedvssl_jax.federated.arrays import flat_to_arrayrecord, to_float32
from fedvssl_jax.federated.local_trainer import (config_from_run_config, make_local_trainer,
                                                 workdir_from_run_config)
from fedvssl_jax.federated.strategy import FedVSSLStrategy, RoundReport, short_error
from fedvssl_jax.core.metrics import dumps_strict, truncate_jsonl

logger = logging.getLogger(__name__)

METRICS_FILE = "federated_metrics.jsonl"
ERROR_FILE = "federated_error.txt"  # the ServerApp's user error, re-raised by `simulation.run_simulation`


class FederatedRoundError(UserError, RuntimeError):
  """A round without enough usable client replies; the last finished round is on disk."""


class RoundLogger:
  """Per-round metrics to stdout, TensorBoard and `<workdir>/federated_metrics.jsonl` (appended on resume)."""

  def __init__(self, workdir: str, num_rounds: int, start_round: int = 0):
    from tensorboardX import SummaryWriter

    os.makedirs(workdir, exist_ok=True)
    self.num_rounds = num_rounds
    path = os.path.join(workdir, METRICS_FILE)
    # Rounds after the saved server state were logged by an interrupted run and are run (and logged) again.
    truncate_jsonl(path, "round", start_round)
    self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), filename_suffix=".federated")  # see MetricWriter
    self.jsonl = open(path, "a", encoding="utf-8")

  def log(self, report: RoundReport, round_time_s: float, server_times_s: dict[str, float] | None = None
          ) -> dict[str, Any]:
    r = report.server_round
    clients = [{"partition_id": c.partition_id, "node_id": c.node_id, "loss": c.loss,
                "num_examples": c.num_examples, "train_time_s": float(c.metrics.get("train-time-s", float("nan"))),
                "weight": w} for c, w in zip(report.aggregated, report.weights)]
    entry = {
        "round": r, "time": time.time(), "round_time_s": round_time_s, "global_loss": report.global_loss,
        "total_examples": report.total_examples, "num_aggregated": len(report.aggregated),
        "num_failed": len(report.failed), "num_dropped": len(report.dropped), "clients": clients,
        "failed": [{"partition_id": c.partition_id, "node_id": c.node_id, "error": short_error(c.error, 2000)}
                   for c in report.failed],
        "dropped": [{"partition_id": c.partition_id, "node_id": c.node_id, "error": c.error} for c in report.dropped],
    }
    if server_times_s:  # the server's parts of the round: sampling (waiting for nodes), sending + waiting for
      # the replies, aggregating, saving its state
      entry["server_times_s"] = dict(server_times_s)
    self.jsonl.write(dumps_strict(entry, default=float) + "\n")
    self.jsonl.flush()
    self.tb.add_scalar("federated/global_loss", report.global_loss, r)
    self.tb.add_scalar("federated/round_time_s", round_time_s, r)
    self.tb.add_scalar("federated/num_aggregated", len(report.aggregated), r)
    self.tb.add_scalar("federated/num_failed", len(report.failed) + len(report.dropped), r)
    for c in clients:
      self.tb.add_scalar(f"federated/client_{c['partition_id']}/loss", c["loss"], r)
      self.tb.add_scalar(f"federated/client_{c['partition_id']}/train_time_s", c["train_time_s"], r)
    self.tb.flush()
    per_client = " ".join(f"c{c['partition_id']}:loss={c['loss']:.4f},n={c['num_examples']},"
                          f"t={c['train_time_s']:.1f}s" for c in clients)
    faults = ""
    if report.failed or report.dropped:
      faults = f" | failed {[c.partition_id for c in report.failed]} dropped {[c.partition_id for c in report.dropped]}"
    print(f"[federated] round {r}/{self.num_rounds} | global_loss {report.global_loss:.4f} | "
          f"{len(report.aggregated)} clients, {report.total_examples} examples | {round_time_s:.1f}s | "
          f"{per_client}{faults}", flush=True)
    return entry

  def close(self) -> None:
    self.tb.close()
    self.jsonl.close()


def _check_resume(stored: Mapping[str, Any], current: Mapping[str, Any]) -> None:
  keys = ("mode", "alpha", "beta", "ema_factor", "mix_coeff", "sampling_seed")
  diff = {k: (stored.get(k), current.get(k)) for k in keys if stored.get(k) != current.get(k)}
  if diff:
    raise server_state.ServerStateError(
        "the workdir's server state was written with a different aggregation config (stored, now): "
        f"{diff}; use a new workdir or the same config.federated")


def send_and_receive(grid: Grid, messages, *, timeout: float, server_round: int, num_rounds: int,
                     progress_every_s: float = 5.0, poll_s: float = 0.2) -> list:
  """`grid.send_and_receive` with progress: pushes `messages`, pulls replies every `poll_s` seconds (Flower's own
  loop sleeps 3 s between pulls) until all have replied or `timeout` seconds passed, and prints
  "[federated] round r/R: k/n clients replied, t s" on each reply and every `progress_every_s` seconds."""
  t0 = time.monotonic()
  pending = set(grid.push_messages(messages))
  n = len(pending)
  replies: list = []
  last_log = 0.0
  while pending:
    got = list(grid.pull_messages(pending))
    if got:
      replies.extend(got)
      pending.difference_update({m.metadata.reply_to_message_id for m in got})
    elapsed = time.monotonic() - t0
    if got or elapsed - last_log >= progress_every_s:
      print(f"[federated] round {server_round}/{num_rounds}: {len(replies)}/{n} clients replied, {elapsed:.1f}s",
            flush=True)
      last_log = elapsed
    if not pending:
      break
    if elapsed >= timeout:
      print(f"[federated] round {server_round}/{num_rounds}: {len(pending)} of {n} clients did not reply within "
            f"{timeout:.0f}s (config.federated.round_timeout_s)", flush=True)
      break
    time.sleep(poll_s)
  return replies


def run_server(grid: Grid, config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) the federated rounds; returns {"rounds": R, "resumed_from": r0, "final_global": path, ...}."""
  fed = config.federated
  num_rounds = int(fed.num_rounds)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  strategy = FedVSSLStrategy.from_config(config, num_nodes=int(fed.get("num_clients", 0)) or None)
  strategy.summary()
  trainer = make_local_trainer(config)  # round 0's model, and the export at the end
  state = server_state.load_server_state(workdir)
  if state is not None:
    _check_resume(state.meta.get("strategy", {}), strategy.strategy_config())
    start_round = state.round
    global_arrays = state.global_arrays
    strategy.import_state(state.strategy_arrays)
    print(f"[federated] resuming from {server_state.server_dir(workdir)}: round {start_round} finished", flush=True)
  else:
    start_round = 0
    global_arrays = {k: to_float32(k, v) for k, v in trainer.initial_arrays().items()}
  strategy.set_global(global_arrays, has_history=start_round > 0)
  local_epochs = int(fed.get("local_epochs", 1))
  timeout = float(fed.get("round_timeout_s", 3600.0))
  history = []
  round_logger = RoundLogger(workdir, num_rounds, start_round) if start_round < num_rounds else None
  global_record = flat_to_arrayrecord(global_arrays) if start_round < num_rounds else None
  try:
    for rnd in range(start_round + 1, num_rounds + 1):
      t0 = time.time()
      train_config = ConfigRecord({"local-epochs": local_epochs})
      messages = strategy.configure_train(rnd, global_record, train_config, grid)
      t_send = time.time()
      replies = send_and_receive(grid, messages, timeout=timeout, server_round=rnd, num_rounds=num_rounds,
                                 progress_every_s=float(fed.get("progress_every_s", 5.0)))
      t_agg = time.time()
      # The aggregate, already serialised by the strategy: sent as is in the next round.
      global_record, _ = strategy.aggregate_train(rnd, replies)
      t_save = time.time()
      report = strategy.last_report
      if global_record is None:
        if report is not None:
          round_logger.log(report, time.time() - t0)
        errors = sorted({short_error(c.error) for c in (report.failed + report.dropped)}) if report else []
        raise FederatedRoundError(f"round {rnd}: only {len(report.aggregated) if report else 0} usable client replies "
                           f"(errors: {errors}); need "
                           f"{strategy.min_train_nodes} (config.federated.min_train_nodes). "
                           + (f"The last finished round ({rnd - 1}) is saved in {server_state.server_dir(workdir)}; "
                              "rerun with the same workdir to resume." if rnd > 1 else "No round finished."))
      previous = strategy.previous_global
      global_arrays = strategy.current_global
      server_state.save_server_state(workdir, server_state.ServerState(
          round=rnd, global_arrays=global_arrays, previous=previous, strategy_arrays=strategy.export_state(),
          meta={"strategy": strategy.strategy_config(), "num_rounds": num_rounds,
                "global_loss": report.global_loss if math.isfinite(report.global_loss) else None}))
      t_end = time.time()
      history.append(round_logger.log(report, t_end - t0, {"configure": t_send - t0, "send_and_receive": t_agg - t_send,
                                                            "aggregate": t_save - t_agg,
                                                            "save": t_end - t_save}))
  finally:
    if round_logger is not None:
      round_logger.close()
  final = server_state.save_final_global(workdir, global_arrays)
  print(f"[federated] done: {num_rounds} rounds, final global model in {final}", flush=True)
  export = getattr(trainer, "export", None)  # optional: a trainer without an exportable backbone has none
  exported = export(global_arrays, workdir) if export is not None else None
  if exported:
    print(f"[federated] exported backbone(s): {', '.join(exported.values())}", flush=True)
  return {"rounds": num_rounds, "resumed_from": start_round, "final_global": final, "export": exported,
          "history": history,
          "final_global_loss": history[-1]["global_loss"] if history else None,
          "num_arrays": len(global_arrays), "num_params": int(sum(np.size(v) for v in global_arrays.values()))}


def make_server_app(run_config: Mapping[str, Any] | None = None) -> ServerApp:
  """A ServerApp whose run config is `run_config` updated by the run's own `context.run_config`."""
  defaults = dict(run_config or {})
  app = ServerApp()

  @app.main()
  def main(grid: Grid, context: Context) -> None:  # pylint: disable=unused-variable
    rc = dict(defaults)
    rc.update(dict(context.run_config or {}))
    config = config_from_run_config(rc)
    workdir = workdir_from_run_config(rc)
    try:
      summary = run_server(grid, config, workdir)
    except UserError as e:  # the simulation engine may re-raise it as another type: keep the message on disk
      with open(os.path.join(workdir, ERROR_FILE), "w", encoding="utf-8") as f:
        f.write(str(e))
      raise
    with open(os.path.join(workdir, "federated_summary.json"), "w", encoding="utf-8") as f:
      f.write(dumps_strict({k: v for k, v in summary.items() if k != "history"}, indent=2, default=float))

  return app


app = make_server_app()
