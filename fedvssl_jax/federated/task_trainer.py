"""Local (client-side) training of a JAX task for federated runs: the `LocalTrainer` of the pretext tasks and GOCA.

One `TaskLocalTrainer` per process serves every client that process trains: the model skeleton, the clip builder
and the jitted step are built once and reused across rounds and clients (only the arrays change), so a simulation
compiles once per actor process and JAX's persistent compilation cache covers fresh processes.

What crosses the wire is `nnx.Param` + `nnx.BatchStat` of the whole model as a flat float32 dict keyed by pytree path
(`backbone/...`, `head/...`); RNG counters and fixed buffers (e.g. GOCA's fixed prototypes) stay local.

Client data (`config.federated.partitions`):
  dir: a folder of FedVSSL-format `client_dist{k}.json` files (client id p reads `client_dist{p+1}.json`; the
       published K400 splits or `scripts/partition_clients.py` output), names resolved by the data source's own
       `datasets.Layout` (e.g. `{name}/RGB_frames.zip` for CtP-format Kinetics, `videos/{name}.mp4` for the official
       layout), so a client's record of a video is the record the centralised run makes; or
  scheme: fedvssl-noniid | iid | by-class | dirichlet, applied to the run's train split (`partition_split`); the
       federated runner writes these clients as `client_dist{k}.json` files into `<workdir>/partitions/` and points
       `partitions.dir` at them, so a run records which videos each client trained on.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx

from fedvssl_jax import datasets
from fedvssl_jax.config_utils import ConfigError
from fedvssl_jax.federated import arrays as arrays_lib
from fedvssl_jax.federated.local_trainer import LocalResult
from fedvssl_jax.models import export
from fedvssl_jax.core import mesh as mesh_lib
from fedvssl_jax.core import optim
from fedvssl_jax.core import state as state_lib
from input_pipeline import annotations, pipeline


def model_to_flat(model: nnx.Module) -> dict[str, np.ndarray]:
  """`{path: float32 array}` of the model's parameters and BatchNorm statistics."""
  return arrays_lib.pytree_to_flat(nnx.to_pure_dict(jax.device_get(nnx.state(model, state_lib.WEIGHTS))))


def flat_into_state(state: nnx.State, flat: dict[str, np.ndarray], exchanged=None) -> nnx.State:
  """Returns `state` with its leaves replaced by the arrays of `flat` of the same path.

  Args:
    state: an NNX state (a model's, or a part of it).
    flat: `{path: array}`, e.g. a federated global model.
    exchanged: the paths that travel between server and clients (`model_to_flat`'s keys); leaves of `state` outside
      it (RNG counters, GOCA's fixed prototypes and SwAV queue) keep their values. None: every leaf is exchanged.

  Raises:
    ValueError: an exchanged leaf of `state` missing from `flat`, or of another shape.
  """
  pure = nnx.to_pure_dict(state)
  own = arrays_lib.tree_shapes(pure)  # shapes only: the model's arrays are not copied off the device
  wanted = own if exchanged is None else {k: v for k, v in own.items() if k in exchanged}
  missing = sorted(set(wanted) - set(flat))
  if missing:
    raise ValueError(f"arrays lack {len(missing)} entries of the model, e.g. {missing[:3]}")
  for key, shape in wanted.items():
    if tuple(np.shape(flat[key])) != shape:
      raise ValueError(f"array {key!r} has shape {np.shape(flat[key])}, the model expects {shape}")
  if not wanted:
    return state
  nnx.replace_by_pure_dict(state, export.unflatten_state({k: np.asarray(flat[k]) for k in wanted}))
  return state


def load_flat_into_model(model: nnx.Module, flat: dict[str, np.ndarray]) -> nnx.Module:
  """Fills `model`'s parameters and BatchNorm statistics from a flat dict (e.g. a federated global model)."""
  nnx.update(model, flat_into_state(nnx.state(model, state_lib.WEIGHTS), flat))
  return model


def client_records(config: ml_collections.ConfigDict, splits: datasets.DatasetSplits,
                   partition_id: int) -> list[annotations.VideoRecord]:
  """The training videos of client `partition_id` (0-based) per `config.federated.partitions`."""
  part = config.federated.partitions
  num_clients = int(config.federated.num_clients)
  if not 0 <= partition_id < num_clients:
    raise ValueError(f"partition id {partition_id} outside 0..{num_clients - 1} (config.federated.num_clients)")
  if part.get("dir"):
    path = os.path.join(part.dir, f"client_dist{partition_id + 1}.json")
    if not os.path.exists(path):
      raise ConfigError(f"{path} not found (config.federated.partitions.dir)")
    return splits.read(path)  # the data source's own resolution (datasets.Layout): the records a central run makes
  return partition_split(config, splits)[partition_id]


def partition_split(config: ml_collections.ConfigDict, splits: datasets.DatasetSplits
                    ) -> list[list[annotations.VideoRecord]]:
  """Every client's training videos: `config.federated.partitions.scheme` applied to the run's train split.

  Keys of `config.federated.partitions`: `scheme` (iid | fedvssl-noniid | by-class | dirichlet), `seed` (iid: 7 as
  FedVSSL's `kinetics_json_splitter.py`; fedvssl-noniid uses its published fixed seeds), `alpha` (dirichlet),
  `classes_per_side` (fedvssl-noniid; <= 0: the largest c <= 4 the label space allows, 4 for 100 K400 clients). The
  fedvssl-noniid label space is the dataset's class list (absent classes count 0, as in `k400_non_iid.py`).
  """
  from input_pipeline import partition

  part = config.federated.partitions
  kwargs = {}
  if part.scheme == "fedvssl-noniid":
    cps = int(part.get("classes_per_side", 0) or 0)
    kwargs = {"classes_per_side": cps if cps > 0 else None, "num_classes": splits.num_classes or None}
  try:
    return partition.partition_records(splits.train, part.scheme, int(config.federated.num_clients),
                                       seed=int(part.get("seed", 7)), alpha=float(part.get("alpha", 0.5)), **kwargs)
  except ValueError as e:
    raise ConfigError(f"config.federated.partitions (scheme={part.scheme}): {e}") from None


def write_partition_files(config: ml_collections.ConfigDict, splits: datasets.DatasetSplits, out_dir: str
                          ) -> dict[str, Any]:
  """Writes `partition_split`'s clients as FedVSSL `client_dist{k}.json` files (k = 1..N) and a
  `partition_summary.json` (sizes, classes per client) into `out_dir`; returns the summary."""
  from input_pipeline import partition

  clients = [annotations.file_entries(c) for c in partition_split(config, splits)]
  partition.write_partitions(clients, out_dir)
  part = config.federated.partitions
  stats = dict(partition.partition_stats(clients), scheme=part.scheme, seed=int(part.get("seed", 7)),
               source=f"{config.data.source} train split ({len(splits.train)} videos)")
  partition.write_stats(stats, os.path.join(out_dir, "partition_summary.json"))
  return stats


@dataclasses.dataclass
class TaskSpec:
  """What a task gives the local trainer."""
  make_model: Callable[[nnx.Rngs], nnx.Module]
  loss_fn: state_lib.LossFn
  builder: Any
  batch_keys: tuple[str, ...] | None = None
  # (steps per epoch of the client's data, total local steps) -> (optimiser, schedule); default: the optimiser and
  # schedule of `config.optim` (`fedvssl_jax.core.optim`), so `*_epochs` keys count the client's epochs.
  make_tx: Callable[[int, int], tuple[optax.GradientTransformation, optax.Schedule]] | None = None
  # (model holding the final global arrays, workdir) -> {stream: exported backbone directory}, e.g.
  # {"rgb": <workdir>/export/backbone}; None: the task has no exportable backbone.
  export: Callable[[nnx.Module, str], dict[str, str]] | None = None


class TaskLocalTrainer:
  """`LocalTrainer` for a JAX task (see the module docstring).

  Reads `config.seed`, `config.batch_size` (per client), `config.optim` (the local optimiser, fresh every round; its
  schedule runs over the round's steps, an epoch being one pass over the client's videos), `config.data`,
  `config.federated.{num_clients, partitions, max_steps_per_round}`.
  """

  def __init__(self, config: ml_collections.ConfigDict, spec: TaskSpec):
    self.config = config
    self.spec = spec
    self.mesh = mesh_lib.make_mesh(config.get("mesh"))
    mesh_lib.check_batch_size(config.batch_size, self.mesh)
    self._splits = None
    self._records: dict[int, list] = {}
    model = spec.make_model(nnx.Rngs(config.seed))
    model.train()
    self._graphdef, self._params, self._rest = state_lib.split_model(model)
    # On the host: the leaves that are not exchanged (fixed prototypes, RNG counters) start every round from these
    # copies, and the train step donates the device buffers it is given.
    self._rest = jax.device_get(self._rest)
    self._initial = model_to_flat(model)
    self._steps: dict[tuple[int, int], Callable] = {}

  @property
  def splits(self) -> datasets.DatasetSplits:
    if self._splits is None:
      self._splits = datasets.load_splits(self.config.data)
    return self._splits

  def records(self, partition_id: int) -> list:
    if partition_id not in self._records:
      self._records[partition_id] = client_records(self.config, self.splits, partition_id)
      if not self._records[partition_id]:
        raise ValueError(f"client {partition_id} has no training videos")
    return self._records[partition_id]

  def initial_arrays(self) -> dict[str, np.ndarray]:
    return dict(self._initial)

  def num_examples(self, partition_id: int) -> int:
    return len(self.records(partition_id))

  def _states(self, arrays: dict[str, np.ndarray]) -> tuple[nnx.State, nnx.State]:
    """(params, rest) states of the model skeleton holding `arrays` (leaves not exchanged keep their initial values);
    the skeleton's own states are left as they are."""
    params = flat_into_state(jax.tree_util.tree_map(lambda x: x, self._params), arrays, self._initial)
    rest = flat_into_state(jax.tree_util.tree_map(lambda x: x, self._rest), arrays, self._initial)
    return params, rest

  def export(self, arrays: dict[str, np.ndarray], workdir: str) -> dict[str, str] | None:
    """Exports the backbone(s) of the model `arrays` (the final global model) with the task's `TaskSpec.export`.

    Returns:
      {stream: directory}, e.g. {"rgb": <workdir>/export/backbone}, or None when the task has no export.
    """
    if self.spec.export is None:
      return None
    return self.spec.export(nnx.merge(self._graphdef, *self._states(arrays)), workdir)

  def _tx_and_schedule(self, steps_per_epoch: int, total_steps: int):
    """The round's fresh optimiser and its schedule; epochs in the schedule are `steps_per_epoch` steps."""
    if self.spec.make_tx is not None:
      return self.spec.make_tx(steps_per_epoch, total_steps)
    schedule = optim.make_schedule(self.config.optim, steps_per_epoch, total_steps)
    return optim.make_optimizer(self.config.optim, schedule), schedule

  def train(self, partition_id: int, arrays: dict[str, np.ndarray], *, server_round: int, local_epochs: int,
            workdir: str) -> LocalResult:
    t0 = time.time()
    records = self.records(partition_id)
    batch = int(self.config.batch_size)
    steps_per_epoch = max(1, len(records) // batch)
    steps = max(1, local_epochs * len(records) // batch)
    cap = int(self.config.federated.get("max_steps_per_round", -1))
    if cap > 0:
      steps = min(steps, cap)
    tx, schedule = self._tx_and_schedule(steps_per_epoch, steps)
    params, rest = self._states(arrays)
    state = state_lib.TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=params, rest=rest,
                                 opt_state=tx.init(params))
    state = state_lib.put_replicated(state, self.mesh)
    key = (steps_per_epoch, steps)  # the schedule depends on both; usually one entry per client size
    if key not in self._steps:
      self._steps[key] = state_lib.make_train_step(self._graphdef, tx, self.spec.loss_fn, self.mesh)
    train_step = self._steps[key]
    seed = int(self.config.seed) + 100_003 * (partition_id + 1) + 7_919 * server_round
    ds = pipeline.make_train_dataset(records, self.spec.builder, batch_size=batch, seed=seed,
                                     num_workers=int(self.config.data.num_workers))
    it = iter(ds)
    losses = []
    key = jax.random.key(seed)
    for i in range(steps):
      host = next(it)
      if self.spec.batch_keys is not None:
        host = {k: host[k] for k in self.spec.batch_keys}
      state, metrics = train_step(state, mesh_lib.put_batch(host, self.mesh), jax.random.fold_in(key, i))
      losses.append(metrics["loss"])
    if hasattr(it, "close"):
      it.close()
    losses = np.asarray(jax.device_get(losses), np.float64)
    final = nnx.merge(self._graphdef, jax.device_get(state.params), jax.device_get(state.rest))
    out = model_to_flat(final)
    return LocalResult(arrays=out, num_examples=len(records), mean_loss=float(losses.mean()),
                       metrics={"steps": float(steps), "time_s": time.time() - t0,
                                "last_loss": float(losses[-1]), "lr": float(schedule(0))})
