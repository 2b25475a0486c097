"""Prints a Markdown table comparing finished runs: kNN R@k from results.json, training metrics from metrics.jsonl.

  python scripts/summarize_runs.py /tmp/goca_plus /tmp/goca_minus /tmp/goca_none \
      --metrics agreement loss protos_used_rgb protos_used_flow

Each training metric is the mean of the last `--last` logged windows (default 3) in `<workdir>/metrics.jsonl`; kNN
columns are `knn.pretrained` and `knn.random_init` of `<workdir>/results.json`. The docs' ablation tables come from it.
"""

from __future__ import annotations

import json
import os
import sys

from fedvssl_jax import cli
from fedvssl_jax.evaluation import reporting


def summarize(workdir: str, ks: list[str], metrics: list[str], last: int) -> list[str]:
  """One table row's cells for `workdir` (missing values as "-")."""
  with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
    knn = json.load(f).get("knn", {})
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(metrics_path):
    raise FileNotFoundError(f"{metrics_path} not found")
  logged = [m for m in reporting.read_jsonl(metrics_path) if "loss" in m][-last:]
  cells = [os.path.basename(os.path.normpath(workdir))]
  for which in ("pretrained", "random_init"):
    cells += [f"{knn[which][k]:.0f}" if k in knn.get(which, {}) else "-" for k in ks]
  for name in metrics:
    values = [m[name] for m in logged if name in m]
    cells.append(f"{sum(values) / len(values):.3f}" if values else "-")
  return cells


def main(argv=None) -> int:
  parser = cli.ArgumentParser(description=__doc__)
  parser.add_argument("workdirs", nargs="+", help="run directories (with results.json and metrics.jsonl)")
  parser.add_argument("--ks", nargs="+", default=["R@1", "R@5"], help="kNN columns (default R@1 R@5)")
  parser.add_argument("--metrics", nargs="*", default=["loss"], help="training metrics to average (default loss)")
  parser.add_argument("--last", type=int, default=3, help="logged windows to average (default 3)")
  args = parser.parse_args(argv)
  header = (["run"] + [f"{k} pretrained" for k in args.ks] + [f"{k} random init" for k in args.ks]
            + list(args.metrics))
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for workdir in args.workdirs:
    try:
      cells = summarize(workdir, args.ks, args.metrics, args.last)
    except (OSError, ValueError) as e:
      print(f"{workdir}: {e}", file=sys.stderr)
      return 1
    print("| " + " | ".join(cells) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
