"""The step loop shared by the trainers: resume, step, log, checkpoint.

Each trainer builds its own model, loss and data, then hands the jitted step and the data to `run_train_loop`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
import optax
from absl import logging

from fedvssl_jax.core import checkpointing
from fedvssl_jax.core import mesh as mesh_lib
from fedvssl_jax.core import metrics as metrics_lib
from fedvssl_jax.core import prefetch as prefetch_lib
from fedvssl_jax.core import state as state_lib


def _mean_metrics(history: list[dict[str, jax.Array]]) -> dict[str, float]:
  """Averages the per-step metrics of a logging window with one device -> host transfer."""
  fetched = jax.device_get(history)
  return {k: float(np.mean([h[k] for h in fetched])) for k in fetched[0]}


def run_train_loop(config: ml_collections.ConfigDict, workdir: str, *, state: state_lib.TrainState,
                   train_step: Callable, train_ds: Any, total_steps: int, schedule: optax.Schedule | None,
                   batch_keys: Sequence[str] | None = None, mesh=None,
                   checkpointer: checkpointing.Checkpointer | None = None,
                   writer: metrics_lib.MetricWriter | None = None,
                   on_log: Callable[[int, dict[str, float]], None] | None = None
                   ) -> tuple[state_lib.TrainState, bool]:
  """Trains until `total_steps`, resuming from the workdir's newest checkpoint.

  Args:
    config: reads `seed`, `log_every`, `checkpoint_every`, `keep_checkpoints`, `max_steps_this_run`, `mesh`,
      `prefetch_to_device` (batches put on the devices ahead of the step, default 2).
    state: the freshly initialised state (also the restore target).
    train_step: `(state, batch, rng) -> (state, metrics)`.
    train_ds: a grain IterDataset of host batches (its iterator state goes into each checkpoint).
    total_steps: the run's length in optimiser steps.
    schedule: logged as `lr`.
    batch_keys: the batch entries passed to the step (default: all).
  Returns:
    (state, finished): finished is False when `max_steps_this_run` stopped the run early.
  """
  mesh = mesh if mesh is not None else mesh_lib.make_mesh(config.get("mesh"))
  own_ckpt = checkpointer is None
  ckpt = checkpointer or checkpointing.Checkpointer(workdir, config.checkpoint_every,
                                                    config.get("keep_checkpoints", 3))
  iterator = None
  failed = True
  try:
    iterator = iter(train_ds)
    restored = ckpt.restore(state_lib.abstract_train_state(state), iterator)
    if restored is not None:
      step, state = restored
      print(f"resumed from {ckpt.directory}/{step} (step {step}/{total_steps})", flush=True)
    step = int(jax.device_get(state.step))
    if writer is None:
      writer = metrics_lib.MetricWriter(workdir, total_steps, prefix="train", enabled=jax.process_index() == 0)
    # Rows logged after the restored checkpoint by the interrupted run are logged again by this one.
    writer.truncate_after(step)
    result = _train(config, ckpt, iterator, writer, state, step, train_step, mesh, total_steps, schedule,
                    batch_keys, on_log)
    failed = False
    return result
  finally:
    # Every path, errors included: an unclosed manager / writer / grain iterator leaves threads that print
    # "Event loop is closed" or thread errors at exit.
    if iterator is not None and hasattr(iterator, "close"):
      iterator.close()
    if writer is not None:
      writer.close()
    if own_ckpt:
      try:
        ckpt.close()
      except Exception:  # noqa: BLE001 - on the error path the first error is the one to report
        if not failed:
          raise
        logging.warning("closing the checkpoint manager after an error failed too", exc_info=True)


def _train(config, ckpt, iterator, writer, state, step, train_step, mesh, total_steps, schedule, batch_keys, on_log):
  """The step loop of `run_train_loop` (after the restore); returns (state, finished)."""
  keys = tuple(batch_keys) if batch_keys is not None else None

  def put(host_batch):
    """Host batch -> (device batch, bad videos replaced in it); counted when the batch is consumed."""
    replaced = int(np.sum(host_batch["num_replaced"])) if "num_replaced" in host_batch else 0
    selected = host_batch if keys is None else {k: host_batch[k] for k in keys}
    return mesh_lib.put_batch(selected, mesh), replaced

  batches = prefetch_lib.DevicePrefetch(iterator, put, size=config.get("prefetch_to_device", 2))
  try:
    return _steps(config, ckpt, batches, writer, state, step, train_step, total_steps, schedule, on_log)
  finally:
    batches.close()


def _steps(config, ckpt, batches, writer, state, step, train_step, total_steps, schedule, on_log):
  """The steps themselves, over device batches with their replaced-video counts."""
  start_step = step
  base_rng = jax.random.key(config.seed)
  max_this_run = config.get("max_steps_this_run", -1)
  history: list[dict[str, jax.Array]] = []
  replaced = 0  # bad videos replaced by the pipeline in this logging window (README: counted, never fatal)
  t_start = time.time()
  finished = True
  first = True
  while step < total_steps:
    batch, num_replaced = next(batches)  # already on the devices; the next ones are in flight
    replaced += num_replaced
    if first and jax.process_index() == 0:
      # XLA compiles on the first call (a minute or more for a full-size model): say so instead of going silent.
      print("compiling the train step...", flush=True)
      t_compile = time.time()
    state, step_metrics = train_step(state, batch, jax.random.fold_in(base_rng, step))
    if first:
      jax.block_until_ready(step_metrics)
      if jax.process_index() == 0:
        print(f"train step compiled, first step done in {time.time() - t_compile:.1f}s", flush=True)
      first = False
    history.append(step_metrics)
    step += 1
    if step % config.log_every == 0 or step == total_steps:
      scalars = _mean_metrics(history)
      history = []
      if schedule is not None:
        scalars["lr"] = float(schedule(step - 1))
      scalars["num_replaced"], replaced = float(replaced), 0
      scalars = writer.write(step, scalars)
      if not all(np.isfinite(v) for v in scalars.values()):
        ckpt.wait()
        raise FloatingPointError(f"non-finite metrics at step {step}: {scalars}; the last good checkpoint is in "
                                 f"{ckpt.directory}")
      if on_log is not None:
        on_log(step, scalars)
    ckpt.save(step, state, batches, config)
    if 0 < max_this_run <= step - start_step and step < total_steps:
      ckpt.save(step, state, batches, config, force=True)
      print(f"stopping after {step - start_step} steps this run (config.max_steps_this_run); "
            f"run again with the same workdir to continue from step {step}", flush=True)
      finished = False
      break
  else:
    ckpt.save(step, state, batches, config, force=True)
  ckpt.wait()
  logging.info("trained %d steps in %.1fs", step - start_step, time.time() - t_start)
  return state, finished
