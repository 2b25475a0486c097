"""Federated pretraining end to end (`config.runner = "federated"`): Flower simulation, then export and kNN.

The rounds run through `fedvssl_jax.federated.simulation` (the same ServerApp / ClientApp as `flwr run .` and a real
deployment). Afterwards the final global model's backbone is exported like any other checkpoint
(`<workdir>/export/backbone`) and, when `config.knn.enabled`, evaluated by kNN retrieval against the same backbone at
random initialisation. Results: `<workdir>/results.json` (+ plots).
"""

from __future__ import annotations

from typing import Any

import ml_collections
from flax import nnx

from fedvssl_jax import datasets
from fedvssl_jax.evaluation import reporting
from fedvssl_jax.train import state as state_lib
from fedvssl_jax.train import mesh as mesh_lib


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  from fedvssl_jax.federated import server_state, simulation
  from fedvssl_jax.train.local import load_flat_into_model

  if config.get("pretrain_runner", "pretext") == "goca":
    from fedvssl_jax.train import goca as goca_trainer

    # Flow videos and prototypes are made once here, not by every client process at the same time.
    goca_trainer.ensure_flow(config, datasets.load_splits(config.data))
    goca_trainer.load_or_make_prototypes(config)
  fed = simulation.run_simulation(config, workdir)
  final_arrays = server_state.load_final_global(fed["final_global"])
  results: dict[str, Any] = {"federated": {k: fed[k] for k in ("rounds", "resumed_from", "final_global",
                                                               "final_global_loss") if k in fed}}
  if config.get("pretrain_runner", "pretext") == "goca":
    from fedvssl_jax.train import goca as goca_trainer

    model = load_flat_into_model(goca_trainer.build_model(config, nnx.Rngs(config.seed)), final_arrays)
    results.update(goca_trainer.export_and_evaluate(config, workdir, model))
  else:
    from fedvssl_jax.pretext import PRETEXT_TASKS
    from fedvssl_jax.train import pretext

    model = PRETEXT_TASKS.get(config.task.name).make_model(pretext.task_model_config(config),
                                                           rngs=nnx.Rngs(config.seed))
    load_flat_into_model(model, final_arrays)
    export_dir = pretext.export_backbone(config, workdir, state_lib.module_weights(model.backbone))
    results["export"] = export_dir
    if config.knn.enabled:
      mesh = mesh_lib.make_mesh(config.get("mesh"))
      results["knn"] = pretext.evaluate_knn(config, export_dir, datasets.load_splits(config.data), mesh)
  return reporting.write_results(workdir, results, jsonl_name="federated_metrics.jsonl")
