"""Video classifier for supervised training and fine-tuning: backbone -> pooled feature -> dropout -> fc (CtP's TSN)."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from fedvssl_jax.models import build_backbone
from fedvssl_jax.models.heads import ClassifierHead


class VideoClassifier(nnx.Module):
  """`backbone` (pooled output) + `head` (dropout, fc).

  Args:
    arch: backbone registry name.
    backbone_kwargs: keyword arguments of the backbone (`output` is forced to "pooled").
    num_classes: number of classes.
    dropout: dropout rate before the fc.
  Call: `x` float [N, T, H, W, 3] -> logits float32 [N, num_classes].
  """

  def __init__(self, arch: str, backbone_kwargs: dict[str, Any], num_classes: int, dropout: float = 0.5, *,
               rngs: nnx.Rngs, backbone: nnx.Module | None = None):
    kwargs = dict(backbone_kwargs)
    kwargs["output"] = "pooled"
    self.backbone = backbone if backbone is not None else build_backbone(arch, rngs=rngs, **kwargs)
    self.head = ClassifierHead(self.backbone.feature_dim, num_classes, dropout_rate=dropout, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.head(self.backbone(x))
