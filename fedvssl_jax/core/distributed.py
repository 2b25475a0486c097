"""Joining a multi-process JAX job (TPU VM slices, SLURM, Open MPI, or any cluster named by explicit flags).

`initialize` runs before any JAX computation (`fedvssl_jax.main` calls it right after flag parsing):
- with `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`: `jax.distributed.initialize` with those;
- else, when a cluster is detected (a multi-host Cloud TPU VM, a SLURM step with several tasks, `mpirun` with several
  ranks): `jax.distributed.initialize()` and JAX's own auto-detection fills in the arguments;
- else nothing: one process, as before.

After it, `jax.process_index()` / `jax.process_count()` describe the job; the runners read their data shard, gather
evaluation features and write files (process 0 only) from them. Helpers for that live here too.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np


class DistributedError(ValueError):
  """Inconsistent multi-process flags or environment."""


def detect_cluster() -> str | None:
  """The cluster JAX's auto-detection will join, or None for a single process.

  Only clusters with more than one process count (a one-task SLURM job or a one-host TPU VM stays a plain run):
  "slurm" (inside `srun`, SLURM_NTASKS > 1), "ompi" (`mpirun`, OMPI_COMM_WORLD_SIZE > 1), "tpu" (a Cloud TPU VM
  whose slice has several workers: TPU_WORKER_HOSTNAMES lists more than one host, or its metadata says so).
  """
  env = os.environ
  slurm_vars = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
  if all(v in env for v in slurm_vars) and _int(env.get("SLURM_NTASKS")) > 1:
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in env and _int(env.get("OMPI_COMM_WORLD_SIZE")) > 1:
    return "ompi"
  if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]) > 1:
    return "tpu"
  if _multi_host_tpu_vm():
    return "tpu"
  return None


def _int(text: str | None) -> int:
  try:
    return int(text or 0)
  except ValueError:
    return 0


def _multi_host_tpu_vm() -> bool:
  """On a Cloud TPU VM, whether the slice has several workers (asks the metadata server, as JAX does)."""
  try:
    from jax._src import cloud_tpu_init
  except ImportError:  # pragma: no cover - JAX internals moved
    return False
  if not getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False) or os.environ.get("TPU_SKIP_MDS_QUERY"):
    return False
  try:
    from jax._src.clusters import cloud_tpu_cluster

    return cloud_tpu_cluster.GceTpuCluster.get_process_count() > 1  # JAX's own metadata query
  except Exception:  # noqa: BLE001 - no metadata server: not a multi-host slice
    return False


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> str | None:
  """Joins the multi-process job, if there is one. Call once, before any JAX computation.

  Args:
    coordinator_address: "HOST:PORT" of process 0's coordinator (explicit clusters and tests).
    num_processes: the job's process count.
    process_id: this process's index in [0, num_processes).
  Returns:
    How the job was joined: "flags", the detected cluster ("slurm", "ompi", "tpu"), or None (single process).
  Raises:
    DistributedError: some but not all of the three explicit values given, or out of range.
  """
  explicit = {"--coordinator_address": coordinator_address, "--num_processes": num_processes,
              "--process_id": process_id}
  given = [k for k, v in explicit.items() if v is not None]
  if given:
    if num_processes == 1 and coordinator_address is None:
      return None  # `--num_processes=1`: a plain run
    missing = [k for k, v in explicit.items() if v is None]
    if missing:
      raise DistributedError(f"{', '.join(given)} given without {', '.join(missing)}: a multi-process job needs "
                             "all three of --coordinator_address=HOST:PORT --num_processes=N --process_id=I")
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise DistributedError(f"--process_id={process_id} is not in [0, --num_processes={num_processes})")
    if ":" not in coordinator_address:
      raise DistributedError(f"--coordinator_address={coordinator_address!r} must be HOST:PORT")
    import jax

    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, **_timeouts())
    _first_collective()
    return "flags"
  cluster = detect_cluster()
  if cluster is None:
    return None
  import jax

  jax.distributed.initialize(**_timeouts())
  _first_collective()
  return cluster


def _timeouts() -> dict[str, int]:
  """`FEDVSSL_JAX_HEARTBEAT_TIMEOUT_S` in the environment raises JAX's 100 s heartbeat timeout: on an overloaded
  machine (the CPU tests) a process compiling a large step can miss heartbeats that long and the job is aborted."""
  value = os.environ.get("FEDVSSL_JAX_HEARTBEAT_TIMEOUT_S")
  if not value:
    return {}
  try:
    return {"heartbeat_timeout_seconds": int(value)}
  except ValueError:
    raise DistributedError(f"FEDVSSL_JAX_HEARTBEAT_TIMEOUT_S={value!r} is not an integer number of seconds") from None


def _first_collective() -> None:
  """One collective over all devices while the processes are in step (they just met in `initialize`).

  JAX's CPU (gloo) collectives set up their communicator on first use and give up when the processes arrive more
  than 30 s apart, as they do when one compiles the first train step much more slowly; later programs over the same
  devices reuse it. (`sync` is not enough: it may meet at a coordination-service barrier, not on the devices.)
  """
  import jax
  import jax.numpy as jnp
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

  mesh = Mesh(np.asarray(jax.devices()), ("all",))
  ones = jax.make_array_from_process_local_data(NamedSharding(mesh, P("all")),
                                                np.ones(jax.local_device_count(), np.float32))
  total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(ones)
  if int(total) != jax.device_count():
    raise RuntimeError(f"first collective over {jax.device_count()} devices returned {int(total)}")


def is_primary() -> bool:
  """Whether this process writes the run's files (config.json, metrics, plots, results, exports)."""
  import jax

  return jax.process_index() == 0


def process_tag() -> str:
  """" on 2 processes" style suffix for progress lines; empty for a single process."""
  import jax

  n = jax.process_count()
  return f" on {n} processes" if n > 1 else ""


def allgather_rows(x: Any) -> np.ndarray:
  """Concatenates every process's host array `x` [n_p, ...] along axis 0, in process order (all n_p equal).

  A single process returns `x` as is. Every process must call it (a collective).
  """
  import jax

  x = np.asarray(x)
  if jax.process_count() == 1:
    return x
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def to_host(x: Any) -> Any:
  """A pytree of (possibly multi-process, batch-sharded) jax.Arrays -> numpy arrays holding the global values."""
  import jax

  if jax.process_count() == 1:
    return jax.device_get(x)
  from jax.experimental import multihost_utils

  def fetch(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(jax.device_get(a))

  return jax.tree_util.tree_map(fetch, x)


@contextlib.contextmanager
def primary_first(name: str):
  """Runs the body on process 0 first, then on the others (e.g. making the synthetic videos or flow once)."""
  import jax

  if jax.process_count() == 1:
    yield
    return
  if not is_primary():
    sync(name)
  yield
  if is_primary():
    sync(name)


def sync(name: str) -> None:
  """A barrier over all processes (no-op for one)."""
  import jax

  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def process_eval_dataset(records: list, builder: Any, batch_size: int, *, num_workers: int = 0, seed: int = 0):
  """This process's shard (records `p::P`) of an evaluation pass, in batches of this process's rows of the global
  `batch_size`. Every step of an evaluation is collective, so with several processes the shards are padded to the
  same number of batches (padded rows have `valid` False).

  Returns:
    (the `pipeline.make_eval_dataset` iterable, its number of batches on every process).
  """
  import jax

  from fedvssl_jax.core import mesh as mesh_lib
  from input_pipeline import pipeline

  local_batch = mesh_lib.local_batch_size(batch_size)
  n_proc = jax.process_count()
  n_batches = -(-(-(-len(records) // n_proc)) // local_batch)
  ds = pipeline.make_eval_dataset(records, builder, batch_size=local_batch, num_workers=num_workers, seed=seed,
                                  shard_index=jax.process_index(), shard_count=n_proc,
                                  num_batches=n_batches if n_proc > 1 else None)
  return ds, n_batches
