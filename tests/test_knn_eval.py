"""scripts/knn_eval.py and the `knn` runner: one- and two-stream retrieval of exported backbones on synthetic videos,
and the per-view averaging of two streams."""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from fedvssl_jax.evaluation import knn
from fedvssl_jax.models import build_backbone, export
from fedvssl_jax.core import mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"width_multiplier": 0.0625}


@pytest.fixture(scope="module")
def script():
  spec = importlib.util.spec_from_file_location("knn_eval", os.path.join(REPO, "scripts", "knn_eval.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """Two tiny exported R3D-18 backbones with different random weights (RGB and "flow")."""
  tmp = tmp_path_factory.mktemp("knn_ckpts")
  out = []
  for seed, name in ((0, "rgb"), (1, "flow")):
    out.append(str(export.save_backbone(tmp / name, "r3d_18", TINY,
                                        build_backbone("r3d_18", rngs=nnx.Rngs(seed), **TINY))))
  return out


def _args(synthetic_videos, out, *extra):
  return ["--dataset", "synthetic", "--cache_dir", str(synthetic_videos), "--synthetic_preset", "test",
          "--num_workers", "0", "--num_clips", "2", "--clip_len", "4", "--short_side", "32", "--crop_size", "32",
          "--no-three_crop", "--batch_size", "8", "--out", str(out), *extra]


def test_knn_eval_script_one_and_two_streams(script, checkpoints, synthetic_videos, tmp_path):
  rgb, flow = checkpoints
  single = tmp_path / "single"
  assert script.main(_args(synthetic_videos, single, "--checkpoint", rgb)) == 0
  results = json.loads((single / "results.json").read_text())
  assert list(results["knn"]) == ["backbone"]
  recalls = results["knn"]["backbone"]
  assert list(recalls) == ["R@1", "R@5", "R@10", "R@20", "R@50"]
  assert results["checkpoint"] == rgb and results["num_gallery"] == 12 and results["num_queries"] == 8
  assert results["views"] == 2 and not results["mean_center"]
  assert (single / "knn_recall.png").exists() and (single / "config.json").exists()
  with np.load(single / "features_train.npz", allow_pickle=False) as z:
    single_train = z["features"]
    assert single_train.shape == (12, 32) and z["labels"].shape == (12,)
  with np.load(single / "features_test.npz", allow_pickle=False) as z:
    single_test = z["features"]
  # The stored features reproduce the stored R@k.
  again = knn.recall_at_k(single_test, knn.load_features(str(single / "features_test.npz")).labels, single_train,
                          knn.load_features(str(single / "features_train.npz")).labels)
  assert again == recalls

  # Two streams; the synthetic videos have no optical flow, so the RGB videos stand in for the flow videos.
  two = tmp_path / "two"
  flow_template = os.path.join(str(synthetic_videos), "videos", "{name}.mp4")
  assert script.main(_args(synthetic_videos, two, "--checkpoint", rgb, "--flow_checkpoint", flow,
                           "--flow_template", flow_template, "--mean_center")) == 0
  results = json.loads((two / "results.json").read_text())
  assert list(results["knn"]) == ["rgb+flow", "rgb", "flow"] and results["mean_center"]
  assert results["flow_checkpoint"] == flow and results["flow_arch"] == "r3d_18"
  with np.load(two / "features_train.npz", allow_pickle=False) as z:
    assert sorted(z.files) == ["class_names", "features", "features_flow", "features_rgb", "labels", "meta", "names"]
    np.testing.assert_allclose(z["features_rgb"], single_train, rtol=1e-5, atol=1e-6)  # the RGB stream alone
    assert not np.allclose(z["features"], z["features_rgb"], atol=1e-3)


def test_missing_flow_videos_are_a_one_line_error(script, checkpoints, synthetic_videos, tmp_path, capsys):
  rgb, flow = checkpoints
  nowhere = os.path.join(str(tmp_path), "no_flow", "{name}.mp4")
  assert script.main(_args(synthetic_videos, tmp_path / "out", "--checkpoint", rgb, "--flow_checkpoint", flow,
                           "--flow_template", nowhere)) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and err.startswith("error: 20 flow videos are missing") and "extract_flow.py" in err


def test_two_stream_features_average_the_streams_per_view(checkpoints):
  mesh = mesh_lib.make_mesh([("data", 1)])
  (rgb, _), (flow, _) = (export.load_backbone(c, output="pooled") for c in checkpoints)
  rng = np.random.default_rng(0)
  batch = {"video": rng.normal(size=(2, 3, 4, 32, 32, 3)).astype(np.float32),  # [B, V, T, H, W, 3]
           "flow": rng.normal(size=(2, 3, 4, 32, 32, 3)).astype(np.float32)}
  put = mesh_lib.put_batch(batch, mesh)
  h_rgb = np.asarray(knn.backbone_view_features(rgb, mesh)(put))
  h_flow = np.asarray(knn.backbone_view_features(flow, mesh, input_key="flow")(put))
  assert h_rgb.shape == (2, 3, 32)
  mean = np.asarray(knn.stream_view_features((("video", rgb), ("flow", flow)), mesh)(put))
  np.testing.assert_allclose(mean, (h_rgb + h_flow) / 2, rtol=1e-5, atol=1e-6)
  stacked = np.asarray(jax.device_get(
      knn.stream_view_features((("video", rgb), ("flow", flow)), mesh, per_stream=True)(put)))
  assert stacked.shape == (2, 3, 3, 32)
  np.testing.assert_allclose(stacked[:, :, 0], mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stacked[:, :, 1], h_rgb, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stacked[:, :, 2], h_flow, rtol=1e-5, atol=1e-6)


def test_knn_config_errors_are_one_line(script, tmp_path, capsys):
  assert script.main(["--checkpoint", str(tmp_path / "missing"), "--dataset", "ucf101", "--data_root",
                      str(tmp_path), "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and "config.init.backbone_checkpoint" in err and str(tmp_path / "missing") in err
