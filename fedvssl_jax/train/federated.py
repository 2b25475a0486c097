"""Federated pretraining end to end (`config.runner = "federated"`): Flower simulation, then export and kNN.

The rounds run through `fedvssl_jax.federated.simulation` (the same ServerApp / ClientApp as `flwr run .` and a real
deployment). At the end the ServerApp exports the final global model's backbone like any other checkpoint
(`<workdir>/export/backbone`; GOCA also `export/flow_backbone`, see `export_final_global`); this runner then, when
`config.knn.enabled`, evaluates kNN retrieval of it against the same backbone at random initialisation. Results:
`<workdir>/results.json` (+ plots).
"""

from __future__ import annotations

from typing import Any, Mapping

import ml_collections
import numpy as np
from flax import nnx

from fedvssl_jax import datasets
from fedvssl_jax.evaluation import reporting
from fedvssl_jax.train import mesh as mesh_lib
from fedvssl_jax.train import state as state_lib


def final_model(config: ml_collections.ConfigDict, arrays: Mapping[str, np.ndarray]) -> nnx.Module | None:
  """The task's full model (pretext model or GOCA two-stream model) holding the flat global `arrays`; None for a
  local trainer without an exportable backbone (e.g. the toy task of the tests)."""
  from fedvssl_jax.train.local import load_flat_into_model

  trainer = config.federated.get("trainer", "pretext")
  if trainer == "goca":
    from fedvssl_jax.train import goca as goca_trainer

    return load_flat_into_model(goca_trainer.build_model(config, nnx.Rngs(config.seed)), arrays)
  if trainer == "pretext":
    from fedvssl_jax.pretext import PRETEXT_TASKS
    from fedvssl_jax.train import pretext

    model = PRETEXT_TASKS.get(config.task.name).make_model(pretext.task_model_config(config),
                                                           rngs=nnx.Rngs(config.seed))
    return load_flat_into_model(model, arrays)
  return None


def export_final_global(config: ml_collections.ConfigDict, workdir: str,
                        arrays: Mapping[str, np.ndarray]) -> dict[str, str] | None:
  """Exports the backbone(s) of the final global model (called by the ServerApp after the last round).

  Returns:
    {"rgb": <workdir>/export/backbone[, "flow": <workdir>/export/flow_backbone]}, or None when the local trainer
    has no exportable backbone.
  """
  model = final_model(config, arrays)
  if model is None:
    return None
  if config.federated.get("trainer", "pretext") == "goca":
    from fedvssl_jax.train import goca as goca_trainer

    return goca_trainer.export_backbones(config, workdir, model)
  from fedvssl_jax.train import pretext

  return {"rgb": pretext.export_backbone(config, workdir, state_lib.module_weights(model.backbone))}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  from fedvssl_jax.federated import server_state, simulation

  # The data (the synthetic demo videos, GOCA's flow videos and prototypes) is made once here, not by every client
  # process at the same time.
  splits = datasets.load_splits(config.data)
  goca = config.federated.get("trainer", "pretext") == "goca"
  if goca:
    from fedvssl_jax.train import goca as goca_trainer

    goca_trainer.ensure_flow(config, splits)
    goca_trainer.load_or_make_prototypes(config)
  fed = simulation.run_simulation(config, workdir)
  results: dict[str, Any] = {"federated": {k: fed[k] for k in ("rounds", "resumed_from", "final_global",
                                                               "final_global_loss") if k in fed}}
  exported = fed["export"]  # written by the ServerApp (export_final_global)
  if goca:
    results["export"] = exported
    model = final_model(config, server_state.load_final_global(fed["final_global"]))
    results.update(goca_trainer.evaluate_knn(config, model, splits))
  else:
    from fedvssl_jax.train import pretext

    export_dir = exported["rgb"]
    results["export"] = export_dir
    if config.knn.enabled:
      mesh = mesh_lib.make_mesh(config.get("mesh"))
      results["knn"] = pretext.evaluate_knn(config, export_dir, splits, mesh)
  return reporting.write_results(workdir, results, jsonl_name="federated_metrics.jsonl")
