"""GOCA's two-stream model (reference/goca.md §1): RGB and flow backbones, projection head(s), shared prototypes.

  h = backbone_m(clip)                          per clip-length group (BatchNorm statistics per group, as GOCA)
  z = normalize(head(h))                        head over all views of a stream at once (its BN sees all views)
  s = z C^T                                     C: K unit prototypes shared by both streams

Parameter tree (flat keys of `nnx.to_pure_dict(nnx.state(model))`):
  backbone/rgb/...  backbone/flow/...           two independent backbones (the federated code's "backbone")
  head/...  (shared)  or  head/rgb/... head/flow/...
  prototypes                                    [K, embed_dim]
Fixed prototypes (GOCA's default, pre-computed hyperspherical prototypes) are a `FixedPrototypes` variable, which is
not an `nnx.Param`, so `nnx.state(model, nnx.Param)` / `nnx.Optimizer(..., wrt=nnx.Param)` never see them (no
update, no weight decay). With `learn_prototypes=True` they are an `nnx.Param`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fedvssl_jax.models import build_backbone
from fedvssl_jax.models import layers

# PyTorch nn.Linear's default weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
TORCH_LINEAR_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class FixedPrototypes(nnx.Variable):
  """Prototype matrix C [K, d] that is not trained (not an `nnx.Param`)."""


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """x / max(||x||, eps) along `axis` (PyTorch `F.normalize`)."""
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
  return x / jnp.maximum(norm, eps)


class ProjectionHead(nnx.Module):
  """SwAV head: Linear(D, hidden) - BN - ReLU - Linear(hidden, hidden) - BN - ReLU - Linear(hidden, embed).

  [N, D] float -> [N, embed] float32 (not normalised). BatchNorm is PyTorch BN1d (momentum in Flax convention).
  """

  def __init__(self, in_dim: int, hidden_dim: int = 2048, embed_dim: int = 128, *, bn_momentum: float = 0.9,
               bn_epsilon: float = 1e-5, rngs: nnx.Rngs):
    def linear(i, o):
      return nnx.Linear(i, o, kernel_init=TORCH_LINEAR_INIT, bias_init=nnx.initializers.zeros_init(), rngs=rngs)

    self.fc1 = linear(in_dim, hidden_dim)
    self.bn1 = layers.BatchNorm(hidden_dim, momentum=bn_momentum, epsilon=bn_epsilon)
    self.fc2 = linear(hidden_dim, hidden_dim)
    self.bn2 = layers.BatchNorm(hidden_dim, momentum=bn_momentum, epsilon=bn_epsilon)
    self.fc3 = linear(hidden_dim, embed_dim)

  def __call__(self, h: jax.Array) -> jax.Array:
    x = h.astype(jnp.float32)
    x = jax.nn.relu(self.bn1(self.fc1(x)))
    x = jax.nn.relu(self.bn2(self.fc2(x)))
    return self.fc3(x)


STREAMS = ("rgb", "flow")
MERGES = ("prior", "avg")


class TwoStream(nnx.Module):
  """Holds one module per stream under the names `rgb` and `flow` (a single-stream model has only one of them)."""

  def __init__(self, rgb: Optional[nnx.Module] = None, flow: Optional[nnx.Module] = None):
    if rgb is not None:
      self.rgb = rgb
    if flow is not None:
      self.flow = flow


def _views_to_batch(group: jax.Array, name: str) -> tuple[jax.Array, int, int]:
  """[B, n, T, H, W, C] (or [B, T, H, W, C] = one view) -> view-major [n * B, T, H, W, C], n, B."""
  if group.ndim == 5:
    group = group[:, None]
  if group.ndim != 6:
    raise ValueError(f"GOCAModel: {name} must be [B, num_views, T, H, W, C] or [B, T, H, W, C], got {group.shape}")
  b, n = group.shape[:2]
  x = jnp.swapaxes(group, 0, 1).reshape((n * b,) + group.shape[2:])
  return x, n, b


class GOCAModel(nnx.Module):
  """Two-stream (RGB + optical flow) SwAV model of GOCA.

  Args:
    arch: backbone name (`r2plus1d_18` or `s3d`; any registered backbone works).
    backbone_kwargs: kwargs for `fedvssl_jax.models.build_backbone` (e.g. `pool_size=(1, 2, 2)` for GOCA's 2048-d
      R(2+1)D-18 feature, `width_multiplier` in tests). Both backbones get the same kwargs, updated per stream by
      `stream_kwargs`.
    num_prototypes: K (1000).
    embed_dim: projection output size d (128).
    hidden_dim: projection hidden size (2048).
    share_head: one projection head for both streams (GOCA's script / paper figure) or one per stream.
    prototypes: optional initial C [K, d] (e.g. from `goca.prototypes.load_prototypes`); rows are normalised.
      None: N(0, 1) rows, normalised.
    learn_prototypes: C is an `nnx.Param` (trained) instead of `FixedPrototypes`.
    streams: ("rgb", "flow") (GOCA), or one of them: single-stream SwAV with GOCA's fixed prototypes (the released
      launch script trains `--video_channels rgb`).
    merge: "prior" (GOCA's PriorRgbFlow: each stream scored on its own, coupled by the Sinkhorn prior) or "avg"
      (AvgRgbFlow, model_aug.py forward with ModalMergeType.Avg: one set of scores from the averaged streams,
      shared head: head((h_rgb + h_flow) / 2); separate heads: (head_rgb(h_rgb) + head_flow(h_flow)) / 2, then
      normalised). Two streams only.
    bn_momentum, bn_epsilon: the head's BatchNorm settings.
    stream_kwargs: {stream: kwargs} updating `backbone_kwargs` for that stream's backbone only (e.g.
      {"rgb": {"residual_frames": True}}); the architecture's weights keep the same shapes.
    rngs: init randomness.
  """

  def __init__(self, arch: str, backbone_kwargs: Optional[Mapping[str, Any]] = None, num_prototypes: int = 1000,
               embed_dim: int = 128, hidden_dim: int = 2048, share_head: bool = True,
               prototypes: Optional[Any] = None, learn_prototypes: bool = False, *,
               streams: Sequence[str] = STREAMS, merge: str = "prior", bn_momentum: float = 0.9,
               bn_epsilon: float = 1e-5, stream_kwargs: Optional[Mapping[str, Mapping[str, Any]]] = None,
               rngs: nnx.Rngs):
    kwargs = dict(backbone_kwargs or {})
    streams = tuple(streams)
    if not streams or len(set(streams)) != len(streams) or any(st not in STREAMS for st in streams):
      raise ValueError(f"GOCAModel: streams must be a non-empty subset of {STREAMS}, got {streams}")
    streams = tuple(st for st in STREAMS if st in streams)
    if merge not in MERGES:
      raise ValueError(f"GOCAModel: merge must be one of {MERGES}, got {merge!r}")
    if merge == "avg" and len(streams) != 2:
      raise ValueError("GOCAModel: merge='avg' needs both streams")
    if prototypes is not None:
      c = jnp.asarray(np.asarray(prototypes), jnp.float32)
      if c.shape != (num_prototypes, embed_dim):
        raise ValueError(f"GOCAModel: prototypes have shape {c.shape}, expected ({num_prototypes}, {embed_dim}) "
                         "(num_prototypes, embed_dim)")
    if kwargs.get("output", "pooled") != "pooled":
      raise ValueError("GOCAModel: backbone_kwargs['output'] must be 'pooled'")
    self.arch = arch
    self.share_head = bool(share_head)
    self.learn_prototypes = bool(learn_prototypes)
    self.streams = streams
    self.merge = merge
    stream_kwargs = dict(stream_kwargs or {})
    if set(stream_kwargs) - set(STREAMS):
      raise ValueError(f"GOCAModel: stream_kwargs keys must be in {STREAMS}, got {sorted(stream_kwargs)}")
    self.backbone = TwoStream(**{st: build_backbone(arch, rngs=rngs, **{**kwargs, **stream_kwargs.get(st, {})})
                                 for st in streams})
    self.feature_dim = int(getattr(self.backbone, streams[0]).feature_dim)

    def head():
      return ProjectionHead(self.feature_dim, hidden_dim, embed_dim, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                            rngs=rngs)

    self.head = head() if self.share_head or len(streams) == 1 else TwoStream(head(), head())

    if prototypes is None:
      c = jax.random.normal(rngs.params(), (num_prototypes, embed_dim), jnp.float32)
    c = l2_normalize(c)
    self.prototypes = nnx.Param(c) if self.learn_prototypes else FixedPrototypes(c)
    self.num_prototypes = int(num_prototypes)
    self.embed_dim = int(embed_dim)

  @property
  def rgb_backbone(self) -> nnx.Module:
    return self.backbone.rgb

  @property
  def flow_backbone(self) -> nnx.Module:
    return self.backbone.flow

  def _head(self, stream: str) -> nnx.Module:
    return self.head if isinstance(self.head, ProjectionHead) else getattr(self.head, stream)

  def normalize_prototypes(self) -> None:
    """Re-normalises the stored C rows in place (GOCA does this before every step, without gradient)."""
    self.prototypes[...] = jax.lax.stop_gradient(l2_normalize(self.prototypes[...]))

  def _backbone_features(self, stream: str, views: Sequence[jax.Array]) -> tuple[jax.Array, int]:
    """Backbone features [V, B, D] of one stream's view groups (one backbone call per group), and B."""
    if isinstance(views, (jax.Array, np.ndarray)):
      views = [views]
    if not views:
      raise ValueError(f"GOCAModel: no {stream} views")
    backbone = getattr(self.backbone, stream)
    groups = [_views_to_batch(jnp.asarray(group), f"{stream} views[{g}]") for g, group in enumerate(views)]
    batch = groups[0][2]
    if any(b != batch for _, _, b in groups):
      raise ValueError(f"GOCAModel: {stream} view groups have different batch sizes {[b for _, _, b in groups]}")
    feats = []
    for x, n, b in groups:
      h = backbone(x)  # one backbone call per clip-length group: BN statistics per group
      feats.append(h.reshape(n, b, -1).astype(jnp.float32))
    return jnp.concatenate(feats, axis=0), batch  # [V, B, D]

  def _project(self, e: jax.Array, v: int, batch: int) -> Dict[str, jax.Array]:
    z = l2_normalize(e)
    c = l2_normalize(self.prototypes[...].astype(jnp.float32))
    scores = z @ c.T
    return {"scores": scores.reshape(v, batch, -1), "z": z.reshape(v, batch, -1)}

  def _stream(self, stream: str, views: Sequence[jax.Array]) -> Dict[str, jax.Array]:
    h, batch = self._backbone_features(stream, views)
    v = h.shape[0]
    out = self._project(self._head(stream)(h.reshape(v * batch, -1)), v, batch)  # head BN over all views
    return dict(out, h=h)

  def __call__(self, rgb_views: Sequence[jax.Array], flow_views: Sequence[jax.Array]) -> Dict[str, jax.Array]:
    """Forward pass of both streams.

    Args:
      rgb_views: list of clip-length groups, each [B, n_g, T_g, H, W, 3] (a batch of the data builder's
        "rgb_32", "rgb_16", ...; a 5-D [B, T, H, W, 3] is one view). Views are numbered group by group:
        v = 0 .. n_0 - 1 are group 0's, and so on (so GOCA's assigned views 0, 1 are the two 32-frame clips).
      flow_views: the same for flow (3-channel encoded flow, normalised like RGB).
      A single-stream model ignores the other argument (it may be None).

    Returns:
      {"scores_rgb", "scores_flow": float32 [V, B, K], "z_rgb", "z_flow": float32 [V, B, d] unit embeddings,
       "h_rgb", "h_flow": float32 [V, B, D] backbone features}, the keys of the model's streams only;
      merge="avg": {"scores": [V, B, K], "z": [V, B, d] of the averaged streams, "h_rgb", "h_flow"}.
    """
    if self.merge == "avg":
      hr, batch = self._backbone_features("rgb", rgb_views)
      hf, batch_f = self._backbone_features("flow", flow_views)
      if hr.shape != hf.shape:
        raise ValueError(f"GOCAModel: rgb and flow views differ: {hr.shape[:2]} vs {hf.shape[:2]} (views, batch)")
      v = hr.shape[0]
      if isinstance(self.head, ProjectionHead):
        e = self.head(((hr + hf) / 2).reshape(v * batch, -1))
      else:
        e = (self.head.rgb(hr.reshape(v * batch, -1)) + self.head.flow(hf.reshape(v * batch, -1))) / 2
      out = self._project(e, v, batch)
      return {"scores": out["scores"], "z": out["z"], "h_rgb": hr, "h_flow": hf}
    given = {"rgb": rgb_views, "flow": flow_views}
    res = {}
    for st in self.streams:
      r = self._stream(st, given[st])
      res.update({f"scores_{st}": r["scores"], f"z_{st}": r["z"], f"h_{st}": r["h"]})
    if len(self.streams) == 2 and res["scores_rgb"].shape != res["scores_flow"].shape:
      raise ValueError(f"GOCAModel: rgb and flow views differ: {res['scores_rgb'].shape[:2]} vs "
                       f"{res['scores_flow'].shape[:2]} (views, batch)")
    return res

  def features(self, rgb: Optional[jax.Array], flow: Optional[jax.Array] = None) -> jax.Array:
    """kNN / linear-probe features: backbone outputs, the average of the two streams (GOCA's `Avg`).

    Args:
      rgb: [N, T, H, W, 3] clips (or None for flow only).
      flow: [N, T, H, W, 3] flow clips at the same frames (or None for RGB only).

    Returns:
      float32 [N, D] = (h_rgb + h_flow) / 2, or the one stream given.
    """
    hs = []
    if rgb is not None:
      hs.append(self.backbone.rgb(jnp.asarray(rgb)).astype(jnp.float32))
    if flow is not None:
      hs.append(self.backbone.flow(jnp.asarray(flow)).astype(jnp.float32))
    if not hs:
      raise ValueError("GOCAModel.features: give rgb and/or flow clips")
    return sum(hs) / len(hs)
