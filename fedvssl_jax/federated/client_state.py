"""Per-client persistent state: each client's full local model between the rounds it takes part in.

FedVSSL clients keep their pretext head (and every other non-backbone array) local: a client starts round r from
its own model after its last round, with only the backbone replaced by the global one (the original reloads its
mmcv `epoch_1.pth`). Flower client apps are ephemeral (a fresh process or Ray actor call per message), so the state
lives on disk:

  <workdir>/clients/client_<partition_id>/state/<round>/   Orbax checkpoint: `arrays` (flat float32 dict, the full
                                                           local model after that round) + `meta` (JSON)
  <workdir>/clients/client_<partition_id>/local/           the local trainer's scratch directory

Writes are atomic (Orbax writes into a temporary directory and renames it), two rounds are kept, and a state that
exists but cannot be read is an error naming its path (never silently replaced by a fresh head).

Resuming: a client in round r loads its newest state of a round *before* r, and a stale state of round >= r (left
by a run killed after the client trained but before the server saved round r) is deleted before the new one is
written, so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import numpy as np

from fedvssl_jax.federated.arrays import flat_float32, in_key_order

logger = logging.getLogger(__name__)


# The last state each client saved in this process: {(abs workdir, partition id): (round, fingerprint, arrays,
# meta)}. A warm process (a Ray actor, `clientapp_worker`) serves a client's next round from it instead of restoring
# from Orbax, when that round is still the newest one on disk before the round asked for and its files are unchanged.
_LAST_SAVED: dict[tuple[str, int], tuple[int, tuple, dict[str, np.ndarray], dict[str, Any]]] = {}


def _fingerprint(step_dir: str) -> tuple:
  """(relative path, size, mtime_ns) of every file of a stored step: any rewrite of it changes this."""
  out = []
  for root, _, files in os.walk(step_dir):
    for name in files:
      st = os.stat(os.path.join(root, name))
      out.append((os.path.relpath(os.path.join(root, name), step_dir), st.st_size, st.st_mtime_ns))
  return tuple(sorted(out))


def _disk_steps(state_root: str) -> list[int]:
  """Finished Orbax steps under `state_root` (integer directory names; temporary ones are not integers)."""
  try:
    return sorted(int(n) for n in os.listdir(state_root) if n.isdigit())
  except FileNotFoundError:
    return []


class ClientStateError(RuntimeError):
  """A stored client state exists but cannot be read."""


def client_dir(workdir: str, partition_id: int) -> str:
  """`<workdir>/clients/client_<partition_id>`."""
  return os.path.join(workdir, "clients", f"client_{int(partition_id)}")


def client_scratch_dir(workdir: str, partition_id: int) -> str:
  """The per-client working directory handed to `LocalTrainer.train` (created)."""
  path = os.path.join(client_dir(workdir, partition_id), "local")
  os.makedirs(path, exist_ok=True)
  return path


def _manager(workdir: str, partition_id: int):
  import orbax.checkpoint as ocp

  path = os.path.join(os.path.abspath(client_dir(workdir, partition_id)), "state")
  options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False, create=True)
  return ocp.CheckpointManager(path, options=options), path


def stored_rounds(workdir: str, partition_id: int) -> list[int]:
  """Rounds for which client `partition_id` has a stored state (ascending)."""
  if not os.path.isdir(os.path.join(client_dir(workdir, partition_id), "state")):
    return []
  mngr, _ = _manager(workdir, partition_id)
  try:
    return sorted(mngr.all_steps())
  finally:
    mngr.close()


def load_client_state(workdir: str, partition_id: int, before_round: int | None = None
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
  """Loads the newest stored state of client `partition_id` (of a round < `before_round` when given).

  Returns:
    (flat float32 arrays, meta dict with at least "round"), or None when the client has no stored state yet.

  Raises:
    ClientStateError: the state directory exists but cannot be restored (names the path).
  """
  state_root = os.path.join(client_dir(workdir, partition_id), "state")
  if not os.path.isdir(state_root):
    return None
  cached = _LAST_SAVED.get((os.path.abspath(workdir), int(partition_id)))
  if cached is not None:
    steps = [s for s in _disk_steps(state_root) if before_round is None or s < before_round]
    if steps and steps[-1] == cached[0] and _fingerprint(os.path.join(state_root, str(cached[0]))) == cached[1]:
      return {k: v.copy() for k, v in cached[2].items()}, dict(cached[3])
  import orbax.checkpoint as ocp

  mngr, path = _manager(workdir, partition_id)
  try:
    steps = sorted(s for s in mngr.all_steps() if before_round is None or s < before_round)
    if not steps:
      return None
    step = steps[-1]
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(),
                                                             meta=ocp.args.JsonRestore()))
      meta = dict(restored.meta or {})
      arrays = in_key_order(flat_float32(restored.arrays), meta.pop("keys", None))
    except Exception as e:  # pylint: disable=broad-except
      raise ClientStateError(f"client {partition_id}: stored state {os.path.join(path, str(step))} is corrupt or "
                             f"unreadable ({type(e).__name__}: {e}); delete it explicitly to start the client "
                             "from a fresh head") from e
    if not arrays:
      raise ClientStateError(f"client {partition_id}: stored state {os.path.join(path, str(step))} holds no arrays")
    meta.setdefault("round", step)
    return arrays, meta
  finally:
    mngr.close()


def save_client_state(workdir: str, partition_id: int, server_round: int, arrays: Mapping[str, np.ndarray],
                      meta: Mapping[str, Any] | None = None) -> str:
  """Atomically stores client `partition_id`'s full local model after `server_round`; returns the step directory.

  States of rounds >= `server_round` (stale, from an interrupted run) are deleted first.
  """
  import orbax.checkpoint as ocp

  flat = flat_float32(arrays)
  mngr, path = _manager(workdir, partition_id)
  try:
    for step in sorted(mngr.all_steps()):
      if step >= server_round:
        logger.warning("client %d: deleting stale state of round %d (>= round %d being saved)", partition_id, step,
                       server_round)
        mngr.delete(step)
    m = {"round": int(server_round), "partition_id": int(partition_id)}
    m.update(dict(meta or {}))
    m["keys"] = list(flat)  # Orbax sorts keys; keep the model's own order
    mngr.save(int(server_round), args=ocp.args.Composite(arrays=ocp.args.StandardSave(flat),
                                                         meta=ocp.args.JsonSave(m)))
    mngr.wait_until_finished()
  finally:
    mngr.close()
  meta_out = {k: v for k, v in m.items() if k != "keys"}
  step_dir = os.path.join(path, str(int(server_round)))
  _LAST_SAVED[(os.path.abspath(workdir), int(partition_id))] = (
      int(server_round), _fingerprint(step_dir), {k: v.copy() for k, v in flat.items()}, meta_out)
  return step_dir
