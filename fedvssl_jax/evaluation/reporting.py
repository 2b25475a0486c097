"""Results files of a run: `results.json` and PNG plots (training loss, R@k bars) in the workdir."""

from __future__ import annotations

import json
import math
import os
from typing import Any


# The results.json entries that are evaluation figures (also written to TensorBoard as `eval/<entry>/...`): kNN R@k,
# fine-tuning's test top-1 / top-5 / mean class accuracy, the linear probe, CtP's trajectory IoU.
EVAL_SECTIONS = ("knn", "knn_per_stream", "test", "linear_probe", "ctp_trajectory_iou")


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


def _pyplot():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def run_name(workdir: str) -> str:
  """The run's name in plot titles: the workdir's last path component."""
  return os.path.basename(os.path.normpath(os.path.abspath(workdir)))


def plot_training_loss(workdir: str, jsonl_name: str = "metrics.jsonl", out_name: str = "training_loss.png",
                       key: str = "loss") -> str | None:
  """Plots the training loss from the run's JSON-lines metrics; returns the PNG path (None without data).

  Local runs: `key` against `step`. Federated runs (rows with `round` and `global_loss`, `federated_metrics.jsonl`):
  the aggregated global loss per round, and each client's local training loss (thin lines, by partition id).
  """
  rows = read_jsonl(os.path.join(workdir, jsonl_name))
  federated = [r for r in rows if "round" in r and "global_loss" in r]
  rows = [r for r in rows if key in r and "step" in r]
  if not rows and not federated:
    return None
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  if federated:
    by_round = {r["round"]: r for r in federated}  # a resumed run may log a round twice: keep the last
    rounds = sorted(by_round)
    clients: dict[Any, dict[int, float]] = {}
    for r in rounds:
      for c in by_round[r].get("clients") or []:
        if c.get("loss") is not None:
          clients.setdefault(c.get("partition_id"), {})[r] = c["loss"]
    for pid in sorted(clients, key=str):
      xs = sorted(clients[pid])
      ax.plot(xs, [clients[pid][x] for x in xs], lw=0.8, alpha=0.5, marker=".", label=f"client {pid}")
    losses = [by_round[r]["global_loss"] for r in rounds]
    ax.plot(rounds, [v if v is not None else float("nan") for v in losses], lw=2, color="black", marker="o",
            label="global (mean weighted by examples)")
    ax.set_xlabel("round")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("training loss")
    ax.set_title(f"{run_name(workdir)}: federated training loss")
    if len(clients) <= 12:
      ax.legend(fontsize=7)
  else:
    by_step = {}
    for r in rows:  # a resumed run may log a step twice: keep the last
      by_step[r["step"]] = r[key]
    steps = sorted(by_step)
    ax.plot(steps, [by_step[s] if by_step[s] is not None else float("nan") for s in steps])
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"{run_name(workdir)}: training {key}")
  ax.grid(alpha=0.3)
  path = os.path.join(workdir, out_name)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def knn_chance(k: int, num_classes: int) -> float:
  """Chance R@k (%) of kNN retrieval with `num_classes` balanced classes: P(at least one of k random gallery videos
  shares the query's class) = 1 - (1 - 1/C)^k."""
  return 100.0 * (1.0 - (1.0 - 1.0 / num_classes) ** k)


def plot_recall_bars(workdir: str, knn: dict[str, dict[str, float]], out_name: str = "knn_recall.png",
                     num_queries: int | None = None, num_classes: int | None = None) -> str:
  """Grouped bars of R@k for each evaluated model (e.g. pretrained vs random_init), with the chance level of
  `num_classes` balanced classes, the run name and the number of queries in the title."""
  import numpy as np

  plt = _pyplot()
  names = list(knn)
  ks = list(next(iter(knn.values())).keys())
  x = np.arange(len(ks))
  width = 0.8 / max(len(names), 1)
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, name in enumerate(names):
    vals = [knn[name][k] for k in ks]
    bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=name)
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
  if num_classes and num_classes > 1:
    kvals = [int(k.split("@", 1)[1]) if "@" in k and k.split("@", 1)[1].isdigit() else None for k in ks]
    for xi, kv in zip(x, kvals):
      if kv is not None:
        ax.hlines(knn_chance(kv, num_classes), xi - 0.45, xi + 0.45, colors="black", linestyles="--", lw=1, zorder=3,
                  label=f"chance ({num_classes} balanced classes)" if xi == x[0] else None)
  ax.set_xticks(x, ks)
  ax.set_ylabel("recall (%)")
  ax.set_ylim(0, 125)  # room for the legend above the bars
  ax.set_yticks(range(0, 101, 20))
  title = f"{run_name(workdir)}: kNN retrieval"
  if num_queries:
    title += f" ({num_queries} queries)"
  ax.set_title(title)
  ax.legend(fontsize=8, loc="upper center", ncol=3)
  path = os.path.join(workdir, out_name)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def round_floats(obj: Any, digits: int = 6) -> Any:
  """`obj` with every float rounded to `digits` significant digits (57.99999999999999 -> 58.0); ints, strings and
  None unchanged, non-finite floats left for `dumps_strict`."""
  if isinstance(obj, dict):
    return {k: round_floats(v, digits) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [round_floats(v, digits) for v in obj]
  if isinstance(obj, float) and math.isfinite(obj):
    return float(f"{obj:.{digits}g}")
  return obj


def write_results(workdir: str, results: dict[str, Any], jsonl_name: str = "metrics.jsonl") -> dict[str, Any]:
  """Adds plots to `results["plots"]`, the evaluation figures to TensorBoard (`eval/...`), writes `<workdir>/results.json` (process 0) and prints it."""
  import jax  # here, so that scripts reading the results files do not load jax

  if jax.process_index() != 0:
    return results
  plots = {}
  loss_plot = plot_training_loss(workdir, jsonl_name)
  if loss_plot:
    plots["training_loss"] = loss_plot
  knn = results.get("knn")
  if isinstance(knn, dict) and knn and all(isinstance(v, dict) for v in knn.values()):
    plots["knn_recall"] = plot_recall_bars(workdir, knn, num_queries=results.get("num_queries"),
                                           num_classes=results.get("num_classes"))
  if plots:
    results["plots"] = plots
  rows = read_jsonl(os.path.join(workdir, jsonl_name))
  if any("num_replaced" in r for r in rows):  # per logging window, rows de-duplicated on resume
    results.setdefault("num_replaced", int(sum(r.get("num_replaced") or 0 for r in rows)))
  from fedvssl_jax.core.metrics import dumps_strict, strict_json, write_eval_summary

  evaluation = {k: results[k] for k in EVAL_SECTIONS if isinstance(results.get(k), (dict, int, float))}
  if evaluation:  # the figures beside the training curves, at the run's last step (or round)
    federated = results.get("federated")
    step = results.get("steps") or (federated.get("rounds") if isinstance(federated, dict) else None) or 0
    write_eval_summary(workdir, int(step), evaluation)
  # NaN -> null: results.json stays strict JSON; 6 significant digits are more than any figure here carries.
  text = dumps_strict(round_floats(strict_json(results)), indent=2)
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  print(text, flush=True)
  return results
