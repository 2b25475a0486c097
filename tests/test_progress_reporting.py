"""Progress output, TensorBoard summaries, plots and results.json rounding (issue 16).

Progress: a non-terminal stream (a log file, a pipe, CI) gets plain lines, never `\r`. Evaluation figures and the
config reach TensorBoard; the federated metrics give `training_loss.png`; results.json floats are rounded.
"""

import glob
import io
import json
import os
import re
import struct

import pytest


def read_events(logdir: str) -> list:
  """Every Event proto of the TensorBoard files under `logdir` (the TFRecord framing read by hand: tensorboard, which
  has a reader, is not a dependency)."""
  from tensorboardX.proto import event_pb2

  events = []
  for path in sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True)):
    data = open(path, "rb").read()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      pos += 12  # length + its crc
      events.append(event_pb2.Event.FromString(data[pos:pos + length]))
      pos += length + 4  # data + its crc
  return events


def scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  out: dict[str, list[tuple[int, float]]] = {}
  for e in read_events(logdir):
    for v in e.summary.value:
      if v.HasField("simple_value"):
        out.setdefault(v.tag, []).append((e.step, v.simple_value))
  return out


def text_tags(logdir: str) -> list[str]:
  return [v.tag for e in read_events(logdir) for v in e.summary.value if not v.HasField("simple_value")]


# --- progress -------------------------------------------------------------------------------------------------------


def test_progress_on_a_file_is_plain_lines():
  from input_pipeline.progress import Progress, is_terminal

  stream = io.StringIO()
  assert not is_terminal(stream)
  bar = Progress(1000, "videos", unit="video", stream=stream, lines=10)
  for i in range(1, 1001):
    bar.update(i)
  bar.close()
  text = stream.getvalue()
  assert "\r" not in text and "\x1b[" not in text
  lines = text.splitlines()
  assert 10 <= len(lines) <= 11, lines
  assert lines[-1].startswith("videos: 1000/1000 (100.0%)") and ("video/s" in lines[-1] or "s/video" in lines[-1])


def test_progress_on_a_terminal_is_a_tqdm_bar():
  from input_pipeline.progress import Progress

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  stream = Terminal()
  bar = Progress(4, "train", unit="step", stream=stream)
  for i in range(1, 5):
    bar.update(i, postfix=f"loss={1 / i:.3f}")
  bar.close()
  text = stream.getvalue()
  assert "\r" in text and "4/4" in text and "loss=0.250" in text  # redrawn in place, with the latest scalars
  assert "step/s" in text or "s/step" in text  # tqdm's rate ([elapsed<remaining, rate])


def test_progress_line_has_rate_and_eta():
  from input_pipeline.progress import Progress

  bar = Progress(100, "train", unit="step", stream=io.StringIO(), initial=10)
  bar._t0 -= 10.0  # 10 s ago: 30 steps done in this run -> ~3 steps/s, 60 to go
  bar.done = 40
  line = bar.line("loss=1.5")
  assert "40/100 (40.0%)" in line and "loss=1.5" in line and "eta 0m20s" in line
  assert re.search(r"\| (3|2\.99\d*) step/s \|", line), line


def test_metric_writer_non_terminal_no_carriage_return(tmp_path, capsys):
  from fedvssl_jax.core.metrics import MetricWriter

  writer = MetricWriter(str(tmp_path), total_steps=4, prefix="train", num_processes=1)
  for step in range(1, 5):
    writer.write(step, {"loss": 1.0 / step})
  writer.close()
  out = capsys.readouterr().out
  assert "\r" not in out and len(out.splitlines()) == 4 and "step 4/4" in out
  assert [s for s, _ in scalars(str(tmp_path / "tensorboard"))["train/loss"]] == [1, 2, 3, 4]


def test_a_runs_log_file_has_no_carriage_return(synthetic_videos, tmp_path):
  """A real (tiny) run through the main command, its output redirected to a file as in a batch job: plain lines, the
  compile notice, the config and the kNN figures in TensorBoard."""
  import subprocess
  import sys

  from conftest import DATA_SHRINK, KNN_SHRINK, REPO

  log = tmp_path / "run.log"
  workdir = tmp_path / "w"
  args = ["--config=configs/speed.py:demo", f"--workdir={workdir}", f"--config.data.cache_dir={synthetic_videos}",
          *DATA_SHRINK, *KNN_SHRINK, "--config.batch_size=4", "--config.num_steps=2", "--config.log_every=1",
          "--config.task.clip_len=4", "--config.task.crop_size=32", "--config.task.short_side_sizes=(32,40)"]
  with open(log, "w") as f:
    proc = subprocess.run([sys.executable, "-m", "fedvssl_jax.main", *args], cwd=REPO, stdout=f,
                          stderr=subprocess.STDOUT, env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=900)
  text = log.read_text()
  assert proc.returncode == 0, text[-3000:]
  assert "\r" not in text and "\x1b[" not in text
  assert "compiling the train step..." in text and "step 2/2" in text
  logdir = str(workdir / "tensorboard")
  assert "config/text_summary" in text_tags(logdir)  # the hyperparameters, as TensorBoard text
  tb = scalars(logdir)
  results = json.loads((workdir / "results.json").read_text())
  assert tb["eval/knn/pretrained/R_at_1"] == [(2, pytest.approx(results["knn"]["pretrained"]["R@1"], rel=1e-5))]
  assert "eval/knn/random_init/R_at_5" in tb
  assert results["num_queries"] == 8 and os.path.isfile(workdir / "knn_recall.png")


# --- results: TensorBoard, rounding, plots ---------------------------------------------------------------------------


def test_write_results_puts_knn_figures_in_tensorboard_and_rounds(tmp_path):
  from fedvssl_jax.evaluation import reporting

  knn = {"pretrained": {"R@1": 57.99999999999999, "R@5": 80.0}, "random_init": {"R@1": 12.5, "R@5": 40.0}}
  results = {"steps": 7, "knn": knn, "num_queries": 8, "num_classes": 4, "test": {"top1": 1 / 3, "top5": 2 / 3},
             "loss": float("nan")}
  reporting.write_results(str(tmp_path), results)
  tb = scalars(str(tmp_path / "tensorboard"))
  assert tb["eval/knn/pretrained/R_at_1"] == [(7, pytest.approx(58.0))]
  assert tb["eval/test/top1"] == [(7, pytest.approx(1 / 3))]
  text = (tmp_path / "results.json").read_text()
  assert "57.99999999999999" not in text and "0.333333," in text.replace("\n", ",").replace(" ", "")
  written = json.loads(text)  # strict: NaN written as null
  assert written["knn"]["pretrained"]["R@1"] == 58.0 and written["loss"] is None
  assert os.path.isfile(tmp_path / "knn_recall.png")


def test_round_floats():
  from fedvssl_jax.evaluation.reporting import round_floats

  assert round_floats({"a": [57.99999999999999, 1e-9 / 3, 3, "x", None, True]}) == \
      {"a": [58.0, 3.33333e-10, 3, "x", None, True]}
  assert round_floats(123456789.0) == 123457000.0


def test_knn_chance():
  from fedvssl_jax.evaluation.reporting import knn_chance

  assert knn_chance(1, 4) == pytest.approx(25.0)
  assert knn_chance(5, 101) == pytest.approx(100 * (1 - (100 / 101) ** 5))


def test_federated_metrics_give_training_loss_png(tmp_path):
  """The federated run's rows (`round`, `global_loss`, per-client `loss`) -> training_loss.png."""
  from fedvssl_jax.evaluation import reporting
  from fedvssl_jax.core.metrics import dumps_strict

  with open(tmp_path / "federated_metrics.jsonl", "w") as f:
    for r in (1, 2, 3):
      f.write(dumps_strict({"round": r, "global_loss": 2.0 / r, "clients": [
          {"partition_id": 0, "loss": 2.1 / r}, {"partition_id": 1, "loss": 1.9 / r}]}) + "\n")
  path = reporting.plot_training_loss(str(tmp_path), "federated_metrics.jsonl")
  assert path == str(tmp_path / "training_loss.png") and os.path.getsize(path) > 1000
  results = reporting.write_results(str(tmp_path), {"federated": {"rounds": 3}},
                                    jsonl_name="federated_metrics.jsonl")
  assert results["plots"]["training_loss"] == path
