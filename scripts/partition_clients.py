#!/usr/bin/env python
"""Splits an annotation list over federated clients and writes FedVSSL ``client_dist{k}.json`` files (k = 1..N).

Schemes: iid (Python random.seed(7) shuffle + contiguous equal chunks, FedVSSL's IID K400 split), fedvssl-noniid
(FedVSSL's sliding window over classes sorted by count, 8 classes per client for N = 100), by-class (disjoint class
groups), dirichlet (per-class Dirichlet(alpha) proportions). A ``partition_summary.json`` with per-client sizes and
class counts is written next to the client files.

Example:
  python scripts/partition_clients.py --annotations train_in_official.json --scheme fedvssl-noniid \
      --num_clients 100 --out DATA/Kinetics-400_annotations
  python scripts/partition_clients.py --annotations /tmp/synthetic/annotations/train.json --scheme dirichlet \
      --alpha 0.3 --num_clients 4 --out /tmp/clients
"""

from __future__ import annotations

import collections
import json
import os
import sys

from fedvssl_jax import cli
from input_pipeline import annotations
from input_pipeline import partition


def _load_entries(path: str, fmt: str, class_index: str | None) -> list[dict]:
  if (fmt == "auto" and annotations.detect_format(path) == "json") or fmt == "json":
    return [dict(raw) for raw in annotations.load_annotation_source(path, fmt="json").raw]
  return annotations.file_entries(annotations.load_annotations(path, fmt=fmt, class_index=class_index))


def _load_counts(path: str, fmt: str, class_index: str | None) -> dict[int, int]:
  """{1-based label: count} from a JSON object {"label": count} or from any annotation file."""
  if path.lower().endswith(".json"):
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    if isinstance(data, dict):
      try:
        return {int(k): int(v) for k, v in data.items()}
      except (TypeError, ValueError):
        raise ValueError(f"{path}: class counts must map 1-based labels to ints") from None
  entries = _load_entries(path, fmt, class_index)
  return dict(collections.Counter(e["label"] for e in entries if "label" in e))


def main(argv=None) -> int:
  parser = cli.ArgumentParser(description=__doc__)
  parser.add_argument("--annotations", required=True, help="annotation file to split (any supported format)")
  parser.add_argument("--format", default="auto", choices=("auto",) + annotations.FORMATS + ("csv",))
  parser.add_argument("--class_index", default=None, help="classInd.txt (UCF-101 lists, Kinetics label order)")
  parser.add_argument("--scheme", required=True, choices=partition.SCHEMES)
  parser.add_argument("--num_clients", type=int, required=True)
  parser.add_argument("--out", required=True, help="output directory for client_dist{k}.json")
  parser.add_argument("--alpha", type=float, default=0.5, help="dirichlet concentration")
  parser.add_argument("--seed", type=int, default=None, help="seed (default: iid 7, by-class / dirichlet 0)")
  parser.add_argument("--classes_per_side", type=int, default=4,
                      help="fedvssl-noniid: small and large classes per client (4 in FedVSSL)")
  parser.add_argument("--num_classes", type=int, default=None,
                      help="fedvssl-noniid: label space size (default: largest label); absent labels count 0")
  parser.add_argument("--class_counts_file", default=None,
                      help="fedvssl-noniid: per-class counts that order the classes (a JSON {label: count} with "
                           "1-based labels, or an annotation file whose counts are used); default: --annotations")
  parser.add_argument("--prefix", default="client_dist")
  args = parser.parse_args(argv)
  try:
    entries = _load_entries(args.annotations, args.format, args.class_index)
    kwargs = {}
    if args.scheme == "fedvssl-noniid":
      kwargs = {"classes_per_side": args.classes_per_side, "num_classes": args.num_classes}
      if args.class_counts_file:
        kwargs["class_counts"] = _load_counts(args.class_counts_file, "auto", args.class_index)
    elif args.class_counts_file:
      print("warning: --class_counts_file is only used by fedvssl-noniid", file=sys.stderr)
    clients = partition.partition(entries, args.scheme, args.num_clients, seed=args.seed, alpha=args.alpha,
                                  **kwargs)
  except (annotations.AnnotationError, ValueError, TypeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  paths = partition.write_partitions(clients, args.out, prefix=args.prefix)
  stats = partition.partition_stats(clients)
  stats.update({"scheme": args.scheme, "annotations": os.path.abspath(args.annotations), "alpha": args.alpha,
                "seed": args.seed})
  partition.write_stats(stats, os.path.join(args.out, "partition_summary.json"))
  print(f"{args.scheme}: {len(entries)} entries -> {len(paths)} clients in {args.out}")
  print(f"  clips per client: min {stats['min_size']}, max {stats['max_size']}, total {stats['total_entries']} "
        f"({stats['unique_clips']} unique, {stats['clips_in_several_clients']} in several clients)")
  cpc = stats["classes_per_client"]
  print(f"  classes per client: min {min(cpc)}, max {max(cpc)}")
  return 0


if __name__ == "__main__":
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
