"""kNN retrieval (R@k) of frozen backbone features, as FedVSSL and GOCA report it.

Protocol: each video gives N uniform clips x (1 or 3) spatial crops; each view's pooled backbone feature is
L2-normalised and the views are averaged (two-stream models: the RGB and flow features are averaged, GOCA's `Avg`);
test videos query the train videos by cosine similarity; R@k is the percentage of queries with at least one video of
their class among the k nearest. `mean_center=True` subtracts the gallery mean first (CoCLR's variant).

Also the runner `config.runner = "knn"` (configs/knn.py, scripts/knn_eval.py): kNN retrieval of an exported backbone
(`config.init.backbone_checkpoint`, plus `config.init.flow_backbone_checkpoint` for a two-stream model) on
`config.data`; R@k in `<workdir>/results.json` (+ a bar plot) and the per-video features in
`<workdir>/features_{train,test}.npz`. The feature extraction shared with the linear probe (`eval_split_features`)
lives here too.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

from fedvssl_jax.evaluation import reporting

KS = (1, 5, 10, 20, 50)
# The feature sets of a two-stream model, in the order of `stream_view_features(..., per_stream=True)`: the per-view
# average of the streams (GOCA's `Avg`, the protocol), then the RGB and the flow stream alone.
STREAM_SETS = ("rgb+flow", "rgb", "flow")


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


def recall_at_k(query: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
                ks: Sequence[int] = KS, mean_center: bool = False) -> dict[str, float]:
  """R@k in percent for cosine-similarity retrieval.

  Args:
    query: [Q, D] features of the query (test) videos.
    query_labels: [Q] int labels.
    gallery: [G, D] features of the gallery (train) videos.
    gallery_labels: [G] int labels.
    ks: the k values; a k larger than G is clipped to G.
    mean_center: subtract the gallery mean from both sets before normalising (CoCLR).
  Returns:
    {"R@1": .., "R@5": .., ...}
  """
  query = np.asarray(query, np.float32)
  gallery = np.asarray(gallery, np.float32)
  if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
    raise ValueError(f"features must be [Q, D] and [G, D], got {query.shape} and {gallery.shape}")
  if mean_center:
    mu = gallery.mean(axis=0, keepdims=True)
    query, gallery = query - mu, gallery - mu
  sims = l2_normalize(query) @ l2_normalize(gallery).T  # [Q, G]
  kmax = min(max(ks), gallery.shape[0])
  # Stable sort so ties are broken by gallery order, the same everywhere.
  order = np.argsort(-sims, axis=1, kind="stable")[:, :kmax]
  hits = np.asarray(gallery_labels)[order] == np.asarray(query_labels)[:, None]  # [Q, kmax]
  return {f"R@{k}": float(100.0 * np.mean(np.any(hits[:, :min(k, kmax)], axis=1))) for k in ks}


def extract_video_features(feature_fn: Callable[[dict[str, jax.Array]], jax.Array], records, builder, mesh,
                           batch_size: int, num_workers: int = 0, inputs: Sequence[str] = ("video",),
                           desc: str = "features"):
  """Per-video features: views L2-normalised, then averaged.

  Args:
    feature_fn: jitted `batch -> [B, V, D]` features of each view (for two streams: already averaged over streams),
      or `[B, V, S, D]` for S feature sets at once (each normalised and averaged on its own).
    records: the videos.
    builder: a multi-view test builder (`input_pipeline.pipeline.MultiViewTestBuilder`).
    mesh: the device mesh (the batch is sharded over `data`).
    batch_size: videos per (global) batch (a multiple of the data-axis size and of the process count).
    inputs: batch entries passed to `feature_fn`.
  Returns:
    (features [N, D] (or [N, S, D]) float32, labels [N] int, indices [N] int: each row's index in `records`), in
    record order; videos that could not be read are left out. With several processes each decodes its shard of the
    records (`p::P`) and every process returns the features of all of them.
  """
  from fedvssl_jax.core import distributed
  from fedvssl_jax.core import mesh as mesh_lib

  from input_pipeline.progress import Progress

  feats, labels, indices = [], [], []
  ds, n_batches = distributed.process_eval_dataset(records, builder, batch_size, num_workers=num_workers)
  # A bar on a terminal; in a log file about 10 plain lines with rate and ETA (process 0 only).
  progress = Progress(n_batches, f"[{desc}]{distributed.process_tag()}", unit="batch", stream=sys.stdout, lines=10) \
      if jax.process_index() == 0 else None
  for i, batch in enumerate(ds):
    out = distributed.to_host(feature_fn(mesh_lib.put_batch({k: batch[k] for k in inputs}, mesh)))
    valid = distributed.allgather_rows(np.asarray(batch["valid"], bool))
    per_video = l2_normalize(np.asarray(out)).mean(axis=1)
    feats.append(per_video[valid])
    labels.append(distributed.allgather_rows(np.asarray(batch["label"]))[valid])
    indices.append(distributed.allgather_rows(np.asarray(batch["index"]))[valid])
    if progress is not None:
      progress.update(i + 1)
  if progress is not None:
    progress.close()
  feats, labels, indices = np.concatenate(feats).astype(np.float32), np.concatenate(labels), np.concatenate(indices)
  order = np.argsort(indices, kind="stable")  # record order, as a single process reads them
  return feats[order], labels[order], indices[order]


def stream_view_features(streams: Sequence[tuple[str, nnx.Module]], mesh, per_stream: bool = False):
  """A jitted feature function of one or more backbones (eval mode, pooled output) over the views of each video.

  Args:
    streams: (batch key, backbone) pairs, e.g. `(("video", rgb_backbone), ("flow", flow_backbone))`; the backbones'
      feature sizes must agree. They are switched to eval mode.
    mesh: the device mesh (weights replicated, the batch sharded over `data`).
    per_stream: also return each stream's own features.
  Returns:
    `fn(batch) -> float32 [B, V, D]`, for each view the mean of the streams' pooled features (two streams: GOCA's
    `Avg`, (h_rgb + h_flow) / 2); with `per_stream`, `[B, V, 1 + S, D]`: that mean, then each stream's features.
    `batch[key]` is float [B, V, T, H, W, 3] for every key of `streams`.
  """
  from fedvssl_jax.core import mesh as mesh_lib
  from fedvssl_jax.core import state as state_lib

  if not streams:
    raise ValueError("stream_view_features: no backbones given")
  keys = tuple(key for key, _ in streams)
  graphdefs, states = [], []
  for _, backbone in streams:
    backbone.eval()
    graphdef, state = nnx.split(backbone)
    graphdefs.append(graphdef)
    states.append(state)

  def fn(states, batch):
    outs = []
    for key, graphdef, state in zip(keys, graphdefs, states):
      video = batch[key]
      b, v = video.shape[:2]
      out = nnx.merge(graphdef, state)(video.reshape((b * v,) + video.shape[2:]))
      outs.append(out.reshape(b, v, -1).astype(jnp.float32))
    mean = outs[0] if len(outs) == 1 else sum(outs) / len(outs)
    return jnp.stack([mean] + outs, axis=2) if per_stream else mean

  jitted = jax.jit(fn, in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)))
  states = state_lib.put_replicated(states, mesh)  # also a dropout layer's key with several processes
  return lambda batch: jitted(states, batch)


def backbone_view_features(backbone: nnx.Module, mesh, input_key: str = "video"):
  """A jitted `batch -> [B, V, D]` of an NNX backbone (eval mode, pooled output) over the views of each video."""
  return stream_view_features(((input_key, backbone),), mesh)


def knn_retrieval(feature_fn: Callable[[dict[str, jax.Array]], jax.Array], splits, builder, mesh, batch_size: int,
                  num_workers: int = 0, mean_center: bool = False, inputs: Sequence[str] = ("video",),
                  desc: str = "knn", names: Sequence[str] | None = None) -> dict[str, Any]:
  """R@k of per-view features `feature_fn`: train split = gallery, test split = queries.

  With `names`, `feature_fn` gives `[B, V, S, D]` (S = len(names) feature sets, e.g. `stream_view_features(...,
  per_stream=True)`) and the result is {name: R@k} of each set, from one pass over the videos.
  """
  args = dict(mesh=mesh, batch_size=batch_size, num_workers=num_workers, inputs=inputs)
  g, gl, _ = extract_video_features(feature_fn, splits.train, builder, desc=f"{desc} gallery", **args)
  q, ql, _ = extract_video_features(feature_fn, splits.test, builder, desc=f"{desc} queries", **args)
  if names is None:
    return recall_at_k(q, ql, g, gl, mean_center=mean_center)
  return {name: recall_at_k(q[:, i], ql, g[:, i], gl, mean_center=mean_center) for i, name in enumerate(names)}


def knn_of_backbone(backbone: nnx.Module, splits, builder, mesh, batch_size: int, num_workers: int = 0,
                    mean_center: bool = False, desc: str = "knn") -> dict[str, float]:
  """R@k of a single-stream backbone (`knn_retrieval` of its pooled features)."""
  return knn_retrieval(backbone_view_features(backbone, mesh), splits, builder, mesh, batch_size, num_workers,
                       mean_center, desc=desc)


def knn_test_builder(knn: ml_collections.ConfigDict, with_flow: bool = False):
  from input_pipeline import pipeline

  return pipeline.MultiViewTestBuilder(clip_len=knn.clip_len, stride=knn.stride, num_clips=knn.num_clips,
                                       short_side=knn.short_side, crop_size=knn.crop_size,
                                       three_crop=knn.three_crop, with_flow=with_flow,
                                       clip_placement=knn.get("clip_placement", "ctp"))


# ------------------------------------------------------------------------------- frozen-backbone evaluation runs


@dataclasses.dataclass
class SplitFeatures:
  """Per-video features of one split (what `features_{train,test}.npz` hold).

  Attributes:
    features: float32 [N, D], the evaluated features (two streams: from the per-view average of the streams).
    labels: int [N] class indices.
    names: str [N] video names (the records' `name`).
    class_names: the dataset's class names (K = number of classes).
    streams: two-stream runs: {"rgb": [N, D], "flow": [N, D]}, each stream on its own; else {}.
    meta: where the features came from (checkpoints, arch, views), JSON values.
  """
  features: np.ndarray
  labels: np.ndarray
  names: np.ndarray
  class_names: list[str]
  streams: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def save_features(path: str, split: SplitFeatures) -> str:
  """Writes `split` with `np.savez` (plain arrays; strings as unicode arrays, no pickle needed to read it)."""
  arrays = {"features": np.asarray(split.features, np.float32), "labels": np.asarray(split.labels, np.int32),
            "names": np.asarray(split.names, dtype=str), "class_names": np.asarray(split.class_names, dtype=str),
            "meta": np.asarray(json.dumps(split.meta))}
  for name, value in split.streams.items():
    arrays[f"features_{name}"] = np.asarray(value, np.float32)
  np.savez(path, **arrays)
  return path


def load_features(path: str) -> SplitFeatures:
  """Reads a `save_features` file (with `allow_pickle=False`)."""
  from fedvssl_jax.config_utils import ConfigError

  if not os.path.isfile(path):
    raise ConfigError(f"config.features_dir: {path} not found (it is written by a knn / linear_probe run)")
  with np.load(path, allow_pickle=False) as z:
    streams = {k[len("features_"):]: z[k] for k in z.files if k.startswith("features_")}
    return SplitFeatures(features=z["features"], labels=z["labels"], names=z["names"],
                         class_names=[str(c) for c in z["class_names"]], streams=streams,
                         meta=json.loads(str(z["meta"])))


def load_eval_streams(init: ml_collections.ConfigDict) -> tuple[list[tuple[str, nnx.Module]], dict[str, Any]]:
  """The frozen backbone(s) of `config.init`: [("video", rgb)] or, with `flow_backbone_checkpoint`, also
  ("flow", flow); plus a JSON description (checkpoints, archs, feature size). Errors are one-line ConfigErrors."""
  from fedvssl_jax.config_utils import ConfigError
  from fedvssl_jax.models import pretrained

  ckpt = init.get("backbone_checkpoint", "")
  backbone, meta = pretrained.load_pretrained_backbone(ckpt, "config.init.backbone_checkpoint", output="pooled")
  streams = [("video", backbone)]
  info: dict[str, Any] = {"checkpoint": ckpt, "arch": meta["arch"], "feature_dim": int(backbone.feature_dim)}
  flow_ckpt = init.get("flow_backbone_checkpoint", "")
  if flow_ckpt:
    flow, flow_meta = pretrained.load_pretrained_backbone(flow_ckpt, "config.init.flow_backbone_checkpoint",
                                                          output="pooled")
    if flow.feature_dim != backbone.feature_dim:
      raise ConfigError(f"config.init.flow_backbone_checkpoint={flow_ckpt!r} gives {flow.feature_dim}-d features but "
                        f"config.init.backbone_checkpoint gives {backbone.feature_dim}-d; the streams are averaged")
    streams.append(("flow", flow))
    info.update(flow_checkpoint=flow_ckpt, flow_arch=flow_meta["arch"])
  return streams, info


def eval_split_features(config: ml_collections.ConfigDict, views_key: str, workdir: str,
                        desc: str) -> tuple[SplitFeatures, SplitFeatures]:
  """Train and test features of `config.init`'s frozen backbone(s) on `config.data`.

  Each video gives the views of `config.<views_key>` (clip_len, stride, num_clips, short_side, crop_size, three_crop,
  batch_size); each view's pooled feature (two streams: the average of the two streams' features of that view) is
  L2-normalised and the views are averaged. Written to `<workdir>/features_{train,test}.npz`; with
  `config.features_dir` set, the files of that earlier run are read instead and no backbone is run.

  Returns:
    (train, test) `SplitFeatures`.
  """
  from fedvssl_jax import datasets
  from fedvssl_jax.core import mesh as mesh_lib

  if config.get("features_dir"):
    train, test = (load_features(os.path.join(config.features_dir, f"features_{s}.npz")) for s in ("train", "test"))
    print(f"[{desc}] features of {len(train.labels)} train / {len(test.labels)} test videos from "
          f"{config.features_dir}", flush=True)
    return train, test

  views = config[views_key]
  streams, info = load_eval_streams(config.init)
  two_stream = len(streams) > 1
  data = config.data
  if two_stream and not data.get("with_flow", False):
    data = copy.deepcopy(data)
    data.with_flow = True
  splits = datasets.load_splits(data)
  if two_stream:
    datasets.check_flow_files(splits)
  mesh = mesh_lib.make_mesh(config.get("mesh"))
  mesh_lib.check_batch_size(views.batch_size, mesh, what=f"config.{views_key}.batch_size")
  builder = knn_test_builder(views, with_flow=two_stream)
  feature_fn = stream_view_features(streams, mesh, per_stream=two_stream)
  info.update(views=int(builder.num_views), clip_len=int(views.clip_len), stride=int(views.stride),
              num_clips=int(views.num_clips), three_crop=bool(views.three_crop), crop_size=int(views.crop_size),
              short_side=int(views.short_side))
  print(f"[{desc}] {info['arch']} backbone{' + flow backbone' if two_stream else ''}: {len(splits.train)} train / "
        f"{len(splits.test)} test videos, {builder.num_views} views each", flush=True)
  out = []
  for name, records in (("train", splits.train), ("test", splits.test)):
    feats, labels, index = extract_video_features(
        feature_fn, records, builder, mesh, views.batch_size, config.data.num_workers,
        inputs=tuple(key for key, _ in streams), desc=f"{desc} {name}")
    if len(labels) < len(records):
      print(f"[{desc}] {len(records) - len(labels)} {name} videos could not be read and are left out", flush=True)
    split = SplitFeatures(
        features=feats[:, 0] if two_stream else feats, labels=labels,
        names=np.asarray([records[int(i)].name for i in index], dtype=str), class_names=list(splits.class_names),
        streams={s: feats[:, i] for i, s in enumerate(STREAM_SETS[1:], 1)} if two_stream else {}, meta=dict(info))
    if jax.process_index() == 0:
      save_features(os.path.join(workdir, f"features_{name}.npz"), split)
    out.append(split)
  return out[0], out[1]


def features_provenance(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """For results.json: where the features came from (`features_from`) or were written (`features`)."""
  if config.get("features_dir"):
    return {"features_from": config.features_dir}
  return {"features": {s: os.path.join(workdir, f"features_{s}.npz") for s in ("train", "test")}}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The `knn` runner: R@k of `config.init`'s backbone (or RGB + flow backbones) on `config.data`.

  Train split = gallery, test split = queries. Two-stream runs report the averaged streams ("rgb+flow", the protocol)
  and each stream alone ("rgb", "flow"): `STREAM_SETS`. Writes `<workdir>/results.json`, `knn_recall.png` and the
  features (`workdir` exists: `runners.run` makes it).
  """
  train, test = eval_split_features(config, "knn", workdir, desc="knn")
  mean_center = bool(config.knn.get("mean_center", False))
  label = STREAM_SETS[0] if train.streams else "backbone"
  knn = {label: recall_at_k(test.features, test.labels, train.features, train.labels, mean_center=mean_center)}
  for name in train.streams:
    knn[name] = recall_at_k(test.streams[name], test.labels, train.streams[name], train.labels,
                            mean_center=mean_center)
  results: dict[str, Any] = {"knn": knn, "mean_center": mean_center, "num_gallery": int(len(train.labels)),
                             "num_queries": int(len(test.labels)), "num_classes": train.num_classes, **train.meta}
  results.update(features_provenance(config, workdir))
  logging.info("knn: %s", knn)
  return reporting.write_results(workdir, results)
