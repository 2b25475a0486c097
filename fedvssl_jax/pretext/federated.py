"""Registers the `pretext` local trainer: CtP / VCOP / Speed clients of a federated run (`config.task.name`)."""

from __future__ import annotations

import ml_collections

from fedvssl_jax.federated.local_trainer import LOCAL_TRAINERS
from fedvssl_jax.pretext import PRETEXT_TASKS
from fedvssl_jax.pretext import runner as pretext
from fedvssl_jax.core import state as state_lib
from fedvssl_jax.federated.task_trainer import TaskLocalTrainer, TaskSpec


def task_spec(config: ml_collections.ConfigDict) -> TaskSpec:
  task = PRETEXT_TASKS.get(config.task.name)
  try:
    batch_keys = tuple(task.batch_spec(config.task).keys())
  except NotImplementedError:
    batch_keys = None
  model_config = pretext.task_model_config(config)

  def export(model, workdir: str) -> dict[str, str]:
    return {"rgb": pretext.export_backbone(config, workdir, state_lib.module_weights(model.backbone))}

  return TaskSpec(make_model=lambda rngs: task.make_model(model_config, rngs=rngs),
                  loss_fn=task.train_loss_fn(config.task),
                  builder=task.make_builder(config.task), batch_keys=batch_keys, export=export)


@LOCAL_TRAINERS.register("pretext")
def make_pretext_local_trainer(config: ml_collections.ConfigDict) -> TaskLocalTrainer:
  return TaskLocalTrainer(config, task_spec(config))
