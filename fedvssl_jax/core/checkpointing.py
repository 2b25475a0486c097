"""Orbax checkpoints of a training run: train state + step + data iterator state + the config.

Layout: `<workdir>/checkpoints/<step>/{state,data,config}`. A run started again with the same workdir resumes from the
newest complete step. A checkpoint that exists but cannot be read is an error that names its path: it is never
silently replaced by a fresh start.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp

from fedvssl_jax.errors import UserError


class CheckpointError(UserError, RuntimeError):
  """A checkpoint exists but cannot be restored."""


class Checkpointer:
  """Saves every `save_every` steps (and on `force`), keeps `max_to_keep`, restores the latest.

  Args:
    workdir: the run's directory.
    save_every: steps between saves (<= 0: only forced saves).
    max_to_keep: number of checkpoints kept.
  """

  def __init__(self, workdir: str, save_every: int, max_to_keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    if os.path.exists(self.directory) and not os.path.isdir(self.directory):
      # Orbax would only fail at the first (asynchronous) save, after the training it was meant to keep.
      raise CheckpointError(f"{self.directory} is a file, not a checkpoint folder; move it away or choose another "
                            "workdir")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=max(1, save_every) if save_every > 0 else 1,
        create=True, enable_async_checkpointing=True)
    self.save_every = save_every
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, abstract_state: Any, data_iterator: Any | None = None) -> tuple[int, Any] | None:
    """Restores the newest checkpoint into the structure of `abstract_state` (and `data_iterator` in place).

    Returns:
      (step, state), or None when the workdir has no checkpoint yet.
    """
    step = self.manager.latest_step()
    if step is None:
      return None
    path = os.path.join(self.directory, str(step))
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      if not os.path.isdir(os.path.join(path, "data")):
        raise CheckpointError(f"checkpoint {path} has no data iterator state; it was written by another kind of run")
      from input_pipeline import pipeline  # local import: grain is heavy, not every caller has an iterator

      args["data"] = pipeline.iterator_restore_args(data_iterator)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # noqa: BLE001 - re-raised with the path
      older = [s for s in self.manager.all_steps() if s < step]
      hint = (f"; to resume from the previous checkpoint (step {max(older)}), move {path} out of {self.directory}"
              if older else "; no older checkpoint is kept: move it away to start afresh")
      first_line = (str(e).strip().splitlines() or [""])[0][:300]
      raise CheckpointError(f"cannot restore checkpoint {path}: {type(e).__name__}: {first_line}{hint}") from e
    logging.info("restored checkpoint %s", path)
    return step, restored["state"]

  def should_save(self, step: int) -> bool:
    return self.save_every > 0 and step % self.save_every == 0

  def save(self, step: int, state: Any, data_iterator: Any | None = None,
           config: ml_collections.ConfigDict | None = None, force: bool = False) -> bool:
    """Saves (asynchronously) when `step` is on the interval or `force`; returns whether it saved."""
    if not force and not self.should_save(step):
      return False
    if step in self.manager.all_steps():
      return False
    args = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      from input_pipeline import pipeline

      args["data"] = pipeline.iterator_save_args(data_iterator)
    if config is not None:
      args["config"] = ocp.args.JsonSave(json.loads(config.to_json_best_effort()))
    return self.manager.save(step, args=ocp.args.Composite(**args), force=True)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the pending save and closes the manager (also when the wait fails)."""
    try:
      self.manager.wait_until_finished()
    finally:
      self.manager.close()
