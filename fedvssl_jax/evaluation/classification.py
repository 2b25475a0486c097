"""Multi-clip video classification metrics (pure NumPy): the test protocol of CtP / FedVSSL fine-tuning.

Each test video is seen as V views (N uniform clips x spatial crops); the logits of its views are averaged, then a
softmax gives the video's class probabilities (CtP `tsn_model.py`). Reported: top-1, top-5 and mean class accuracy.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
  """[..., C] logits -> float32 [..., C] probabilities over the last axis (computed in float64, max-subtracted)."""
  logits = np.asarray(logits, np.float64)
  logits = logits - logits.max(axis=-1, keepdims=True)
  e = np.exp(logits)
  return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def average_view_logits(logits: np.ndarray) -> np.ndarray:
  """[B, V, C] per-view logits -> [B, C] probabilities (mean of logits over V, then softmax)."""
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 3:
    raise ValueError(f"expected logits [batch, views, classes], got shape {logits.shape}")
  return softmax(logits.mean(axis=1))


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
  """Fraction (0..1) of rows whose label is among the k highest scores."""
  probs = np.asarray(probs)
  labels = np.asarray(labels)
  k = min(k, probs.shape[1])
  topk = np.argsort(-probs, axis=1, kind="stable")[:, :k]
  return float(np.mean(np.any(topk == labels[:, None], axis=1))) if len(labels) else float("nan")


def mean_class_accuracy(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
  """Mean over the classes present in `labels` of the per-class top-1 accuracy (0..1)."""
  pred = np.argmax(probs, axis=1)
  accs = [np.mean(pred[labels == c] == c) for c in range(num_classes) if np.any(labels == c)]
  return float(np.mean(accs)) if accs else float("nan")


def classification_metrics(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
  """top1 / top5 / mean_class accuracy in percent."""
  return {
      "top1": 100.0 * topk_accuracy(probs, labels, 1),
      "top5": 100.0 * topk_accuracy(probs, labels, 5),
      "mean_class": 100.0 * mean_class_accuracy(probs, labels, num_classes),
      "num_videos": int(len(labels)),
  }
