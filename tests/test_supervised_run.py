"""The main command end to end on the supervised recipe: a tiny run, resume in a new process, config errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(workdir, *overrides, check=True):
  cmd = [sys.executable, "-m", "fedvssl_jax.main", "--config=configs/supervised.py:demo", f"--workdir={workdir}",
         *overrides]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  if check and proc.returncode != 0:
    raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
  return proc


def _tiny(synthetic_videos, steps):
  return [f"--config.data.cache_dir={synthetic_videos}", "--config.data.synthetic_preset=test",
          "--config.data.num_workers=0", "--config.model.backbone_kwargs.width_multiplier=0.0625",
          "--config.train.clip_len=4", "--config.train.crop_size=32", "--config.train.short_side_sizes=(32,40)",
          "--config.test.clip_len=4", "--config.test.crop_size=32", "--config.test.short_side=32",
          "--config.test.batch_size=8", "--config.batch_size=8", f"--config.num_steps={steps}",
          "--config.checkpoint_every=3", "--config.log_every=1"]


def _exported(workdir):
  from flax import nnx

  from fedvssl_jax.models import export

  backbone, _ = export.load_backbone(os.path.join(workdir, "export", "backbone"))
  flat = {}
  for path, value in nnx.to_flat_state(nnx.state(backbone)):
    flat["/".join(map(str, path))] = np.asarray(value.get_value() if hasattr(value, "get_value") else value)
  return flat


def test_resume_in_new_process_equals_uninterrupted_run(synthetic_videos, tmp_path):
  straight = tmp_path / "straight"
  _main(straight, *_tiny(synthetic_videos, 6))
  results = json.loads((straight / "results.json").read_text())
  assert results["steps"] == 6 and 0.0 <= results["test"]["top1"] <= 100.0
  assert (straight / "metrics.jsonl").exists() and os.listdir(straight / "tensorboard")
  assert sorted(os.listdir(straight / "checkpoints"))[-1] == "6"

  resumed = tmp_path / "resumed"
  first = _main(resumed, *_tiny(synthetic_videos, 6), "--config.max_steps_this_run=3")
  assert "stopping after 3 steps" in first.stdout
  assert not (resumed / "results.json").exists()
  second = _main(resumed, *_tiny(synthetic_videos, 6))
  assert "resumed from" in second.stdout and "step 3/6" in second.stdout

  a, b = _exported(straight), _exported(resumed)
  assert a.keys() == b.keys() and any("mean" in k for k in a)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_unreadable_checkpoint_is_reported_not_replaced(synthetic_videos, tmp_path):
  workdir = tmp_path / "broken"
  _main(workdir, *_tiny(synthetic_videos, 3), "--config.max_steps_this_run=3")
  state_dir = workdir / "checkpoints" / "3" / "state"
  for root, _, files in os.walk(state_dir):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  proc = _main(workdir, *_tiny(synthetic_videos, 6), check=False)
  assert proc.returncode == 2
  assert "cannot restore checkpoint" in proc.stderr and str(workdir / "checkpoints" / "3") in proc.stderr
  # One line, not buried under the asynchronous checkpointer's "Event loop is closed" (manager closed on errors).
  assert "Event loop is closed" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert len([l for l in proc.stderr.splitlines() if l.startswith("error:")]) == 1, proc.stderr[-3000:]
  assert (workdir / "checkpoints" / "3").exists()


@pytest.mark.parametrize("override, expected", [
    ("--config.optim.lrr=0.1", "--config.optim.lrr: no such config key"),
    ("--config.optim.lr=abc", "--config.optim.lr=abc"),
])
def test_config_mistakes_are_one_line_errors(tmp_path, override, expected):
  proc = _main(tmp_path, override, check=False)
  assert proc.returncode == 2
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and expected in lines[0], proc.stderr


def test_missing_data_root_names_the_key(tmp_path):
  cmd = [sys.executable, "-m", "fedvssl_jax.main", "--config=configs/supervised.py", f"--workdir={tmp_path}"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip() and "WARNING" not in l]
  assert len(lines) == 1 and "config.data.root" in lines[0] and ":demo" in lines[0], proc.stderr
