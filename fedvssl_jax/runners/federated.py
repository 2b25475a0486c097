"""Federated pretraining end to end (`config.runner = "federated"`): Flower simulation, then export and kNN.

The rounds run through `fedvssl_jax.federated.simulation` (the same ServerApp / ClientApp as `flwr run .` and a real
deployment). At the end the ServerApp exports the final global model's backbone like any other checkpoint, through
the local trainer's `export` (`TaskSpec.export`): `<workdir>/export/backbone`, for GOCA also `export/flow_backbone`.
This runner then, when `config.knn.enabled`, evaluates kNN retrieval of the exported backbone(s) against the same
backbone at random initialisation. Results: `<workdir>/results.json` (+ plots).

Clients read FedVSSL `client_dist{k}.json` files: `config.federated.partitions.dir`, or, without it, the files this
runner writes to `<workdir>/partitions/` from the train split with `partitions.scheme` (`local.partition_split`).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import jax
import ml_collections

from fedvssl_jax import datasets
from fedvssl_jax.config_utils import ConfigError
from fedvssl_jax.evaluation import reporting
from fedvssl_jax.core import mesh as mesh_lib


def _with_partition_files(config: ml_collections.ConfigDict, splits: datasets.DatasetSplits, workdir: str
                          ) -> ml_collections.ConfigDict:
  """Without `federated.partitions.dir`: writes the clients of `partitions.scheme` (`local.partition_split`) as
  `<workdir>/partitions/client_dist{k}.json` + `partition_summary.json` and returns a config reading them; logs the
  choice either way (printed: the default log level shows warnings only)."""
  from fedvssl_jax.federated import task_trainer as local

  part = config.federated.partitions
  if part.get("dir"):
    print(f"federated clients: client_dist{{1..{config.federated.num_clients}}}.json of "
          f"config.federated.partitions.dir={part.dir}", flush=True)
    return config
  out = os.path.join(os.path.abspath(workdir), "partitions")
  stats = local.write_partition_files(config, splits, out)
  seed = "FedVSSL's fixed seeds" if part.scheme == "fedvssl-noniid" else f"seed {stats['seed']}"
  print(f"federated clients: no config.federated.partitions.dir, so partitions.scheme={part.scheme} ({seed}) split "
        f"the {stats['source']}: {stats['num_clients']} clients of {stats['min_size']}-{stats['max_size']} videos, "
        f"at most {max(stats['classes_per_client'])} classes each, written to {out}/client_dist{{k}}.json",
        flush=True)
  config = copy.deepcopy(config)
  config.federated.partitions.dir = out
  return config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  from fedvssl_jax.federated import simulation

  if jax.process_count() > 1:
    raise ConfigError("the federated runner is one process (a Flower simulation; each client trains on all devices "
                      "of its machine): start it without --num_processes / a multi-process launcher "
                      "(docs/scale_out.md)")

  # The data (the synthetic demo videos, GOCA's flow videos and prototypes) is made once here, not by every client
  # process at the same time.
  splits = datasets.load_splits(config.data)
  goca = config.federated.get("trainer", "pretext") == "goca"
  if goca:
    from fedvssl_jax.goca import runner as goca_trainer

    goca_trainer.ensure_flow(config, splits)
    goca_trainer.load_or_make_prototypes(config)
  config = _with_partition_files(config, splits, workdir)
  fed = simulation.run_simulation(config, workdir)
  results: dict[str, Any] = {"federated": {k: fed[k] for k in ("rounds", "resumed_from", "final_global",
                                                               "final_global_loss") if k in fed}}
  exported = fed["export"]  # written by the ServerApp (the local trainer's `export`)
  if goca:
    results["export"] = exported
    results.update(goca_trainer.evaluate_knn(config, exported, splits))
    if "knn" in results:
      results.update(num_queries=len(splits.test), num_classes=len(splits.class_names))
  else:
    from fedvssl_jax.pretext import runner as pretext

    export_dir = exported["rgb"]
    results["export"] = export_dir
    if config.knn.enabled:
      mesh = mesh_lib.make_mesh(config.get("mesh"))
      results["knn"] = pretext.evaluate_knn(config, export_dir, splits, mesh)
      results.update(pretext.knn_split_sizes(config, splits))
  return reporting.write_results(workdir, results, jsonl_name="federated_metrics.jsonl")
