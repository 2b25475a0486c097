"""kNN R@k on hand-made features, the multi-clip test averaging, results files."""

import json

import numpy as np
import pytest

from fedvssl_jax.evaluation import classification, knn, reporting


def test_recall_at_k_known_neighbours():
  # Gallery: 4 videos on the axes with labels 0,1,2,3. Queries: near axis 0 (label 0, hit at 1),
  # near axis 1 but labelled 2 (its 2nd neighbour is axis 2 -> hit at k>=2), and one whose class is absent.
  gallery = np.eye(4, dtype=np.float32)
  gallery_labels = np.array([0, 1, 2, 3])
  query = np.array([[1.0, 0.1, 0.0, 0.0], [0.1, 1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]], np.float32)
  query_labels = np.array([0, 2, 7])
  r = knn.recall_at_k(query, query_labels, gallery, gallery_labels, ks=(1, 2, 5))
  assert r == pytest.approx({"R@1": 100 / 3, "R@2": 200 / 3, "R@5": 200 / 3})


def test_recall_is_cosine_not_euclidean():
  gallery = np.array([[10.0, 0.0], [0.6, 0.8]], np.float32)
  query = np.array([[0.7, 0.7]], np.float32)  # euclidean nearest: row 1; cosine nearest: row 1 too
  q2 = np.array([[5.0, 0.2]], np.float32)     # euclidean nearest: row 1 (dist 4.4 vs 5.0), cosine nearest: row 0
  assert knn.recall_at_k(query, np.array([1]), gallery, np.array([0, 1]), ks=(1,))["R@1"] == 100.0
  assert knn.recall_at_k(q2, np.array([0]), gallery, np.array([0, 1]), ks=(1,))["R@1"] == 100.0


def test_mean_centring_changes_neighbours():
  # Uncentred, the query points the same way as g2; after subtracting the gallery mean it is closest to g0.
  gallery = np.array([[10.0, 1.0], [10.0, -1.0], [1.0, 0.05]], np.float32)
  labels = np.array([0, 1, 2])
  query = np.array([[10.0, 0.5]], np.float32)
  assert knn.recall_at_k(query, np.array([0]), gallery, labels, ks=(1,))["R@1"] == 0.0
  assert knn.recall_at_k(query, np.array([0]), gallery, labels, ks=(1,), mean_center=True)["R@1"] == 100.0


def test_ten_clip_averaging_uses_mean_logits_then_softmax():
  # One video, 10 clips: 9 clips mildly favour class 0, one clip strongly favours class 1.
  logits = np.zeros((1, 10, 3), np.float32)
  logits[0, :9, 0] = 1.0
  logits[0, 9, 1] = 20.0
  probs = classification.average_view_logits(logits)
  mean = logits.mean(axis=1)
  expected = np.exp(mean) / np.exp(mean).sum()
  np.testing.assert_allclose(probs, expected, rtol=1e-6)
  assert probs.argmax() == 1  # logit averaging, not majority voting of per-clip predictions
  softmax_then_mean = (np.exp(logits[0]) / np.exp(logits[0]).sum(-1, keepdims=True)).mean(0)
  assert not np.allclose(probs[0], softmax_then_mean)


def test_classification_metrics():
  probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.5, 0.4, 0.1]])
  labels = np.array([0, 1, 1, 1])
  m = classification.classification_metrics(probs, labels, 3)
  assert m["top1"] == pytest.approx(50.0)
  assert m["top5"] == pytest.approx(100.0)
  assert m["mean_class"] == pytest.approx((1.0 + 1 / 3) / 2 * 100)


def test_results_and_plots_written(tmp_path):
  with open(tmp_path / "metrics.jsonl", "w") as f:
    for s in range(1, 6):
      f.write(json.dumps({"step": s, "loss": 1.0 / s}) + "\n")
  res = reporting.write_results(str(tmp_path), {"knn": {"pretrained": {"R@1": 50.0, "R@5": 80.0},
                                                        "random_init": {"R@1": 20.0, "R@5": 60.0}}})
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["knn"]["pretrained"]["R@1"] == 50.0
  for key in ("training_loss", "knn_recall"):
    with open(res["plots"][key], "rb") as fh:
      assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
