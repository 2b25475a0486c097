"""Each pretext recipe runs from the main command on the synthetic videos, and its exported backbone loads into the
feature extractor (scripts/extract_features.py)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TASK_OVERRIDES = {
    "ctp": ["--config.task.clip_len=8", "--config.task.crop_size=32", "--config.task.short_side_sizes=(32,40)",
            "--config.task.patch_mask.scales=(6,8,12)"],
    "vcop": ["--config.task.clip_len=4", "--config.task.interval=2", "--config.task.crop_size=32",
             "--config.task.resize_wh=(40,32)"],
    "speed": ["--config.task.clip_len=4", "--config.task.crop_size=32", "--config.task.short_side_sizes=(32,40)"],
}


@pytest.mark.parametrize("task", ["ctp", "vcop", "speed"])
def test_pretext_demo_recipe_runs_and_exports(task, synthetic_videos, tmp_path):
  workdir = tmp_path / task
  cmd = [sys.executable, "-m", "fedvssl_jax.main", f"--config=configs/{task}.py:demo", f"--workdir={workdir}",
         f"--config.data.cache_dir={synthetic_videos}", "--config.data.synthetic_preset=test",
         "--config.data.num_workers=0", "--config.model.backbone_kwargs.width_multiplier=0.0625",
         "--config.batch_size=4", "--config.num_steps=2", "--config.log_every=1", "--config.knn.enabled=False",
         *TASK_OVERRIDES[task]]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["task"] == task and results["steps"] == 2
  if task == "ctp":  # CtP's forward_test: trajectory IoU of the pretext task on the held-out clips
    traj = results["ctp_trajectory_iou"]
    assert traj["num_clips"] == 8
    for which in ("pretrained", "random_init"):
      assert 0.0 <= traj[which]["mean"] <= 1.0 and len(traj[which]["per_frame"]) == 8
      # Frame 0 is the query box itself; the head predicts it from the RoI, so its IoU is the highest.
      assert traj[which]["per_frame"][0] > 0.0
  else:
    assert "ctp_trajectory_iou" not in results
  assert "loss" in (workdir / "metrics.jsonl").read_text()

  clips = np.random.default_rng(0).normal(size=(2, 3, 4, 32, 32)).astype(np.float32)  # NCTHW
  np.save(tmp_path / "clips.npy", clips)
  proc = subprocess.run([sys.executable, "scripts/extract_features.py", f"--checkpoint={results['export']}",
                         f"--clips={tmp_path / 'clips.npy'}", f"--out={tmp_path / 'feats.npy'}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  feats = np.load(tmp_path / "feats.npy")
  assert feats.shape == (2, 32) and feats.dtype == np.float32 and np.all(np.isfinite(feats))
  assert not np.allclose(feats[0], feats[1])
