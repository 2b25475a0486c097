"""kNN retrieval (R@k) of frozen backbone features, as FedVSSL and GOCA report it.

Protocol: each video gives N uniform clips x (1 or 3) spatial crops; each view's pooled backbone feature is
L2-normalised and the views are averaged (two-stream models: the RGB and flow features are averaged, GOCA's `Avg`);
test videos query the train videos by cosine similarity; R@k is the percentage of queries with at least one video of
their class among the k nearest. `mean_center=True` subtracts the gallery mean first (CoCLR's variant).

Also the runner `config.runner = "knn"`: kNN retrieval of an exported backbone (`config.init.backbone_checkpoint`) on
`config.data`, results in `<workdir>/results.json`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx

KS = (1, 5, 10, 20, 50)


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
                           desc: str = "features") -> tuple[np.ndarray, np.ndarray]:
  """Per-video features: views L2-normalised, then averaged.

  Args:
    feature_fn: jitted `batch -> [B, V, D]` features of each view (for two streams: already averaged over streams).
    records: the videos.
    builder: a multi-view test builder (`input_pipeline.pipeline.MultiViewTestBuilder`).
    mesh: the device mesh (the batch is sharded over `data`).
    batch_size: videos per batch (a multiple of the data-axis size).
    inputs: batch entries passed to `feature_fn`.
  Returns:
    (features [N, D] float32, labels [N] int).
  """
  from fedvssl_jax.train import mesh as mesh_lib
  from input_pipeline import pipeline

  feats, labels = [], []
  t0 = time.time()
  ds = pipeline.make_eval_dataset(records, builder, batch_size=batch_size, num_workers=num_workers,
                                  shard_index=jax.process_index(), shard_count=jax.process_count())
  n_batches = -(-len(records) // batch_size)
  for i, batch in enumerate(ds):
    valid = np.asarray(batch["valid"], bool)
    out = np.asarray(jax.device_get(feature_fn(mesh_lib.put_batch({k: batch[k] for k in inputs}, mesh))))
    per_video = l2_normalize(out).mean(axis=1)
    feats.append(per_video[valid])
    labels.append(np.asarray(batch["label"])[valid])
    if (i + 1) % 10 == 0 or i + 1 == n_batches:
      print(f"[{desc}] {i + 1}/{n_batches} batches ({time.time() - t0:.0f}s)", flush=True)
  return np.concatenate(feats).astype(np.float32), np.concatenate(labels)


def backbone_view_features(backbone: nnx.Module, mesh, input_key: str = "video"):
  """A jitted `batch -> [B, V, D]` of an NNX backbone (eval mode, pooled output) over the views of each video."""
  from fedvssl_jax.train import mesh as mesh_lib

  backbone.eval()
  graphdef, state = nnx.split(backbone)

  def fn(state, batch):
    model = nnx.merge(graphdef, state)
    video = batch[input_key]
    b, v = video.shape[:2]
    out = model(video.reshape((b * v,) + video.shape[2:]))
    return out.reshape(b, v, -1).astype(jnp.float32)

  jitted = jax.jit(fn, in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)))
  state = jax.device_put(state, mesh_lib.replicated(mesh))
  return lambda batch: jitted(state, batch)


def knn_retrieval(feature_fn: Callable[[dict[str, jax.Array]], jax.Array], splits, builder, mesh, batch_size: int,
                  num_workers: int = 0, mean_center: bool = False, inputs: Sequence[str] = ("video",),
                  desc: str = "knn") -> dict[str, float]:
  """R@k of per-view features `feature_fn`: train split = gallery, test split = queries."""
  args = dict(mesh=mesh, batch_size=batch_size, num_workers=num_workers, inputs=inputs)
  g, gl = extract_video_features(feature_fn, splits.train, builder, desc=f"{desc} gallery", **args)
  q, ql = extract_video_features(feature_fn, splits.test, builder, desc=f"{desc} queries", **args)
  return recall_at_k(q, ql, g, gl, mean_center=mean_center)


def knn_of_backbone(backbone: nnx.Module, splits, builder, mesh, batch_size: int, num_workers: int = 0,
                    mean_center: bool = False, desc: str = "knn") -> dict[str, float]:
  """R@k of a single-stream backbone (`knn_retrieval` of its pooled features)."""
  return knn_retrieval(backbone_view_features(backbone, mesh), splits, builder, mesh, batch_size, num_workers,
                       mean_center, desc=desc)


def knn_test_builder(knn: ml_collections.ConfigDict, with_flow: bool = False):
  from input_pipeline import pipeline

  return pipeline.MultiViewTestBuilder(clip_len=knn.clip_len, stride=knn.stride, num_clips=knn.num_clips,
                                       short_side=knn.short_side, crop_size=knn.crop_size,
                                       three_crop=knn.three_crop, with_flow=with_flow)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The `knn` runner: R@k of `config.init.backbone_checkpoint` on `config.data`."""
  from fedvssl_jax import datasets
  from fedvssl_jax.config_utils import ConfigError
  from fedvssl_jax.models import export
  from fedvssl_jax.train import mesh as mesh_lib

  ckpt = config.init.get("backbone_checkpoint", "")
  if not ckpt:
    raise ConfigError("config.init.backbone_checkpoint is not set: the exported backbone to evaluate")
  mesh = mesh_lib.make_mesh(config.get("mesh"))
  splits = datasets.load_splits(config.data)
  backbone, meta = export.load_backbone(ckpt, output="pooled")
  results = {"knn": {"checkpoint": knn_of_backbone(backbone, splits, knn_test_builder(config.knn), mesh,
                                                   config.knn.batch_size, config.data.num_workers,
                                                   config.knn.mean_center)},
             "arch": meta["arch"], "checkpoint": ckpt}
  logging.info("knn: %s", results["knn"])
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  print(json.dumps(results, indent=2), flush=True)
  return results
