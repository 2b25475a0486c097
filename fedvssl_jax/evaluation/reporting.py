"""Results files of a run: `results.json` and PNG plots (training loss, R@k bars) in the workdir."""

from __future__ import annotations

import json
import os
from typing import Any


def read_jsonl(path: str) -> list[dict[str, Any]]:
  rows = []
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if line:
          try:
            rows.append(json.loads(line))
          except ValueError:
            continue  # a row cut by a kill during the write
  return rows


def plot_training_loss(workdir: str, jsonl_name: str = "metrics.jsonl", out_name: str = "training_loss.png",
                       key: str = "loss") -> str | None:
  """Plots `key` against `step` from the run's JSON-lines metrics; returns the PNG path (None without data)."""
  rows = [r for r in read_jsonl(os.path.join(workdir, jsonl_name)) if key in r and "step" in r]
  if not rows:
    return None
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  by_step = {}
  for r in rows:  # a resumed run may log a step twice: keep the last
    by_step[r["step"]] = r[key]
  steps = sorted(by_step)
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(steps, [by_step[s] for s in steps])
  ax.set_xlabel("step")
  ax.set_ylabel(key)
  ax.set_title(f"training {key}")
  ax.grid(alpha=0.3)
  path = os.path.join(workdir, out_name)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def plot_recall_bars(workdir: str, knn: dict[str, dict[str, float]], out_name: str = "knn_recall.png") -> str:
  """Grouped bars of R@k for each evaluated model (e.g. pretrained vs random_init)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  names = list(knn)
  ks = list(next(iter(knn.values())).keys())
  x = np.arange(len(ks))
  width = 0.8 / max(len(names), 1)
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, name in enumerate(names):
    vals = [knn[name][k] for k in ks]
    bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=name)
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
  ax.set_xticks(x, ks)
  ax.set_ylabel("recall (%)")
  ax.set_ylim(0, 105)
  ax.set_title("kNN retrieval")
  ax.legend()
  path = os.path.join(workdir, out_name)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def write_results(workdir: str, results: dict[str, Any], jsonl_name: str = "metrics.jsonl") -> dict[str, Any]:
  """Adds plots to `results["plots"]`, writes `<workdir>/results.json` (process 0) and prints it."""
  import jax  # here, so that scripts reading the results files do not load jax

  if jax.process_index() != 0:
    return results
  plots = {}
  loss_plot = plot_training_loss(workdir, jsonl_name)
  if loss_plot:
    plots["training_loss"] = loss_plot
  knn = results.get("knn")
  if isinstance(knn, dict) and knn and all(isinstance(v, dict) for v in knn.values()):
    plots["knn_recall"] = plot_recall_bars(workdir, knn)
  if plots:
    results["plots"] = plots
  rows = read_jsonl(os.path.join(workdir, jsonl_name))
  if any("num_replaced" in r for r in rows):  # per logging window, rows de-duplicated on resume
    results.setdefault("num_replaced", int(sum(r.get("num_replaced") or 0 for r in rows)))
  from fedvssl_jax.core.metrics import dumps_strict

  text = dumps_strict(results, indent=2)  # NaN -> null: results.json stays strict JSON
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  print(text, flush=True)
  return results
