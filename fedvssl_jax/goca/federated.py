"""Registers the `goca` local trainer: GOCA clients of a federated run (`configs/goca.py:demo,federated`).

Both backbones live under `backbone/` (`backbone/rgb/...`, `backbone/flow/...`), so FedVSSL's backbone-only update
shares both streams and keeps each client's projection head local; the fixed prototypes are not exchanged.
"""

from __future__ import annotations

import functools

import ml_collections

from fedvssl_jax.federated.local_trainer import LOCAL_TRAINERS
from fedvssl_jax.goca import runner as goca_trainer
from fedvssl_jax.federated.task_trainer import TaskLocalTrainer, TaskSpec


@LOCAL_TRAINERS.register("goca")
def make_goca_local_trainer(config: ml_collections.ConfigDict) -> TaskLocalTrainer:
  prototypes = goca_trainer.load_or_make_prototypes(config)
  rgb_keys, flow_keys = goca_trainer.view_keys(config)

  spec = TaskSpec(
      make_model=lambda rngs: goca_trainer.build_model(config, rngs, prototypes),
      loss_fn=goca_trainer.make_loss_fn(config, use_prior=bool(config.goca.use_prior)),
      builder=goca_trainer.make_builder(config), batch_keys=tuple(rgb_keys + flow_keys),
      make_tx=functools.partial(goca_trainer.make_tx, config),  # LARC SGD, warm-up over the client's epochs, cosine
      export=lambda model, workdir: goca_trainer.export_backbones(config, workdir, model))
  return TaskLocalTrainer(config, spec)
