"""The server's resumable state and the final global model.

After every finished round r the server app writes, with an Orbax `CheckpointManager` (atomic: a step directory
appears only complete; the save is waited for before the next round starts):

  <workdir>/server/<r>/global_model flat float32 dict: the global model after round r
  <workdir>/server/<r>/previous   flat float32 dict: the global model the round's beta-averaging used (absent in
                                  round 1 / when none), kept for inspection
  <workdir>/server/<r>/strategy_arrays  extra strategy state (flower_baseline mode: its 2N-array list), optional
  <workdir>/server/<r>/meta       JSON: {"round": r, "strategy": {...}, "num_rounds": R, ...}

A run restarted with the same workdir loads the newest step and runs only rounds r+1..R (clients find their heads
under <workdir>/clients/). At the end the final global model is written as an Orbax `StandardCheckpointer` item in
<workdir>/final_global/ (the flat dict; `load_final_global` reads it back).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Mapping

import numpy as np

from fedvssl_jax.errors import UserError
from fedvssl_jax.federated.arrays import flat_float32, in_key_order

logger = logging.getLogger(__name__)


class ServerStateError(UserError, RuntimeError):
  """The stored server state cannot be read or does not match the run."""


@dataclasses.dataclass
class ServerState:
  """Everything needed to continue a federated run after round `round`.

  Attributes:
    round: last finished round (>= 1).
    global_arrays: the global model after that round (flat float32).
    previous: the global model before that round's aggregation (None if none was used).
    meta: JSON-able dict: "strategy" (the aggregation config), "num_rounds", and anything else.
    strategy_arrays: extra arrays the strategy needs to continue (`FedVSSLStrategy.export_state`), or None.
  """
  round: int
  global_arrays: dict[str, np.ndarray]
  previous: dict[str, np.ndarray] | None
  meta: dict[str, Any]
  strategy_arrays: dict[str, np.ndarray] | None = None


def server_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "server")


def final_global_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "final_global")


def _manager(workdir: str):
  import orbax.checkpoint as ocp

  options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False, create=True)
  return ocp.CheckpointManager(server_dir(workdir), options=options)


def save_server_state(workdir: str, state: ServerState) -> None:
  """Writes `state` as step `state.round` of `<workdir>/server/` and waits until it is on disk.

  Steps >= state.round (left by an interrupted run that wrote further) are replaced.
  """
  import orbax.checkpoint as ocp

  meta = dict(state.meta)
  meta["round"] = int(state.round)
  meta["has_previous"] = state.previous is not None
  meta["keys"] = list(state.global_arrays)  # Orbax sorts keys; keep the model's own order
  if state.previous is not None:
    meta["previous_keys"] = list(state.previous)
  items = dict(global_model=ocp.args.StandardSave(flat_float32(state.global_arrays)), meta=ocp.args.JsonSave(meta))
  if state.previous is not None:
    items["previous"] = ocp.args.StandardSave(flat_float32(state.previous))
  meta["has_strategy_arrays"] = bool(state.strategy_arrays)
  if state.strategy_arrays:
    items["strategy_arrays"] = ocp.args.StandardSave(flat_float32(state.strategy_arrays))
  mngr = _manager(workdir)
  try:
    for step in mngr.all_steps():
      if step >= state.round:
        mngr.delete(step)
    mngr.save(int(state.round), args=ocp.args.Composite(**items))
    mngr.wait_until_finished()
  finally:
    mngr.close()


def load_server_state(workdir: str) -> ServerState | None:
  """The newest finished round's state under `<workdir>/server/`, or None for a fresh run.

  Raises:
    ServerStateError: a step directory exists but cannot be restored (names the path).
  """
  if not os.path.isdir(server_dir(workdir)):
    return None
  import orbax.checkpoint as ocp

  mngr = _manager(workdir)
  try:
    step = mngr.latest_step()
    if step is None:
      return None
    path = os.path.join(server_dir(workdir), str(step))
    try:
      meta = dict(mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)
      items = dict(global_model=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
      if meta.get("has_previous"):
        items["previous"] = ocp.args.StandardRestore()
      if meta.get("has_strategy_arrays"):
        items["strategy_arrays"] = ocp.args.StandardRestore()
      restored = mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      raise ServerStateError(f"server state {path} is corrupt or unreadable ({type(e).__name__}: {e})") from e
    previous = (in_key_order(flat_float32(restored.previous), meta.pop("previous_keys", None))
                if meta.get("has_previous") else None)
    global_arrays = in_key_order(flat_float32(restored.global_model), meta.pop("keys", None))
    extra = flat_float32(restored.strategy_arrays) if meta.get("has_strategy_arrays") else None
    return ServerState(round=int(meta.get("round", step)), global_arrays=global_arrays, previous=previous, meta=meta,
                       strategy_arrays=extra)
  finally:
    mngr.close()


def save_final_global(workdir: str, arrays: Mapping[str, np.ndarray]) -> str:
  """Writes the final global model (flat dict) to `<workdir>/final_global/` (replacing an older one); returns it."""
  import orbax.checkpoint as ocp

  path = final_global_dir(workdir)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, flat_float32(arrays), force=True)
    ckptr.wait_until_finished()
  return path


def load_final_global(path: str) -> dict[str, np.ndarray]:
  """Reads a flat model written by `save_final_global` (`path` = the final_global directory)."""
  import orbax.checkpoint as ocp

  if not os.path.isdir(path):
    raise FileNotFoundError(f"no final global model at {path}")
  with ocp.StandardCheckpointer() as ckptr:
    return flat_float32(ckptr.restore(os.path.abspath(path)))
