"""Host-side metrics: progress on stdout, TensorBoard event files and a JSON-lines file in the workdir.

Progress is a tqdm bar (rate, ETA, the latest scalars) when stdout is a terminal, and one plain line per logged step
otherwise (log files, pipes, CI): never a `\r`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Mapping

import numpy as np

from input_pipeline import progress as progress_lib


def _to_float(value: Any) -> float:
  return float(np.asarray(value))


def strict_json(obj: Any) -> Any:
  """`obj` with every non-finite float (NaN, +-inf) replaced by None, so that it serialises as strict JSON
  (`json.dumps(..., allow_nan=False)`); numpy scalars / arrays become Python numbers / lists."""
  if isinstance(obj, dict):
    return {k: strict_json(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [strict_json(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return strict_json(obj.tolist())
  if isinstance(obj, np.generic):
    obj = obj.item()
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def dumps_strict(obj: Any, **kwargs: Any) -> str:
  """`json.dumps` of `strict_json(obj)`: NaN / inf are written as null, never as bare `NaN` / `Infinity`."""
  return json.dumps(strict_json(obj), allow_nan=False, **kwargs)


def truncate_jsonl(path: str, key: str, last: int) -> int:
  """Drops the rows of the JSON-lines file `path` whose `key` is above `last` (rows logged by an interrupted run
  after its last checkpoint, which the resumed run logs again). Returns the number of rows dropped."""
  if not os.path.isfile(path):
    return 0
  with open(path, encoding="utf-8") as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue  # a line cut by a kill during the write
    if isinstance(row, dict) and isinstance(row.get(key), (int, float)) and row[key] > last:
      continue
    kept.append(line if line.endswith("\n") else line + "\n")
  if len(kept) != len(lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(kept)
    os.replace(tmp, path)
  return len(lines) - len(kept)


def flatten_numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
  """{"knn": {"pretrained": {"R@1": 0.5}}} -> {"knn/pretrained/R@1": 0.5}: the finite int / float leaves (bools and
  everything else dropped)."""
  out: dict[str, float] = {}
  for key, value in values.items():
    name = f"{prefix}/{key}" if prefix else str(key)
    if isinstance(value, Mapping):
      out.update(flatten_numbers(value, name))
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
      if math.isfinite(float(value)):
        out[name] = float(value)
  return out


def write_eval_summary(workdir: str, step: int, values: Mapping[str, Any], prefix: str = "eval") -> None:
  """Every numeric leaf of the nested `values` (`flatten_numbers`) as a TensorBoard scalar `<prefix>/<path>` at
  `step` in `<workdir>/tensorboard/` (evaluation figures: kNN R@k as `eval/knn/pretrained/R_at_1`, top-1 / top-5,
  the linear probe)."""
  from tensorboardX import SummaryWriter

  writer = SummaryWriter(os.path.join(workdir, "tensorboard"), filename_suffix=".eval")
  try:
    for key, value in flatten_numbers(values).items():
      # TensorBoard tags allow [A-Za-z0-9_./-] only (tensorboardX would turn "R@1" into "R_1").
      writer.add_scalar(f"{prefix}/{key}".replace("@", "_at_"), value, step)
  finally:
    writer.close()


def write_config_summary(workdir: str, config_json: str) -> None:
  """The run's config as TensorBoard text (`config`, the TEXT tab), so the hyperparameters sit beside the curves."""
  from tensorboardX import SummaryWriter

  writer = SummaryWriter(os.path.join(workdir, "tensorboard"), filename_suffix=".config")
  try:
    writer.add_text("config", "```\n" + config_json + "\n```", 0)
  finally:
    writer.close()


class MetricWriter:
  """Writes scalars to `<workdir>/tensorboard/` and `<workdir>/<jsonl_name>`, and prints progress.

  Args:
    workdir: the run's directory.
    total_steps: for the progress line's percentage and ETA.
    jsonl_name: name of the JSON-lines file (one object per logged step).
    prefix: prepended to every TensorBoard tag, e.g. "train".
    enabled: write files and print; False for the other processes of a multi-process job (process 0 writes).
    num_processes: shown in the progress line when > 1 (default: `jax.process_count()`).
  """

  def __init__(self, workdir: str, total_steps: int | None = None, jsonl_name: str = "metrics.jsonl",
               prefix: str = "", enabled: bool = True, num_processes: int | None = None):
    self.workdir = workdir
    self.total_steps = total_steps
    self.prefix = prefix
    self.enabled = enabled
    if num_processes is None:
      import jax

      num_processes = jax.process_count()
    self.num_processes = int(num_processes)
    self._tb = None
    self._jsonl = None
    self._jsonl_path = os.path.join(workdir, jsonl_name)
    self._t0 = time.time()
    self._last_time = self._t0
    self._last_step: int | None = None
    self._first_step = 0  # a resumed run's starting step (`truncate_after`): the bar's rate counts from there
    self._bar: progress_lib.Progress | None = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # local import: slow to import

      # Its own file name suffix: tensorboardX names files by the second, so writers opened in the same second
      # (config, training, evaluation) would otherwise write to one file and overwrite each other.
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), filename_suffix=f".{prefix or 'metrics'}")
      self._jsonl = open(self._jsonl_path, "a", encoding="utf-8")

  def truncate_after(self, step: int) -> None:
    """Forgets the rows above `step` (a resume from the checkpoint at `step`); call before the first `write`."""
    self._first_step = int(step)
    if not self.enabled:
      return
    self._jsonl.close()
    truncate_jsonl(self._jsonl_path, "step", step)
    self._jsonl = open(self._jsonl_path, "a", encoding="utf-8")

  def write(self, step: int, metrics: Mapping[str, Any], print_progress: bool = True) -> dict[str, float]:
    """Logs `metrics` (device arrays are fetched here) at `step`; returns them as floats."""
    scalars = {k: _to_float(v) for k, v in metrics.items()}
    now = time.time()
    if self._last_step is not None and step > self._last_step:
      scalars.setdefault("steps_per_sec", (step - self._last_step) / max(now - self._last_time, 1e-9))
    self._last_time, self._last_step = now, step
    if self.enabled:
      for k, v in scalars.items():
        self._tb.add_scalar(f"{self.prefix}/{k}" if self.prefix else k, v, step)
      self._jsonl.write(dumps_strict({"step": step, "time": now, **scalars}) + "\n")
      self._jsonl.flush()
    if print_progress and self.enabled:
      if progress_lib.is_terminal(sys.stdout):
        if self._bar is None:
          self._bar = progress_lib.Progress(self.total_steps, self.prefix or "train", unit="step", stream=sys.stdout,
                                            initial=self._first_step)
        shown = {k: v for k, v in scalars.items() if k != "steps_per_sec" and not (k == "num_replaced" and not v)}
        self._bar.update(step, postfix=" ".join(f"{k}={v:.4g}" for k, v in shown.items()))
      else:
        print(self.progress_line(step, scalars), flush=True, file=sys.stdout)
    return scalars

  def progress_line(self, step: int, scalars: Mapping[str, float]) -> str:
    parts = []
    if self.total_steps:
      pct = 100.0 * step / self.total_steps
      parts.append(f"step {step}/{self.total_steps} ({pct:4.1f}%)")
    else:
      parts.append(f"step {step}")
    for k, v in scalars.items():
      if k == "steps_per_sec" or (k == "num_replaced" and not v):
        continue
      parts.append(f"{k} {v:.4g}" if math.isfinite(v) else f"{k} {v}")
    rate = scalars.get("steps_per_sec")
    if rate:
      parts.append(f"{rate:.2f} steps/s")
      if self.total_steps and step < self.total_steps:
        eta = (self.total_steps - step) / rate
        parts.append(f"eta {int(eta // 60)}m{int(eta % 60):02d}s")
    if self.num_processes > 1:
      parts.append(f"{self.num_processes} processes")
    name = f"[{self.prefix}] " if self.prefix else ""
    return name + " | ".join(parts)

  def close(self) -> None:
    """Closes the progress bar, the TensorBoard writer and the JSON-lines file (safe to call twice)."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
