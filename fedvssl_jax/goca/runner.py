"""GOCA pretraining (`config.runner = "goca"`): two streams, fixed prototypes, prior-guided Sinkhorn, LARC.

Steps: make missing optical-flow videos (`config.flow.extract_missing`), load or make the hyperspherical prototypes,
train with the swapped-prediction loss (`fedvssl_jax.losses.goca.goca_loss`; the prior from
`config.goca.prior_start_epoch` on), export the RGB and flow backbones (`<workdir>/export/{backbone,flow_backbone}`)
and, when `config.knn.enabled`, evaluate kNN retrieval of the two-stream features (the average of the streams, GOCA's
`Avg`) against the same model at random initialisation. Results: `<workdir>/results.json` (+ plots).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from fedvssl_jax import datasets
from fedvssl_jax.config_utils import ConfigError
from fedvssl_jax.evaluation import knn as knn_lib
from fedvssl_jax.evaluation import reporting
from fedvssl_jax.goca import larc as larc_lib
from fedvssl_jax.goca import prototypes as prototypes_lib
from fedvssl_jax.goca.model import GOCAModel, ProjectionHead
from fedvssl_jax.losses import goca as goca_losses
from fedvssl_jax.models import export
from fedvssl_jax.core import distributed
from fedvssl_jax.core import loop
from fedvssl_jax.core import mesh as mesh_lib
from fedvssl_jax.core import state as state_lib
from input_pipeline import flow as flow_lib
from input_pipeline import pipeline


def ensure_flow(config: ml_collections.ConfigDict, splits: datasets.DatasetSplits) -> None:
  """Makes missing flow videos (when `config.flow.extract_missing`), else checks they exist.

  With `extract_missing`, the flow folders (GOCA's videos/ -> videos_flow/ rule) are made with the settings of
  `config.flow`; a folder recorded (`flow_params.json`) with other settings, e.g. a cached demo folder made by an
  older release, is remade, so a run never mixes flow of two encodings. A folder without a record is trusted.
  """
  if not config.flow.extract_missing or config.data.get("flow_template", ""):
    hint = ("config.data.flow_template is set, so they are not made here" if config.flow.extract_missing
            else "or set config.flow.extract_missing=True")
    datasets.check_flow_files(splits, hint=hint)
    return
  records = splits.train + splits.test
  missing = datasets.missing_flow(records)
  f = config.flow
  params = dataclasses.replace(flow_lib.DEFAULT_TVL1, **f.tvl1.to_dict())
  kwargs = dict(short_side=f.short_side or None, params=params, bound=float(f.bound), max_frames=None)
  wanted = flow_lib.flow_settings(crf=flow_lib.DEFAULT_CRF, **kwargs)
  missing_paths = {r.path for r in missing}
  roots: dict[tuple[str, str], bool] = {}  # (videos root, flow root) -> has a missing flow video
  for r in records:
    try:
      root = flow_lib.flow_root_for(r.path)
    except ValueError as e:
      raise ConfigError(f"{e}: set config.data.flow_template and make the flow videos with "
                        "scripts/extract_flow.py") from None
    roots[root] = roots.get(root, False) or r.path in missing_paths
  for (videos_dir, out_dir), has_missing in sorted(roots.items()):
    if has_missing or flow_lib.read_flow_settings(out_dir) not in (None, wanted):
      print(f"extracting optical flow: {videos_dir} -> {out_dir}", flush=True)
      report = flow_lib.extract_flow_folder(videos_dir, out_dir, workers=f.workers or None,
                                            remake_other_settings=True, backend=f.get("backend", "auto"),
                                            batch_size=f.get("batch_size", 0) or None, **kwargs)
      if report["failed"]:
        print(f"flow extraction failed for {len(report['failed'])} videos, e.g. {report['failed'][0]}", flush=True)


def load_or_make_prototypes(config: ml_collections.ConfigDict) -> np.ndarray:
  """`config.model.prototypes_path`, or prototypes made once and cached by (K, d, steps).

  The cache name carries `adam1` (GOCA's first Adam step, then SGD); files made before that change are not reused.
  """
  m = config.model
  if m.prototypes_path:
    return prototypes_lib.load_prototypes(m.prototypes_path, m.num_prototypes, m.embed_dim)
  cache = os.path.join(os.path.expanduser("~"), ".cache", "fedvssl_jax", "prototypes")
  path = os.path.join(cache, f"prototypes-{m.embed_dim}d-{m.num_prototypes}c_{m.prototype_steps}_adam1.npy")
  if not os.path.exists(path):
    print(f"making {m.num_prototypes} hyperspherical prototypes in {m.embed_dim}-d ({m.prototype_steps} steps) "
          f"-> {path}", flush=True)
    c = prototypes_lib.make_prototypes(m.num_prototypes, m.embed_dim, m.prototype_steps, seed=300)
    os.makedirs(cache, exist_ok=True)
    prototypes_lib.save_prototypes(path, np.asarray(c))
  return prototypes_lib.load_prototypes(path, m.num_prototypes, m.embed_dim)


def build_model(config: ml_collections.ConfigDict, rngs: nnx.Rngs, prototypes: np.ndarray | None = None) -> GOCAModel:
  m = config.model
  if prototypes is None:
    prototypes = load_or_make_prototypes(config)
  return GOCAModel(m.arch, m.backbone_kwargs.to_dict(), m.num_prototypes, m.embed_dim, m.hidden_dim, m.share_head,
                   prototypes=prototypes, learn_prototypes=m.learn_prototypes, streams=model_streams(config),
                   merge=config.goca.get("merge", "prior"), stream_kwargs=stream_backbone_kwargs(config), rngs=rngs)


def stream_backbone_kwargs(config: ml_collections.ConfigDict) -> dict[str, dict]:
  """{stream: that stream's backbone kwargs}: `config.model.backbone_kwargs`, and for RGB `residual_frames=True` when
  `config.model.rgb_residual_frames` (the differences of consecutive frames, `VideoResNet(residual_frames=True)`).
  The model is built and its backbones exported with these."""
  kwargs = config.model.backbone_kwargs.to_dict()
  out = {stream: dict(kwargs) for stream in model_streams(config)}
  if config.model.get("rgb_residual_frames", False) and "rgb" in out:
    out["rgb"]["residual_frames"] = True
  return out


MODALITIES = {"rgb_flow": ("rgb", "flow"), "rgb": ("rgb",), "flow": ("flow",)}


def model_streams(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The streams `config.goca.modality` trains: GOCA's `--video_channels` rgb_flow (default) | rgb | flow."""
  modality = config.goca.get("modality", "rgb_flow")
  if modality not in MODALITIES:
    raise ConfigError(f"config.goca.modality={modality!r}: expected one of {', '.join(MODALITIES)}")
  merge = config.goca.get("merge", "prior")
  if merge not in ("prior", "avg"):
    raise ConfigError(f"config.goca.merge={merge!r}: expected prior (PriorRgbFlow) or avg (AvgRgbFlow)")
  if merge == "avg" and modality != "rgb_flow":
    raise ConfigError(f"config.goca.merge='avg' averages two streams; config.goca.modality is {modality!r}")
  return MODALITIES[modality]


def queue_streams(config: ml_collections.ConfigDict) -> int:
  """Embedding sets the queue holds: 2 for the prior-coupled streams, 1 for a single stream or `merge=avg`."""
  return 2 if len(model_streams(config)) == 2 and config.goca.get("merge", "prior") == "prior" else 1


def view_keys(config: ml_collections.ConfigDict) -> tuple[list[str], list[str]]:
  """Batch keys of the RGB and flow view groups, in view order (the first group's clips are the assigned views)."""
  from fedvssl_jax.goca import data as goca_data

  lens = list(config.views.clip_lens)
  streams = model_streams(config)
  return tuple(goca_data.view_keys(lens, st) if st in streams else [] for st in ("rgb", "flow"))


class SwAVQueue(nnx.Variable):
  """Embeddings of past assigned views [2 streams, |assign_views|, L, d] (not trained, not exchanged)."""


def add_queue(model: GOCAModel, config: ml_collections.ConfigDict) -> None:
  """Gives `model` an empty SwAV queue when `config.goca.queue_length` > 0 (the train state then carries it)."""
  length = int(config.goca.get("queue_length", 0))
  if length > 0:
    if length % config.batch_size:
      raise ConfigError(f"config.goca.queue_length={length} must be a multiple of config.batch_size="
                        f"{config.batch_size}")
    model.queue = SwAVQueue(goca_losses.init_queue(length, len(config.goca.assign_views), config.model.embed_dim,
                                                   num_streams=queue_streams(config)))


def make_loss_fn(config: ml_collections.ConfigDict, use_prior: bool, use_queue: bool = False,
                 push_queue: bool = True):
  """`loss_fn(model, batch, rng)` of GOCA (Sinkhorn in float32, no gradient through the codes).

  With a queue on the model and `push_queue`, the step pushes the assigned views' embeddings into it; `use_queue`
  also prepends the queued embeddings' scores to the Sinkhorn input (SwAV), once the queue is full.
  """
  g = config.goca
  rgb_keys, flow_keys = view_keys(config)

  streams = model_streams(config)
  coupled = queue_streams(config) == 2  # GOCA's PriorRgbFlow; else one SwAV loss (one stream or AvgRgbFlow)
  suffix = "" if g.get("merge", "prior") == "avg" else f"_{streams[0]}"

  def loss_fn(model, batch, rng):
    del rng
    out = model([batch[k] for k in rgb_keys] or None, [batch[k] for k in flow_keys] or None)
    queue = model.queue[...] if hasattr(model, "queue") else None
    queued_scores = None
    if use_queue and queue is not None:
      queued_scores = goca_losses.queue_scores(queue, prototypes_lib.normalize_rows(model.prototypes[...]))
    if coupled:
      loss, metrics = goca_losses.goca_loss(
          out["scores_rgb"], out["scores_flow"], assign_views=tuple(g.assign_views), temperature=g.temperature,
          epsilon=g.epsilon, epsilon2=g.epsilon2, num_iters=g.sinkhorn_iters, use_prior=use_prior,
          prior_sign=g.prior_sign, divide_twice=g.divide_twice, queue=queued_scores,
          sinkhorn_cycle=int(g.get("sinkhorn_cycle", 1)))
      new_z = (out["z_rgb"], out["z_flow"])
    else:
      loss, metrics = goca_losses.swav_loss(
          out["scores" + suffix], assign_views=tuple(g.assign_views), temperature=g.temperature,
          epsilon=g.epsilon, num_iters=g.sinkhorn_iters, divide_twice=g.divide_twice,
          queue=None if queued_scores is None else queued_scores[0])
      new_z = (out["z" + suffix],)
    if queue is not None and push_queue:
      model.queue[...] = goca_losses.push_queue(queue, new_z, tuple(g.assign_views))
    if config.model.learn_prototypes and config.model.separation_weight:
      sep = prototypes_lib.separation_loss(model.prototypes[...])
      metrics = dict(metrics, separation=sep)
      loss = loss + config.model.separation_weight * sep
    return loss, metrics

  return loss_fn


def make_builder(config: ml_collections.ConfigDict):
  from fedvssl_jax.goca.data import GOCAClipBuilder

  v = config.views
  streams = model_streams(config)
  return GOCAClipBuilder(clip_lens=tuple(v.clip_lens), num_clips=tuple(v.num_clips), stride=v.stride,
                         min_start_distance=v.min_start_distance, crop_size=v.crop_size,
                         short_side_range=tuple(v.short_side_range) if v.short_side_range else None,
                         flip_p=v.flip_p, jitter=tuple(v.jitter) if v.jitter else None, grayscale_p=v.grayscale_p,
                         with_flow="flow" in streams, with_rgb="rgb" in streams)


def make_tx(config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int):
  o = config.optim
  warmup = min(int(o.warmup_epochs * steps_per_epoch), total_steps)
  schedule = larc_lib.goca_schedule(o.base_lr, config.batch_size, warmup, total_steps, start_warmup=o.start_warmup,
                                    final_lr=o.final_lr)
  tx = larc_lib.goca_optimizer(schedule, momentum=o.momentum, weight_decay=o.weight_decay, trust=o.trust)
  return tx, schedule


def knn_two_stream(rgb: nnx.Module, flow: nnx.Module, config, splits, mesh, desc: str) -> dict[str, dict[str, float]]:
  """R@k of the two-stream features (per view the average of the RGB and flow backbone features, GOCA's `Avg`; flow
  clips at the same frames as the RGB ones) and of each stream alone, from one pass over the videos.

  Args:
    rgb, flow: the two backbones (pooled output), e.g. `GOCAModel.backbone.rgb` / `.flow` or exported ones.

  Returns:
    {"rgb+flow": {"R@1": ..}, "rgb": {..}, "flow": {..}}.
  """
  feature_fn = knn_lib.stream_view_features((("video", rgb), ("flow", flow)), mesh, per_stream=True)
  return knn_lib.knn_retrieval(feature_fn, splits, knn_lib.knn_test_builder(config.knn, with_flow=True), mesh,
                               config.knn.batch_size, config.data.num_workers, config.knn.mean_center,
                               inputs=("video", "flow"), desc=desc, names=knn_lib.STREAM_SETS)


def export_backbones(config: ml_collections.ConfigDict, workdir: str, model: GOCAModel) -> dict[str, str]:
  """Writes the backbones as exported checkpoints: {"rgb": <workdir>/export/backbone, "flow": .../flow_backbone}
  (a single-stream model: its one entry)."""
  per_stream = stream_backbone_kwargs(config)
  out = {}
  for stream in model.streams:
    name = "backbone" if stream == "rgb" else "flow_backbone"
    path = os.path.join(workdir, "export", name)
    kwargs = {k: v for k, v in per_stream[stream].items() if k != "output"}
    export.save_backbone(path, config.model.arch, kwargs, state_lib.module_weights(getattr(model.backbone, stream)))
    out[stream] = path
  return out


KNN_FEATURES = ("backbone", "head", "prototypes")


def model_view_features(model: GOCAModel, feature: str, mesh):
  """A jitted `batch -> [B, V, S, D']` of a GOCA model (eval mode): GOCA's kNN features beyond the backbone.

  feature: "head" = the L2-normalised projection z (GOCA's KNN_all `x`), "prototypes" = the scores z C^T
  (KNN_emb_prot / KNN_all `prots`). Feature sets S: one stream: [that stream]; two streams: [the averaged streams
  (shared head: of (h_rgb + h_flow) / 2, as GOCA's Avg; separate heads: the mean of the two), rgb, flow], the
  order of `knn.STREAM_SETS`. `batch["video"]` / `batch["flow"]`: float [B, V, T, H, W, 3].
  """
  from fedvssl_jax.core import mesh as mesh_lib

  if feature not in ("head", "prototypes"):
    raise ConfigError(f"config.knn.feature={feature!r}: the model features are 'head' or 'prototypes'")
  model.eval()
  graphdef, state = nnx.split(model)
  keys = {"rgb": "video", "flow": "flow"}

  def fn(state, batch):
    m = nnx.merge(graphdef, state)
    c = prototypes_lib.normalize_rows(m.prototypes[...].astype(jax.numpy.float32))

    def out(e):
      z = e / jax.numpy.maximum(jax.numpy.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
      return z if feature == "head" else z @ c.T

    hs = {}
    for st in m.streams:
      x = batch[keys[st]]
      b, v = x.shape[:2]
      hs[st] = getattr(m.backbone, st)(x.reshape((b * v,) + x.shape[2:])).astype(jax.numpy.float32)
    sets = [out(m._head(st)(hs[st])) for st in m.streams]
    if len(sets) == 2:
      shared = isinstance(m.head, ProjectionHead)
      sets = [out(m.head((hs["rgb"] + hs["flow"]) / 2)) if shared else (sets[0] + sets[1]) / 2] + sets
    return jax.numpy.stack([s_.reshape(b, v, -1) for s_ in sets], axis=2)

  jitted = jax.jit(fn, in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)))
  state = state_lib.put_replicated(state, mesh)
  return lambda batch: jitted(state, batch)


def knn_of_model(model: GOCAModel, config, splits, mesh, desc: str) -> dict[str, dict[str, float]]:
  """R@k of `model_view_features(model, config.knn.feature)`: {set name: R@k} (sets as in `model_view_features`)."""
  streams = model.streams
  names = knn_lib.STREAM_SETS if len(streams) == 2 else streams
  inputs = tuple({"rgb": "video", "flow": "flow"}[st] for st in streams)
  return knn_lib.knn_retrieval(model_view_features(model, config.knn.feature, mesh), splits,
                               knn_lib.knn_test_builder(config.knn, with_flow="flow" in streams), mesh,
                               config.knn.batch_size, config.data.num_workers, config.knn.mean_center,
                               inputs=inputs, desc=desc, names=names)


def evaluate_knn(config: ml_collections.ConfigDict, exported: dict[str, str],
                 splits: datasets.DatasetSplits, model: GOCAModel | None = None) -> dict[str, Any]:
  """kNN of the exported backbones and of a randomly initialised model when `config.knn.enabled` (else {}).

  Args:
    exported: {"rgb": dir, "flow": dir} of `export_backbones`.
    splits: the run's splits, their flow videos made / checked by `ensure_flow`.
    model: the pretrained model; needed for `config.knn.feature` "head" / "prototypes" (GOCA's KNN_all /
      KNN_emb_prot), which retrieve with the model's projection / prototype scores instead of the backbone.

  Returns:
    `knn`, the two-stream R@k (the protocol) of the pretrained and the random-init model, and `knn_per_stream`, each
    stream's own R@k.
  """
  if not config.knn.enabled:
    return {}
  mesh = mesh_lib.make_mesh(config.get("mesh"))
  feature = config.knn.get("feature", "backbone")
  if feature not in KNN_FEATURES:
    raise ConfigError(f"config.knn.feature={feature!r}: expected one of {', '.join(KNN_FEATURES)}")
  if feature != "backbone":
    if model is None:
      raise ConfigError(f"config.knn.feature={feature!r} needs the pretrained model (not only exported backbones)")
    pre = knn_of_model(model, config, splits, mesh, f"knn pretrained ({feature})")
    rnd = knn_of_model(build_model(config, nnx.Rngs(config.seed)), config, splits, mesh, f"knn random init ({feature})")
    first = next(iter(pre))
    res = {"knn": {"pretrained": pre.pop(first), "random_init": rnd.pop(first)}, "knn_feature": feature}
    if pre:
      res["knn_per_stream"] = {"pretrained": pre, "random_init": rnd}
    return res
  if len(exported) == 1:  # one stream: its own R@k
    (stream, path), = exported.items()
    key = "video" if stream == "rgb" else "flow"
    builder = knn_lib.knn_test_builder(config.knn, with_flow=stream == "flow")

    def one(backbone, desc):
      return knn_lib.knn_retrieval(knn_lib.stream_view_features(((key, backbone),), mesh), splits, builder, mesh,
                                   config.knn.batch_size, config.data.num_workers, config.knn.mean_center,
                                   inputs=(key,), desc=desc)

    pretrained = one(export.load_backbone(path, output="pooled")[0], f"knn pretrained ({stream})")
    random_backbone = getattr(build_model(config, nnx.Rngs(config.seed)).backbone, stream)
    random_init = one(random_backbone, f"knn random init ({stream})")
    return {"knn": {"pretrained": pretrained, "random_init": random_init}, "knn_stream": stream}
  rgb, _ = export.load_backbone(exported["rgb"], output="pooled")
  flow, _ = export.load_backbone(exported["flow"], output="pooled")
  pretrained = knn_two_stream(rgb, flow, config, splits, mesh, "knn pretrained")
  random_model = build_model(config, nnx.Rngs(config.seed))
  random_init = knn_two_stream(random_model.backbone.rgb, random_model.backbone.flow, config, splits, mesh,
                               "knn random init")
  return {"knn": {"pretrained": pretrained.pop("rgb+flow"), "random_init": random_init.pop("rgb+flow")},
          "knn_per_stream": {"pretrained": pretrained, "random_init": random_init}}


def step_variant(config: ml_collections.ConfigDict, n: int, steps_per_epoch: int,
                 total_steps: int) -> tuple[bool, bool, bool]:
  """(prior, push, use) of step n: the prior from `goca.prior_start_epoch`; the SwAV queue as GOCA's ssv_main.py.

  GOCA creates the (zero) queue at the start of epoch `epoch_queue_starts`, pushes every step from then on, and
  prepends it to the Sinkhorn input once its last row is non-zero, i.e. after L / B pushes: pushed from step
  s0 = epoch_queue_starts * steps_per_epoch, used from step s0 + L / B (B the global batch).
  """
  g = config.goca
  prior_from = int(g.prior_start_epoch * steps_per_epoch) if g.use_prior else total_steps + 1
  length = int(g.get("queue_length", 0))
  if length > 0:
    push_from = math.ceil(g.epoch_queue_starts * steps_per_epoch - 1e-9)
    use_from = push_from + -(-length // config.batch_size)
  else:
    push_from = use_from = total_steps + 1
  return n >= prior_from, n >= push_from, n >= use_from


def make_step_dispatch(config: ml_collections.ConfigDict, graphdef, tx, mesh, steps_per_epoch: int,
                       total_steps: int):
  """`step(state, batch, rng)` that picks the compiled variant for the step (`step_variant`: the prior from
  `goca.prior_start_epoch`, the queue filled from `goca.epoch_queue_starts` and used once full). Variants compile
  lazily.
  """
  compiled = {}
  host_step = []  # the step number kept on the host, so the dispatch does not wait for the device each step

  def step(state, batch, rng):
    if not host_step:
      host_step.append(int(jax.device_get(state.step)))  # once: 0, or the step a resumed run restored
    n = host_step[0]
    host_step[0] += 1
    key = step_variant(config, n, steps_per_epoch, total_steps)
    if key not in compiled:
      loss_fn = make_loss_fn(config, use_prior=key[0], use_queue=key[2], push_queue=key[1])
      compiled[key] = state_lib.make_train_step(graphdef, tx, loss_fn, mesh)
    return compiled[key](state, batch, rng)

  return step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  mesh = mesh_lib.make_mesh(config.get("mesh"))
  mesh_lib.check_batch_size(config.batch_size, mesh)
  streams = model_streams(config)
  if "flow" in streams and not config.data.get("with_flow", False):
    raise ConfigError(f"config.data.with_flow must be True for GOCA with a flow stream (config.goca.modality="
                      f"{config.goca.get('modality', 'rgb_flow')!r})")
  splits = datasets.load_splits(config.data)
  with distributed.primary_first("goca flow and prototypes"):  # made once, by process 0
    if "flow" in streams:
      ensure_flow(config, splits)
    load_or_make_prototypes(config)
  steps_per_epoch = max(1, len(splits.train) // config.batch_size)
  total_steps = config.num_steps if config.num_steps > 0 else int(config.num_epochs * steps_per_epoch)
  print(f"GOCA pretraining ({'+'.join(streams)}, merge {config.goca.get('merge', 'prior')}): "
        f"{len(splits.train)} videos, {total_steps} steps ({steps_per_epoch} per epoch), global "
        f"batch {config.batch_size} on {mesh.devices.size} devices{distributed.process_tag()}", flush=True)

  model = build_model(config, nnx.Rngs(config.seed))
  add_queue(model, config)
  model.train()
  tx, schedule = make_tx(config, steps_per_epoch, total_steps)
  graphdef, state = state_lib.create_train_state(model, tx, mesh)
  del model
  train_step = make_step_dispatch(config, graphdef, tx, mesh, steps_per_epoch, total_steps)

  rgb_keys, flow_keys = view_keys(config)
  train_ds = pipeline.make_train_dataset(
      splits.train, make_builder(config), batch_size=mesh_lib.local_batch_size(config.batch_size), seed=config.seed,
      num_workers=config.data.num_workers, process_index=jax.process_index(), process_count=jax.process_count())
  state, finished = loop.run_train_loop(config, workdir, state=state, train_step=train_step, train_ds=train_ds,
                                        total_steps=total_steps, schedule=schedule,
                                        batch_keys=tuple(rgb_keys + flow_keys), mesh=mesh)
  if not finished:
    return {"stopped_at_step": int(state.step)}
  final = state_lib.merge_model(graphdef, jax.device_get(state))
  exported = export_backbones(config, workdir, final)
  results: dict[str, Any] = {"method": "goca", "steps": int(state.step), "export": exported}
  results.update(evaluate_knn(config, exported, splits, model=final))
  if "knn" in results:
    results.update(num_queries=len(splits.test), num_classes=len(splits.class_names))
  return reporting.write_results(workdir, results)
