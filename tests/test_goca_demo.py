"""The GOCA demo path end to end through the main command, scaled down: flow extraction into the dataset, prototypes,
two-stream training with the prior and the queue, export of both backbones, kNN of pretrained vs random init,
results.json and plots."""

import json
import os
import subprocess
import sys

from input_pipeline import flow as flow_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHRINK = [
    "--config.data.synthetic_preset=test", "--config.data.num_workers=0",
    "--config.model.backbone_kwargs.width_multiplier=0.0625", "--config.model.num_prototypes=16",
    "--config.model.embed_dim=8", "--config.model.hidden_dim=16", "--config.model.prototype_steps=20",
    "--config.views.crop_size=32", "--config.views.short_side_range=(32,40)", "--config.views.min_start_distance=4",
    "--config.flow.short_side=32", "--config.flow.workers=1",
    "--config.batch_size=4", "--config.num_steps=3", "--config.goca.queue_length=8", "--config.log_every=1",
    "--config.knn.clip_len=4", "--config.knn.num_clips=1", "--config.knn.short_side=32", "--config.knn.crop_size=32",
    "--config.knn.batch_size=4",
]


def test_goca_demo_path(synthetic_videos, tmp_path):
  workdir = tmp_path / "goca"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "fedvssl_jax.main", "--config=configs/goca.py:demo",
                         f"--workdir={workdir}", f"--config.data.cache_dir={synthetic_videos}", *SHRINK],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

  # Flow was made beside the RGB videos with the demo's bound, for every video of both splits.
  settings = flow_lib.read_flow_settings(str(synthetic_videos / "videos_flow"))
  assert settings["bound"] == 3.0 and settings["short_side"] == 32
  manifest = json.loads((synthetic_videos / "dataset.json").read_text())
  num_flow = sum(len(files) for _, _, files in os.walk(synthetic_videos / "videos_flow") if files)
  assert num_flow - 1 == manifest["counts"]["train"] + manifest["counts"]["test"]  # + flow_params.json

  steps = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [s["step"] for s in steps if "loss" in s] == [1, 2, 3]
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == "goca" and results["steps"] == 3
  for which in ("pretrained", "random_init"):
    assert set(results["knn"][which]) == {"R@1", "R@5", "R@10", "R@20", "R@50"}
    assert set(results["knn_per_stream"][which]) == {"rgb", "flow"}
  for stream in ("rgb", "flow"):
    assert os.path.isfile(os.path.join(results["export"][stream], "model.json"))
  assert (workdir / "training_loss.png").is_file() and (workdir / "knn_recall.png").is_file()
