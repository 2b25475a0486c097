"""One device mesh from the config, and the shardings the trainers use.

The batch is split over the `data` axis; the train state is replicated. Under `jax.jit` with a batch sharded on `data`,
a mean over the batch axis is a global mean (XLA inserts the all-reduce), so Flax's BatchNorm is synchronised across
devices without an `axis_name`.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fedvssl_jax.config_utils import ConfigError

DATA_AXIS = "data"


def make_mesh(mesh_spec: Sequence[tuple[str, int]] | None = None, devices: Sequence[Any] | None = None) -> Mesh:
  """Builds a mesh from `[(axis_name, size), ...]`; one size may be -1 (all remaining devices).

  Args:
    mesh_spec: e.g. `[("data", -1)]` (the default) or `[("data", 4)]`.
    devices: the devices to use (default: all of `jax.devices()`).
  """
  devices = list(devices if devices is not None else jax.devices())
  spec = list(mesh_spec or [(DATA_AXIS, -1)])
  names = tuple(name for name, _ in spec)
  sizes = [int(size) for _, size in spec]
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh: at most one axis may have size -1, got {spec}")
  known = int(np.prod([s for s in sizes if s != -1])) if sizes else 1
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f"config.mesh {spec}: {len(devices)} devices are not divisible by {known}")
    sizes[sizes.index(-1)] = len(devices) // known
  total = int(np.prod(sizes))
  if total > len(devices):
    raise ValueError(f"config.mesh {spec} needs {total} devices, only {len(devices)} available")
  device_array = np.asarray(devices[:total]).reshape(sizes)
  return Mesh(device_array, names, axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Shards the leading (batch) axis over `data`."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, what: str = "config.batch_size") -> None:
  """Raises a one-line ConfigError (a ValueError) naming `what` when the global batch does not divide over the data
  axis."""
  n = mesh.shape[DATA_AXIS]
  if global_batch_size % n:
    raise ConfigError(
        f"{what}={global_batch_size} is not divisible by the {n} devices of the mesh's '{DATA_AXIS}' axis; "
        f"use a multiple of {n} or set config.mesh to use fewer devices")


def local_batch_size(global_batch_size: int) -> int:
  """The part of the global batch this process loads (multi-host: one slice per process)."""
  if global_batch_size % jax.process_count():
    raise ValueError(f"global batch {global_batch_size} not divisible by {jax.process_count()} processes")
  return global_batch_size // jax.process_count()


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Host batch (this process's part) -> global arrays sharded on `data` (explicit transfer)."""
  sharding = batch_sharding(mesh)
  n = mesh.shape[DATA_AXIS]
  for key, value in batch.items():
    global_rows = np.shape(value)[0] * jax.process_count()
    if global_rows % n:
      raise ValueError(
          f"batch entry {key!r} has {global_rows} rows, not divisible by the {n} devices of the '{DATA_AXIS}' axis")
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree_util.tree_map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
