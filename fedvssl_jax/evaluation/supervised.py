"""Supervised training / fine-tuning of a video classifier (`config.runner = "supervised"`).

The CtP / FedVSSL fine-tuning protocol: one clip per video per step, cross-entropy, SGD; test on N uniform clips per
video with their logits averaged. Writes to the workdir: `config.json`, `metrics.jsonl` + TensorBoard events,
Orbax checkpoints (resumed automatically), `export/backbone` (the fine-tuned backbone + fc) and `results.json`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from fedvssl_jax import datasets
from fedvssl_jax.config_utils import ConfigError
from fedvssl_jax.evaluation import classification, reporting
from fedvssl_jax.models import export, pretrained
from fedvssl_jax.models.classifier import VideoClassifier
from fedvssl_jax.core import distributed
from fedvssl_jax.core import loop
from fedvssl_jax.core import mesh as mesh_lib
from fedvssl_jax.core import optim
from fedvssl_jax.core import state as state_lib
from input_pipeline import pipeline


def classification_loss(model: nnx.Module, batch: dict[str, jax.Array], rng: jax.Array):
  """Cross-entropy of `model(batch["video"])` against `batch["label"]`; also top-1 accuracy."""
  del rng
  logits = model(batch["video"]).astype(jnp.float32)
  labels = batch["label"]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
  return loss, {"accuracy": accuracy}


def build_model(config: ml_collections.ConfigDict, num_classes: int, rngs: nnx.Rngs,
                random_init: bool = False) -> tuple[VideoClassifier, str, dict]:
  """The classifier, with the backbone of `config.init.backbone_checkpoint` when set.

  Args:
    random_init: build the checkpoint's architecture (its model.json) with random weights instead (the scratch
      side of `config.compare_scratch`).
  Returns:
    (model, arch, backbone_kwargs actually used) — a loaded backbone keeps the architecture stored with it.
  """
  ckpt = config.init.get("backbone_checkpoint", "")
  if ckpt and random_init:
    pretrained.check_backbone_dir(ckpt, "config.init.backbone_checkpoint")
    meta = export.read_meta(ckpt)
    kwargs = dict(meta["backbone_kwargs"], output="pooled")
    model = VideoClassifier(meta["arch"], kwargs, num_classes, config.model.dropout, rngs=rngs)
    return model, meta["arch"], kwargs
  if ckpt:
    # A wrong path / a state-dict file / a mismatch is a one-line ConfigError naming the key.
    backbone, meta = pretrained.load_pretrained_backbone(ckpt, "config.init.backbone_checkpoint", output="pooled")
    if meta["arch"] != config.model.arch:
      logging.warning("config.model.arch=%s but %s holds a %s backbone; using the checkpoint's", config.model.arch,
                      ckpt, meta["arch"])
    kwargs = dict(meta["backbone_kwargs"], output="pooled")
    model = VideoClassifier(meta["arch"], kwargs, num_classes, config.model.dropout, rngs=rngs, backbone=backbone)
    return model, meta["arch"], kwargs
  kwargs = dict(config.model.backbone_kwargs.to_dict(), output="pooled")
  model = VideoClassifier(config.model.arch, kwargs, num_classes, config.model.dropout, rngs=rngs)
  return model, config.model.arch, kwargs


# config.train.augment: "ctp" = CtP's fine-tuning augmentation (train.scales_wh (w, h) resize + train.ctp_color's three
# colour ops); "colorjitter" = random short side (train.short_side_sizes) + torchvision-style jitter (train.jitter).
AUGMENTS = ("ctp", "colorjitter")


def make_builders(config: ml_collections.ConfigDict):
  """The training and test clip builders of `config.train` / `config.test` (`config.train.augment`: `AUGMENTS`;
  `config.test.resize_wh` (w, h) replaces `test.short_side` when set)."""
  t = config.train
  augment = t.get("augment", "colorjitter")
  if augment not in AUGMENTS:
    raise ConfigError(f"config.train.augment={augment!r}: expected one of {', '.join(AUGMENTS)}")
  ctp = augment == "ctp"
  train_builder = pipeline.SupervisedTrainBuilder(
      clip_len=t.clip_len, stride=t.stride, short_side_sizes=tuple(t.short_side_sizes), crop_size=t.crop_size,
      flip_p=t.flip_p, jitter=tuple(t.jitter) if t.jitter and not ctp else None,
      scales_wh=[tuple(wh) for wh in t.scales_wh] if ctp else None, ctp_color=tuple(t.ctp_color) if ctp else None)
  e = config.test
  test_builder = pipeline.MultiViewTestBuilder(
      clip_len=e.clip_len, stride=e.stride, num_clips=e.num_clips, short_side=e.short_side, crop_size=e.crop_size,
      three_crop=e.three_crop, resize_wh=tuple(e.resize_wh) if e.get("resize_wh") else None)
  return train_builder, test_builder


def evaluate(graphdef: nnx.GraphDef, state: state_lib.TrainState, records, test_builder, mesh,
             batch_size: int, num_classes: int, num_workers: int = 0) -> dict[str, float]:
  """Multi-view test accuracy: logits of each video's views averaged, then softmax (top-1/5, mean class, in %)."""
  eval_graphdef = state_lib.eval_graphdef(graphdef, state)

  def apply(model, batch):
    video = batch["video"]  # [B, V, T, H, W, 3]
    b, v = video.shape[:2]
    logits = model(video.reshape((b * v,) + video.shape[2:]))
    return logits.reshape(b, v, -1).astype(jnp.float32)

  eval_step = state_lib.make_eval_step(eval_graphdef, apply, mesh)
  probs, labels = [], []
  t0 = time.time()
  ds, _ = distributed.process_eval_dataset(records, test_builder, batch_size, num_workers=num_workers)
  for i, batch in enumerate(ds):
    valid = distributed.allgather_rows(np.asarray(batch["valid"], bool))
    logits = np.asarray(distributed.to_host(eval_step(state, mesh_lib.put_batch({"video": batch["video"]}, mesh))))
    probs.append(classification.average_view_logits(logits)[valid])
    labels.append(distributed.allgather_rows(np.asarray(batch["label"]))[valid])
    if (i + 1) % 10 == 0:
      logging.info("evaluated %d batches (%.1fs)", i + 1, time.time() - t0)
  probs_np = np.concatenate(probs) if probs else np.zeros((0, num_classes), np.float32)
  labels_np = np.concatenate(labels) if labels else np.zeros((0,), np.int32)
  return classification.classification_metrics(probs_np, labels_np, num_classes)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """One supervised run; with `config.compare_scratch`, two (`compare_with_scratch`)."""
  if config.get("compare_scratch", False):
    return compare_with_scratch(config, workdir)
  return train_once(config, workdir)


def compare_with_scratch(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Fine-tunes `config.init.backbone_checkpoint` and a random initialisation of the same architecture with the same
  recipe, seed and data order, in `<workdir>/pretrained` and `<workdir>/scratch` (each a complete run that resumes on
  its own); `<workdir>/results.json` holds both test figures: {"finetune": {"pretrained": test, "scratch": test}}."""
  if not config.init.get("backbone_checkpoint", ""):
    raise ConfigError("config.compare_scratch=True needs config.init.backbone_checkpoint: the exported backbone to "
                      "compare with a random init (e.g. the CtP demo's <workdir>/export/backbone)")
  runs = {}
  for name, random_init in (("pretrained", False), ("scratch", True)):
    logging.info("compare_scratch: fine-tuning the %s backbone in %s/%s", name, workdir, name)
    print(f"compare_scratch: {name} run in {os.path.join(workdir, name)}", flush=True)
    runs[name] = train_once(config, os.path.join(workdir, name), random_init=random_init)
    if "test" not in runs[name]:  # stopped early (max_steps_this_run): rerun the command to go on
      return {"stopped_in": name, **runs[name]}
  results = {"finetune": {name: r["test"] for name, r in runs.items()},
             "backbone_checkpoint": config.init.backbone_checkpoint,
             "runs": {name: os.path.join(workdir, name) for name in runs}, "steps": runs["pretrained"]["steps"]}
  return reporting.write_results(workdir, results)


def train_once(config: ml_collections.ConfigDict, workdir: str, random_init: bool = False) -> dict[str, Any]:
  """Trains and tests one classifier in `workdir` (`random_init`: see `build_model`)."""
  mesh = mesh_lib.make_mesh(config.get("mesh"))
  mesh_lib.check_batch_size(config.batch_size, mesh)
  splits = datasets.load_splits(config.data)
  num_classes = config.model.num_classes if config.model.num_classes > 0 else splits.num_classes
  steps_per_epoch = max(1, len(splits.train) // config.batch_size)
  total_steps = config.num_steps if config.num_steps > 0 else int(config.num_epochs * steps_per_epoch)
  logging.info("%d train / %d test videos, %d classes, %d steps (%d per epoch)", len(splits.train),
               len(splits.test), num_classes, total_steps, steps_per_epoch)

  model, arch, backbone_kwargs = build_model(config, num_classes, nnx.Rngs(config.seed), random_init=random_init)
  model.train()
  schedule = optim.make_schedule(config.optim, steps_per_epoch, total_steps)
  tx = optim.make_optimizer(config.optim, schedule)
  graphdef, state = state_lib.create_train_state(model, tx, mesh)
  del model

  train_builder, test_builder = make_builders(config)
  train_ds = pipeline.make_train_dataset(
      splits.train, train_builder, batch_size=mesh_lib.local_batch_size(config.batch_size), seed=config.seed,
      num_workers=config.data.num_workers, process_index=jax.process_index(), process_count=jax.process_count())
  train_step = state_lib.make_train_step(graphdef, tx, classification_loss, mesh)
  state, finished = loop.run_train_loop(
      config, workdir, state=state, train_step=train_step, train_ds=train_ds, total_steps=total_steps,
      schedule=schedule, batch_keys=("video", "label"))
  if not finished:
    return {"stopped_at_step": int(state.step)}

  results: dict[str, Any] = {"steps": int(state.step)}
  results["test"] = evaluate(graphdef, state, splits.test, test_builder, mesh, config.test.batch_size, num_classes,
                             config.data.num_workers)
  logging.info("test: %s", results["test"])
  final = state_lib.merge_model(graphdef, jax.device_get(state))
  export_dir = os.path.join(workdir, "export", "backbone")
  export.save_backbone(export_dir, arch, backbone_kwargs, state_lib.module_weights(final.backbone),
                       fc_state=state_lib.module_weights(final.head.fc))
  results["export"] = export_dir
  return reporting.write_results(workdir, results)

