"""The federated demo config end to end through the main command: Flower simulation (Ray) of 2 rounds x 2 clients
with the real CtP local trainer (shrunk: tiny width, few steps, the test videos), then export and kNN."""

import json
import os

import numpy as np
import pytest

from conftest import DATA_SHRINK, FEDERATED_SHRINK, KNN_SHRINK, run_main

pytest.importorskip("ray")

SHRINK = [
    *DATA_SHRINK, "--config.batch_size=2",
    "--config.task.clip_len=8", "--config.task.crop_size=32", "--config.task.short_side_sizes=(32,40)",
    "--config.task.patch_mask.scales=(6,8,12)", *FEDERATED_SHRINK, *KNN_SHRINK,
]


def assert_quiet_single_log(log: str) -> None:
  """A federated run's output written to a pipe (as to a log file): no colour codes or `\r`, no line twice (absl and
  Flower handlers both printing a record), none of the known warnings, a per-round progress line."""
  assert "\x1b[" not in log and "\r" not in log, log[-3000:]
  lines = log.split("\n{\n", 1)[0].splitlines()  # up to the printed results.json, whose lines may repeat
  repeated = sorted({ln for ln in lines if ln.strip() and lines.count(ln) > 1})
  assert not repeated, repeated
  for noise in ("os.fork() was called", "In future versions of Ray", "DEPRECATED FEATURE", "Traceback"):
    assert noise not in log, log[-3000:]
  assert "[federated] round 1/2: 2/2 clients replied" in log, log[-3000:]


def test_fedvssl_demo_config_two_rounds_two_clients(synthetic_videos, tmp_path):
  workdir = tmp_path / "fed"
  proc = run_main("--config=configs/fedvssl.py:demo", f"--workdir={workdir}",
                  f"--config.data.cache_dir={synthetic_videos}", *SHRINK)
  assert_quiet_single_log(proc.stdout + proc.stderr)

  rounds = [json.loads(line) for line in (workdir / "federated_metrics.jsonl").read_text().splitlines()]
  assert [r["round"] for r in rounds] == [1, 2]
  for r in rounds:
    assert r["num_aggregated"] == 2 and r["num_failed"] == 0
    assert sorted(c["partition_id"] for c in r["clients"]) == [0, 1]
    assert sum(c["num_examples"] for c in r["clients"]) == 12  # the test preset's 12 training videos, split 2 ways
    assert np.isfinite(r["global_loss"])

  results = json.loads((workdir / "results.json").read_text())
  assert results["federated"]["resumed_from"] == 0
  # results.json rounds to 6 significant digits
  assert results["federated"]["final_global_loss"] == pytest.approx(rounds[-1]["global_loss"], rel=1e-5)
  for which in ("pretrained", "random_init"):
    assert set(results["knn"][which]) == {"R@1", "R@5", "R@10", "R@20", "R@50"}
  assert os.path.isfile(workdir / "export" / "backbone" / "model.json")
  assert os.path.isfile(workdir / "knn_recall.png")
  assert results["plots"]["training_loss"] == str(workdir / "training_loss.png")  # per-round global + client losses
  assert os.path.isfile(workdir / "training_loss.png")
  # FedVSSL mode: every client keeps its own local model (its CtP head) between rounds.
  assert sorted(os.listdir(workdir / "clients")) == ["client_0", "client_1"]
