"""Central pretraining with a FedVSSL pretext task (CtP, VCOP, Speed): `config.runner = "pretext"`.

The task (`config.task.name`, from `fedvssl_jax.pretext.PRETEXT_TASKS`) supplies the clip builder, the model
(backbone + head) and the loss. At the end the backbone is exported (`<workdir>/export/backbone`, with the downstream
strides: CtP's pretraining strides only change activations, not weights) and, when `config.knn.enabled`, evaluated by
kNN retrieval against the same backbone at random initialisation. Results: `<workdir>/results.json`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from fedvssl_jax import datasets
from fedvssl_jax.evaluation import knn as knn_lib
from fedvssl_jax.evaluation import reporting
from fedvssl_jax.models import export
from fedvssl_jax.pretext import PRETEXT_TASKS
from fedvssl_jax.core import distributed
from fedvssl_jax.core import loop
from fedvssl_jax.core import mesh as mesh_lib
from fedvssl_jax.core import optim
from fedvssl_jax.core import state as state_lib
from input_pipeline import pipeline


def task_model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.model` plus the clip length of `config.task` (CtP's head sizes its temporal conv from it)."""
  model_config = ml_collections.ConfigDict(config.model.to_dict())
  model_config.clip_len = int(config.task.clip_len)
  return model_config


def downstream_backbone_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The exported backbone's kwargs: the user's (width, BN eps, ...) without the task's pretraining-only ones."""
  kwargs = dict(config.model.backbone_kwargs.to_dict())
  for key in ("output", "spatial_downsample", "temporal_downsample", "pool_size"):
    kwargs.pop(key, None)
  return kwargs


def export_backbone(config: ml_collections.ConfigDict, workdir: str, backbone_state: dict) -> str:
  export_dir = os.path.join(workdir, "export", "backbone")
  export.save_backbone(export_dir, config.model.arch, downstream_backbone_kwargs(config), backbone_state)
  return export_dir


def random_init_backbone(config: ml_collections.ConfigDict) -> nnx.Module:
  """The same backbone, freshly initialised with the run's seed: the kNN baseline."""
  from fedvssl_jax.models import build_backbone

  return build_backbone(config.model.arch, rngs=nnx.Rngs(config.seed), output="pooled",
                        **downstream_backbone_kwargs(config))


def knn_split_sizes(config: ml_collections.ConfigDict, splits) -> dict[str, int]:
  """For results.json and the R@k plot: `num_queries` (test videos) and `num_classes` of the kNN data."""
  knn_splits = datasets.load_splits(config.knn.data) if config.knn.get("data") else splits
  return {"num_queries": len(knn_splits.test), "num_classes": len(knn_splits.class_names)}


def evaluate_knn(config: ml_collections.ConfigDict, export_dir: str, splits, mesh) -> dict[str, Any]:
  """R@k of the exported backbone and of a randomly initialised one on `config.knn.data` (default: the run's data)."""
  knn_splits = datasets.load_splits(config.knn.data) if config.knn.get("data") else splits
  builder = knn_lib.knn_test_builder(config.knn)
  pretrained, _ = export.load_backbone(export_dir, output="pooled")
  results = {
      "pretrained": knn_lib.knn_of_backbone(pretrained, knn_splits, builder, mesh, config.knn.batch_size,
                                            config.data.num_workers, config.knn.mean_center, desc="knn pretrained"),
      "random_init": knn_lib.knn_of_backbone(random_init_backbone(config), knn_splits, builder, mesh,
                                             config.knn.batch_size, config.data.num_workers, config.knn.mean_center,
                                             desc="knn random init"),
  }
  return results


def evaluate_trajectory_iou(config: ml_collections.ConfigDict, graphdef, state, splits, mesh) -> dict[str, Any]:
  """CtP's test of the pretext task itself (`forward_test`): mean IoU of the predicted patch trajectories on one
  clip of every held-out video (the test split; clips and patches drawn as in training, seeded per video), for the
  pretrained model and the same model at random initialisation.

  Returns:
    {"pretrained": {"mean": .., "per_frame": [T]}, "random_init": {..}, "num_clips": N} (IoU in [0, 1]).
  """
  from fedvssl_jax.pretext.base import device_video_fn
  from fedvssl_jax.pretext.ctp import trajectory_iou

  task = PRETEXT_TASKS.get(config.task.name)
  builder = task.make_builder(config.task)
  prepare = device_video_fn(builder, config.task, train=False)  # uint8 clips (device_augment): normalise on device
  records = splits.test or splits.train
  batch_size = int(config.trajectory_iou.batch_size)
  mesh_lib.check_batch_size(batch_size, mesh, what="config.trajectory_iou.batch_size")

  # Both models in one pass over the clips, decoded once. (One jitted function per model: an NNX GraphDef holds lists,
  # so it cannot be a static, hashed argument.)
  def iou_fn(gd):
    return jax.jit(lambda st, v, g: trajectory_iou(nnx.merge(gd, st), v if prepare is None else prepare(v, None), g),
                   in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh),
                                 mesh_lib.batch_sharding(mesh)))

  models = {"pretrained": state_lib.merge_model(graphdef, distributed.to_host(state)),
            "random_init": task.make_model(task_model_config(config), rngs=nnx.Rngs(config.seed))}
  split = {}
  for name, model in models.items():
    model.eval()
    gd, st = nnx.split(model)
    split[name] = iou_fn(gd), state_lib.put_replicated(st, mesh)
  ious = {name: [] for name in models}
  ds, _ = distributed.process_eval_dataset(records, builder, batch_size, num_workers=config.data.num_workers,
                                           seed=config.seed)
  for batch in ds:
    b = mesh_lib.put_batch({"video": batch["video"], "gt_trajs": batch["gt_trajs"]}, mesh)
    valid = distributed.allgather_rows(np.asarray(batch["valid"], bool))
    for name, (fn, st) in split.items():
      iou = np.asarray(distributed.to_host(fn(st, b["video"], b["gt_trajs"])))  # [B, N, T], all processes' rows
      ious[name].append(iou[valid])
  out = {}
  for name, rows in ious.items():
    iou = np.concatenate(rows)  # [clips, N, T]
    out[name] = {"mean": float(iou.mean()), "per_frame": [float(v) for v in iou.mean(axis=(0, 1))]}
  return {**out, "num_clips": int(len(iou))}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  mesh = mesh_lib.make_mesh(config.get("mesh"))
  mesh_lib.check_batch_size(config.batch_size, mesh)
  splits = datasets.load_splits(config.data)
  task = PRETEXT_TASKS.get(config.task.name)
  builder = task.make_builder(config.task)
  steps_per_epoch = max(1, len(splits.train) // config.batch_size)
  total_steps = config.num_steps if config.num_steps > 0 else int(config.num_epochs * steps_per_epoch)
  print(f"{config.task.name} pretraining: {len(splits.train)} videos, {total_steps} steps "
        f"({steps_per_epoch} per epoch), global batch {config.batch_size} on {mesh.devices.size} devices"
        f"{distributed.process_tag()}", flush=True)

  model = task.make_model(task_model_config(config), rngs=nnx.Rngs(config.seed))
  model.train()
  schedule = optim.make_schedule(config.optim, steps_per_epoch, total_steps)
  tx = optim.make_optimizer(config.optim, schedule)
  graphdef, state = state_lib.create_train_state(model, tx, mesh)
  del model
  train_ds = pipeline.make_train_dataset(
      splits.train, builder, batch_size=mesh_lib.local_batch_size(config.batch_size), seed=config.seed,
      num_workers=config.data.num_workers, process_index=jax.process_index(), process_count=jax.process_count())
  train_step = state_lib.make_train_step(graphdef, tx, task.train_loss_fn(config.task), mesh)
  try:
    batch_keys = tuple(task.batch_spec(config.task).keys())
  except NotImplementedError:
    batch_keys = None
  state, finished = loop.run_train_loop(config, workdir, state=state, train_step=train_step, train_ds=train_ds,
                                        total_steps=total_steps, schedule=schedule, batch_keys=batch_keys, mesh=mesh)
  if not finished:
    return {"stopped_at_step": int(state.step)}

  final = state_lib.merge_model(graphdef, jax.device_get(state))
  export_dir = export_backbone(config, workdir, state_lib.module_weights(final.backbone))
  results: dict[str, Any] = {"task": config.task.name, "steps": int(state.step), "export": export_dir}
  if config.task.name == "ctp" and config.get("trajectory_iou", {}).get("enabled", False):
    results["ctp_trajectory_iou"] = evaluate_trajectory_iou(config, graphdef, state, splits, mesh)
  if config.knn.enabled:
    results["knn"] = evaluate_knn(config, export_dir, splits, mesh)
    results.update(knn_split_sizes(config, splits))
  reporting.write_results(workdir, results)
  return results
