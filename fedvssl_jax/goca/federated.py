"""Registers the `goca` local trainer: GOCA clients of a federated run (`configs/goca.py:demo,federated`).

Both backbones live under `backbone/` (`backbone/rgb/...`, `backbone/flow/...`), so FedVSSL's backbone-only update
shares both streams and keeps each client's projection head local; the fixed prototypes are not exchanged.
"""

from __future__ import annotations

import ml_collections

from fedvssl_jax.federated.local_trainer import LOCAL_TRAINERS
from fedvssl_jax.train import goca as goca_trainer
from fedvssl_jax.train.local import TaskLocalTrainer, TaskSpec


@LOCAL_TRAINERS.register("goca")
def make_goca_local_trainer(config: ml_collections.ConfigDict) -> TaskLocalTrainer:
  prototypes = goca_trainer.load_or_make_prototypes(config)
  rgb_keys, flow_keys = goca_trainer.view_keys(config)

  def make_tx(steps_per_epoch: int, total_steps: int):
    # Each round's local schedule: warm-up over the first `warmup_epochs` of the client's epochs, then cosine.
    return goca_trainer.make_tx(config, steps_per_epoch, total_steps)

  spec = TaskSpec(
      make_model=lambda rngs: goca_trainer.build_model(config, rngs, prototypes),
      loss_fn=goca_trainer.make_loss_fn(config, use_prior=bool(config.goca.use_prior)),
      builder=goca_trainer.make_builder(config), batch_keys=tuple(rgb_keys + flow_keys), make_tx=make_tx,
      export=lambda model, workdir: goca_trainer.export_backbones(config, workdir, model))
  return TaskLocalTrainer(config, spec)
