"""The FedVSSL strategy: Flower's message-API `FedAvg` with FedVSSL aggregation, partition-seeded sampling and fault
handling.

Modes (`config.federated.strategy`):
  fedavg   full-model FedAvg; clients load the whole global model (the original `main.py`).
  fedvssl  FedVSSL(alpha, beta): `aggregate.fedvssl_aggregate` on the full uploaded models; clients overwrite only
           their `backbone/` keys and keep their head (alpha = 0, beta = 0 is the "FedAvg-backbone-only" variant).
  flower_baseline  reproduces the Flower baseline's buggy aggregation (`aggregate.flower_baseline_aggregate`,
           `mix_coeff`, beta as its `swbeta`): the model the clients receive is the first N arrays of its 2N-array
           list, keyed in the clients' key order; the 2N list is kept (and checkpointed) for its averaging. Clients
           behave as in fedvssl (backbone-only update). Only for reproducing that baseline's numbers.

Sampling: when every connected node takes part (max(int(fraction_train * N), min_train_nodes) >= N), all are sent
the round; otherwise the server learns each node's `partition-id` with one `query` message (cached), then samples
`max(int(fraction_train * N), min_train_nodes)` partitions with `np.random.default_rng([sampling_seed, round])`, so
round r samples the same clients in an interrupted-and-resumed run as in an uninterrupted one, whatever the
(random) Flower node ids are.

Faults: a reply carrying an error (the client raised, could not load, ...) or no reply before the round timeout
(dead node) is logged and skipped; a reply whose loss or any array is non-finite is dropped from the aggregate
with a warning; the round is aggregated if at least `min_train_nodes` clients remain, else `aggregate_train`
returns `(None, metrics)` and the server app stops with an error (its last finished round stays on disk).

Clients reply `RecordDict({"arrays": ArrayRecord(flat model), "metrics": MetricRecord({"num-examples": n_k,
"loss": L_k, "partition-id": p, "train-time-s": t, "trainer.<name>": ...})})`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable
from typing import Any

import ml_collections
import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from fedvssl_jax.federated import aggregate
from fedvssl_jax.federated.arrays import arrayrecord_to_flat, check_finite, flat_to_arrayrecord

logger = logging.getLogger(__name__)

MODES = ("fedavg", "fedvssl", "flower_baseline")
ARRAYS_KEY = "arrays"
CONFIG_KEY = "config"
METRICS_KEY = "metrics"


@dataclasses.dataclass
class ClientReply:
  """One client's reply to a training message, decoded (or the reason it is unusable).

  Attributes:
    node_id: Flower node id.
    partition_id: the client's data partition (-1 if unknown).
    arrays: the uploaded full model (flat float32), None on error.
    num_examples: n_k.
    loss: L_k, the mean local training loss.
    metrics: every scalar the client reported.
    error: why the reply is unusable (None when it is fine).
  """
  node_id: int
  partition_id: int = -1
  arrays: dict[str, np.ndarray] | None = None
  num_examples: int = 0
  loss: float = float("nan")
  metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
  error: str | None = None


def short_error(reason: str | None, limit: int = 300) -> str:
  """The last meaningful line of an error reason (Flower forwards whole remote tracebacks), at most `limit` chars."""
  if not reason:
    return ""
  lines = [l.strip() for l in str(reason).replace("\\n", "\n").splitlines() if l.strip()]
  text = next((l for l in reversed(lines) if "Error" in l or "Exception" in l), lines[-1] if lines else "")
  return text if len(text) <= limit else text[:limit] + "..."


@dataclasses.dataclass
class RoundReport:
  """What happened in one round (also written to the metrics files by the server app)."""
  server_round: int
  aggregated: list[ClientReply]
  failed: list[ClientReply]
  dropped: list[ClientReply]
  weights: list[float]
  global_loss: float
  total_examples: int


def decode_reply(msg: Message, partitions: dict[int, int] | None = None) -> ClientReply:
  """Turns a Flower reply message into a `ClientReply` (errors included, never raises)."""
  node_id = int(msg.metadata.src_node_id)
  pid = (partitions or {}).get(node_id, -1)
  if msg.has_error():
    return ClientReply(node_id=node_id, partition_id=pid, error=f"client error: {msg.error.reason}")
  try:
    content = msg.content
    record = content.array_records.get(ARRAYS_KEY) or next(iter(content.array_records.values()))
    metrics = dict(content.metric_records.get(METRICS_KEY) or next(iter(content.metric_records.values())))
    arrays = arrayrecord_to_flat(record)
    pid = int(metrics.get("partition-id", pid))
    return ClientReply(node_id=node_id, partition_id=pid, arrays=arrays, num_examples=int(metrics["num-examples"]),
                       loss=float(metrics["loss"]), metrics=metrics)
  except Exception as e:  # pylint: disable=broad-except
    return ClientReply(node_id=node_id, partition_id=pid, error=f"malformed reply: {type(e).__name__}: {e}")


class FedVSSLStrategy(FedAvg):
  """`flwr.serverapp.strategy.FedAvg` with FedVSSL aggregation (see the module docstring).

  Args:
    mode: "fedavg", "fedvssl" or "flower_baseline".
    alpha: weight of the loss-based average (fedvssl).
    beta: 0 or 1, average with the previous global model (fedvssl).
    ema_factor: weight of the new aggregate when beta == 1 (0.5 in the paper).
    mix_coeff: the Flower baseline's coefficient (flower_baseline mode only).
    fraction_train: fraction of the connected nodes sampled per round.
    min_train_nodes: minimum sampled nodes and minimum usable replies for a round to be aggregated.
    min_available_nodes: nodes that must be connected before sampling.
    sampling_seed: seed of the per-round partition sampling.
    wait_timeout_s: how long to wait for `min_available_nodes` nodes / partition-id replies before failing.
    log_every_s: seconds between "waiting for N nodes (k connected)" lines while waiting.
  """

  def __init__(self, *, mode: str = "fedvssl", alpha: float = 0.0, beta: int = 0, ema_factor: float = 0.5,
               mix_coeff: float = 0.9,
               fraction_train: float = 1.0, min_train_nodes: int = 2, min_available_nodes: int = 2,
               sampling_seed: int = 0, wait_timeout_s: float = 600.0, log_every_s: float = 5.0):
    if mode not in MODES:
      raise ValueError(f"config.federated.strategy: unknown mode {mode!r}; known: {', '.join(MODES)}")
    if not 0.0 < fraction_train <= 1.0:
      raise ValueError(f"config.federated.fraction_train must be in (0, 1], got {fraction_train}")
    if int(beta) not in (0, 1):
      raise ValueError(f"config.federated.beta must be 0 or 1, got {beta}")
    if not 0.0 <= alpha <= 1.0:
      raise ValueError(f"config.federated.alpha must be in [0, 1], got {alpha}")
    super().__init__(fraction_train=fraction_train, fraction_evaluate=0.0, min_train_nodes=min_train_nodes,
                     min_evaluate_nodes=0, min_available_nodes=min_available_nodes)
    self.mode = mode
    self.alpha = float(alpha)
    self.beta = int(beta)
    self.ema_factor = float(ema_factor)
    self.mix_coeff = float(mix_coeff)
    self.baseline_previous: list[np.ndarray] | None = None  # flower_baseline: its previous 2N-array list
    self.sampling_seed = int(sampling_seed)
    self.wait_timeout_s = float(wait_timeout_s)
    self.log_every_s = float(log_every_s)
    self.previous_global: dict[str, np.ndarray] | None = None  # global after the last round (beta averaging)
    self.current_global: dict[str, np.ndarray] | None = None
    self.partitions: dict[int, int] = {}  # node id -> partition id
    self.sent: dict[int, list[int]] = {}  # round -> node ids sent a train message
    self.last_report: RoundReport | None = None

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, num_nodes: int | None = None) -> "FedVSSLStrategy":
    """Builds the strategy from `config.federated` (see docs/federated.md for the keys)."""
    f = config.federated
    min_available = int(f.get("min_available_nodes", 0) or 0)
    if min_available <= 0:
      min_available = num_nodes or int(f.get("min_train_nodes", 2))
    return cls(mode=f.get("strategy", "fedvssl"), alpha=float(f.get("alpha", 0.0)), beta=int(f.get("beta", 0)),
               ema_factor=float(f.get("ema_factor", 0.5)), mix_coeff=float(f.get("mix_coeff", 0.9)),
               fraction_train=float(f.get("fraction_train", 1.0)),
               min_train_nodes=int(f.get("min_train_nodes", 2)), min_available_nodes=min_available,
               sampling_seed=int(f.get("sampling_seed", 0)), wait_timeout_s=float(f.get("wait_timeout_s", 600.0)),
               log_every_s=float(f.get("progress_every_s", 5.0)))

  def strategy_config(self) -> dict[str, Any]:
    """The aggregation settings a resumed run must share (stored with the server state)."""
    return {"mode": self.mode, "alpha": self.alpha, "beta": self.beta, "ema_factor": self.ema_factor,
            "mix_coeff": self.mix_coeff,
            "fraction_train": self.fraction_train, "min_train_nodes": self.min_train_nodes,
            "sampling_seed": self.sampling_seed}

  def summary(self) -> None:
    logger.info("FedVSSLStrategy %s", self.strategy_config())

  # --- sampling -------------------------------------------------------------------------------------------------

  def _wait_for_nodes(self, grid) -> list[int]:
    """The connected node ids once at least `min_available_nodes` are; prints "waiting for N nodes (k connected)"
    every `log_every_s` seconds while it waits (to stdout, which `flwr run --stream` shows)."""
    t0 = time.monotonic()
    last_log = -math.inf
    while True:
      nodes = sorted(int(n) for n in grid.get_node_ids())
      if len(nodes) >= self.min_available_nodes:
        if last_log > -math.inf:
          print(f"[federated] {len(nodes)} nodes connected after {time.monotonic() - t0:.0f}s", flush=True)
        return nodes
      elapsed = time.monotonic() - t0
      if elapsed > self.wait_timeout_s:
        raise TimeoutError(f"only {len(nodes)} nodes connected after {self.wait_timeout_s:.0f}s, "
                           f"need {self.min_available_nodes} (config.federated.min_available_nodes, "
                           "config.federated.wait_timeout_s)")
      if elapsed - last_log >= self.log_every_s:
        print(f"[federated] waiting for {self.min_available_nodes} nodes ({len(nodes)} connected), "
              f"{elapsed:.0f}s of {self.wait_timeout_s:.0f}s", flush=True)
        last_log = elapsed
      time.sleep(0.5)

  def _learn_partitions(self, grid, nodes: list[int]) -> None:
    unknown = [n for n in nodes if n not in self.partitions]
    if not unknown:
      return
    messages = [Message(content=RecordDict({CONFIG_KEY: ConfigRecord({"query": "partition-id"})}),
                        message_type=MessageType.QUERY, dst_node_id=n) for n in unknown]
    for reply in grid.send_and_receive(messages, timeout=self.wait_timeout_s):
      node = int(reply.metadata.src_node_id)
      if reply.has_error():
        logger.warning("node %d did not report its partition id: %s", node, reply.error.reason)
        continue
      metrics = next(iter(reply.content.metric_records.values()))
      self.partitions[node] = int(metrics["partition-id"])
    by_pid: dict[int, list[int]] = {}
    for node, pid in self.partitions.items():
      by_pid.setdefault(pid, []).append(node)
    for pid, ns in by_pid.items():
      if len(ns) > 1:
        logger.warning("partition %d is served by several nodes %s; sampling uses one of them", pid, ns)

  def sample_partitions(self, server_round: int, available: list[int]) -> list[int]:
    """The partitions sampled in `server_round` among `available` (sorted), reproducible from the seed."""
    available = sorted(set(available))
    k = max(int(len(available) * self.fraction_train), self.min_train_nodes)
    k = min(k, len(available))
    rng = np.random.default_rng([self.sampling_seed, int(server_round)])
    return sorted(int(available[i]) for i in rng.choice(len(available), size=k, replace=False))

  def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid) -> Iterable[Message]:
    """Samples the round's clients by partition id and sends each the global model and the round config."""
    nodes = self._wait_for_nodes(grid)
    # Partition ids are asked once per node (cached), also when every node takes part: a client that fails or dies
    # in its first round is then reported by its partition, not as -1.
    self._learn_partitions(grid, nodes)
    if max(int(len(nodes) * self.fraction_train), self.min_train_nodes) >= len(nodes):
      node_ids = nodes
      logger.info("round %d: all %d nodes take part", server_round, len(nodes))
    else:
      node_of = {}
      for node in nodes:  # the lowest node id serving a partition
        pid = self.partitions.get(node)
        if pid is not None and pid not in node_of:
          node_of[pid] = node
      chosen = self.sample_partitions(server_round, list(node_of))
      node_ids = [node_of[p] for p in chosen]
      logger.info("round %d: sampled partitions %s of %d", server_round, chosen, len(node_of))
    config["server-round"] = server_round
    config["mode"] = self.mode
    record = RecordDict({ARRAYS_KEY: arrays, CONFIG_KEY: config})
    self.sent[server_round] = node_ids
    return self._construct_messages(record, node_ids, MessageType.TRAIN)

  # --- aggregation ----------------------------------------------------------------------------------------------

  def aggregate_train(self, server_round: int, replies: Iterable[Message]
                      ) -> tuple[ArrayRecord | None, MetricRecord | None]:
    """Decodes the replies, reports dead clients, and aggregates with `aggregate_replies`."""
    decoded = [decode_reply(m, self.partitions) for m in replies]
    for r in decoded:
      if r.partition_id >= 0:
        self.partitions.setdefault(r.node_id, r.partition_id)
    got = {r.node_id for r in decoded}
    for node in self.sent.get(server_round, []):
      if node not in got:
        decoded.append(ClientReply(node_id=node, partition_id=self.partitions.get(node, -1),
                                   error="no reply before the round timeout (node dead or too slow)"))
    new_global, metrics = self.aggregate_replies(server_round, decoded)
    return (flat_to_arrayrecord(new_global) if new_global is not None else None), MetricRecord(metrics)

  def aggregate_replies(self, server_round: int, replies: list[ClientReply]
                        ) -> tuple[dict[str, np.ndarray] | None, dict[str, Any]]:
    """Aggregates decoded replies; updates `previous_global` / `current_global` / `last_report`.

    Returns:
      (new global flat dict or None when fewer than `min_train_nodes` usable replies, round metrics).
    """
    failed = [r for r in replies if r.error is not None]
    usable, dropped = [], []
    for r in replies:
      if r.error is not None:
        logger.warning("round %d: client %d (node %d) failed: %s", server_round, r.partition_id, r.node_id,
                       short_error(r.error, 2000))
        continue
      bad = None if math.isfinite(r.loss) else "loss"
      bad = bad or check_finite(r.arrays or {})
      if bad is not None:
        logger.warning("round %d: dropping client %d (node %d): non-finite %s", server_round, r.partition_id,
                       r.node_id, "loss" if bad == "loss" else f"array {bad!r}")
        r.error = f"non-finite {bad}"
        dropped.append(r)
        continue
      usable.append(r)
    usable.sort(key=lambda r: (r.partition_id, r.node_id))
    metrics: dict[str, Any] = {"num-replies": len(usable), "num-failures": len(failed), "num-dropped": len(dropped)}
    if len(usable) < max(1, self.min_train_nodes):
      logger.error("round %d: only %d usable replies (%d failed, %d dropped), need %d (min_train_nodes)",
                   server_round, len(usable), len(failed), len(dropped), self.min_train_nodes)
      self.last_report = RoundReport(server_round, [], failed, dropped, [], float("nan"), 0)
      return None, metrics
    params = [r.arrays for r in usable]
    n = [r.num_examples for r in usable]
    losses = [r.loss for r in usable]
    if self.mode == "fedavg":
      weights = aggregate.fedavg_weights(n)
      new_global = aggregate.fedavg_aggregate(params, n)
    elif self.mode == "flower_baseline":
      weights = aggregate.fedavg_weights(n)
      keys = list(params[0])
      previous = self.baseline_previous if self.beta == 1 else None
      lst = aggregate.flower_baseline_aggregate(params, n, losses, mix_coeff=self.mix_coeff, swbeta=self.beta,
                                                previous=previous)
      self.baseline_previous = lst
      new_global = dict(zip(keys, lst[:len(keys)]))
    else:
      weights = aggregate.fedvssl_weights(n, losses, self.alpha)
      previous = self.current_global if self.beta == 1 else None
      new_global = aggregate.fedvssl_aggregate(params, n, losses, self.alpha, self.beta, previous_global=previous,
                                               ema_factor=self.ema_factor)
    total = int(sum(n))
    global_loss = float(np.dot(np.asarray(n, np.float64), losses) / max(total, 1))
    self.previous_global = self.current_global
    self.current_global = new_global
    self.last_report = RoundReport(server_round, usable, failed, dropped, [float(w) for w in weights], global_loss,
                                   total)
    metrics.update({
        "global-loss": global_loss,
        "total-examples": total,
        "client-partition": [int(r.partition_id) for r in usable],
        "client-loss": [float(r.loss) for r in usable],
        "client-num-examples": [int(r.num_examples) for r in usable],
        "client-weight": [float(w) for w in weights],
    })
    return new_global, metrics

  def export_state(self) -> dict[str, np.ndarray]:
    """Strategy arrays a resumed run needs besides the global model (flower_baseline: its 2N-array list)."""
    if self.baseline_previous is None:
      return {}
    return {f"baseline/{i:05d}": a for i, a in enumerate(self.baseline_previous)}

  def import_state(self, arrays: dict[str, np.ndarray] | None) -> None:
    """Inverse of `export_state`."""
    items = sorted((k, v) for k, v in (arrays or {}).items() if k.startswith("baseline/"))
    self.baseline_previous = [v for _, v in items] or None

  def set_global(self, arrays: dict[str, np.ndarray], has_history: bool) -> None:
    """Sets the current global model (at start or on resume); `has_history`: a round was already aggregated, so
    beta-averaging applies from the next round on."""
    self.current_global = dict(arrays) if has_history else None
    self.previous_global = None
