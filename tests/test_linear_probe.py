"""The linear probe: the logistic-regression fit on plain arrays, and the `linear_probe` runner on synthetic videos."""

import importlib.util
import json
import os

import numpy as np
import pytest

from fedvssl_jax.evaluation import classification, linear_probe
from fedvssl_jax.models import export

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"width_multiplier": 0.0625}


def _blobs(rng, num_classes=4, dim=16, per_class=50, spread=1.0):
  centres = rng.normal(size=(num_classes, dim)) * 3.0
  y = np.repeat(np.arange(num_classes), per_class)
  x = centres[y] + spread * rng.normal(size=(len(y), dim))
  return (x * 5.0 + 2.0).astype(np.float32), y  # scaled and shifted: the fit standardises


@pytest.mark.parametrize("batch_size", [0, 32])
def test_separable_blobs_are_classified(batch_size):
  rng = np.random.default_rng(0)
  train_x, train_y = _blobs(rng)
  test_x, test_y = _blobs(np.random.default_rng(0), per_class=30)  # same centres (same first draws)
  params = linear_probe.fit_linear_classifier(train_x, train_y, 4, epochs=60, batch_size=batch_size, lr=0.05,
                                              weight_decay=1e-4)
  assert params["kernel"].shape == (16, 4) and params["bias"].shape == (4,)
  probs = linear_probe.predict_proba(params, test_x)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
  metrics = classification.classification_metrics(probs, test_y, 4)
  assert metrics["top1"] >= 98.0 and metrics["mean_class"] >= 98.0


def test_shuffled_labels_stay_near_chance():
  rng = np.random.default_rng(1)
  train_x, train_y = _blobs(rng, per_class=100)
  test_x, test_y = _blobs(np.random.default_rng(1), per_class=100)
  shuffled = rng.permutation(train_y)
  params = linear_probe.fit_linear_classifier(train_x, shuffled, 4, epochs=60, batch_size=64, lr=0.05)
  top1 = classification.classification_metrics(linear_probe.predict_proba(params, test_x), test_y, 4)["top1"]
  assert top1 < 45.0  # chance is 25 %; the true labels give ~100 % (test above)


def test_fit_is_deterministic_and_checks_inputs():
  x, y = _blobs(np.random.default_rng(2), per_class=10)
  a = linear_probe.fit_linear_classifier(x, y, 4, epochs=3, batch_size=8, seed=3)
  b = linear_probe.fit_linear_classifier(x, y, 4, epochs=3, batch_size=8, seed=3)
  np.testing.assert_array_equal(a["kernel"], b["kernel"])
  with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\)"):
    linear_probe.fit_linear_classifier(x, y, 3, epochs=1)
  with pytest.raises(ValueError, match="optimizer"):
    linear_probe.fit_linear_classifier(x, y, 4, epochs=1, optimizer="lbfgs")


def _config(arg):
  spec = importlib.util.spec_from_file_location("linear_probe_config", os.path.join(REPO, "configs", "linear_probe.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_linear_probe_runner_on_synthetic_videos(synthetic_videos, tmp_path):
  from fedvssl_jax import runners
  from fedvssl_jax.models import build_backbone
  from flax import nnx

  ckpt = tmp_path / "backbone"
  export.save_backbone(ckpt, "r3d_18", TINY, build_backbone("r3d_18", rngs=nnx.Rngs(0), **TINY))
  config = _config("demo")
  config.mesh = [("data", 1)]
  config.data.update(cache_dir=str(synthetic_videos), synthetic_preset="test", num_workers=0)
  config.init.backbone_checkpoint = str(ckpt)
  config.features.update(clip_len=4, num_clips=2, short_side=32, crop_size=32, batch_size=4)
  config.probe.update(epochs=20, batch_size=8, lr=0.01)
  workdir = tmp_path / "probe"
  runners.run(config, str(workdir))

  results = json.loads((workdir / "results.json").read_text())
  lp = results["linear_probe"]
  assert set(lp) >= {"top1", "top5", "mean_class", "num_videos", "train_top1"}
  assert lp["num_videos"] == 8
  assert results["arch"] == "r3d_18" and results["checkpoint"] == str(ckpt) and results["num_train"] == 12
  with np.load(workdir / "features_train.npz", allow_pickle=False) as z:
    assert z["features"].shape == (12, 32) and z["labels"].shape == (12,) and len(z["names"]) == 12
    np.testing.assert_allclose(np.linalg.norm(z["features"], axis=1), 1.0, atol=0.3)  # means of unit vectors
  with np.load(workdir / "features_test.npz", allow_pickle=False) as z:
    assert z["features"].shape == (8, 32) and list(z["class_names"]) and "features_rgb" not in z.files

  # The saved features give the same classifier and results without a backbone or videos.
  again = _config("demo")
  again.features_dir = str(workdir)
  again.probe.update(epochs=20, batch_size=8, lr=0.01)
  reused = runners.run(again, str(tmp_path / "reused"))
  assert reused["linear_probe"] == lp and reused["features_from"] == str(workdir)
