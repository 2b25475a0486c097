"""scripts/summarize_runs.py: the table row of a run is its kNN R@k and the mean of its last logged windows."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))

import summarize_runs  # noqa: E402


def test_row_from_results_and_last_windows(tmp_path, capsys):
  run = tmp_path / "run_a"
  run.mkdir()
  (run / "results.json").write_text(json.dumps(
      {"knn": {"pretrained": {"R@1": 28.0, "R@5": 76.0}, "random_init": {"R@1": 23.0, "R@5": 54.0}}}))
  lines = [{"step": 5, "loss": 9.0, "agreement": 0.0}, {"step": 10, "loss": 3.0, "agreement": 0.5},
           {"step": 10, "steps_per_sec": 1.0}, {"step": 15, "loss": 1.0, "agreement": 0.7}]
  (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
  assert summarize_runs.summarize(str(run), ["R@1", "R@5"], ["loss", "agreement", "absent"], last=2) == [
      "run_a", "28", "76", "23", "54", "2.000", "0.600", "-"]
  assert summarize_runs.main([str(run), "--metrics", "loss"]) == 0
  assert "| run_a | 28 | 76 | 23 | 54 | 4.333 |" in capsys.readouterr().out
  assert summarize_runs.main([str(tmp_path / "missing")]) == 1
