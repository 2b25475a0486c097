"""Metrics files: strict JSON (NaN -> null) and no repeated steps / rounds after a resume (issue 15)."""

import json
import math

import numpy as np

from fedvssl_jax.core import metrics


def test_dumps_strict_writes_null_for_non_finite():
  text = metrics.dumps_strict({"loss": float("nan"), "x": [np.float32(np.inf), 1.5], "n": np.int64(3)})
  assert json.loads(text) == {"loss": None, "x": [None, 1.5], "n": 3}
  assert "NaN" not in text and "Infinity" not in text


def test_metric_writer_rows_are_strict_json(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), total_steps=4)
  writer.write(1, {"loss": float("nan")}, print_progress=False)
  writer.close()
  writer.close()  # closing twice is harmless (the error paths close too)
  row = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=lambda c: math.nan)
  assert row["loss"] is None


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path), total_steps=10)
  for step in (2, 4, 6, 8):  # an interrupted run: checkpoint at 4, killed after logging 6 and 8
    writer.write(step, {"loss": 1.0 / step}, print_progress=False)
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
    f.write('{"step": 10, "lo')  # a row cut by the kill
  resumed = metrics.MetricWriter(str(tmp_path), total_steps=10)
  resumed.truncate_after(4)
  for step in (6, 8, 10):
    resumed.write(step, {"loss": 1.0 / step}, print_progress=False)
  resumed.close()
  steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert steps == [2, 4, 6, 8, 10]


def test_truncate_jsonl_by_round(tmp_path):
  path = tmp_path / "federated_metrics.jsonl"
  path.write_text("".join(json.dumps({"round": r}) + "\n" for r in (1, 2, 3)))
  assert metrics.truncate_jsonl(str(path), "round", 1) == 2
  assert [json.loads(l)["round"] for l in path.read_text().splitlines()] == [1]
  assert metrics.truncate_jsonl(str(tmp_path / "missing.jsonl"), "round", 0) == 0
