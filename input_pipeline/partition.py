"""Client partitions of an annotation list, written as FedVSSL ``client_dist{k}.json`` files.

Entries are dicts in the CtP / FedVSSL file format, ``{"name": str, "label": int (1-based)}``; every scheme is a pure
function ``entries -> list[list[entry]]`` (client k + 1 reads ``client_dist{k + 1}.json``). Schemes:

* ``iid_partition``: FedVSSL's IID split (``kinetics_json_splitter.py``): Python ``random.seed(7)`` shuffle of the
  list, then contiguous, (almost) equal chunks. The published files have 2,196-2,197 clips per client for 219,664
  clips; we cut at ``floor(k * n / N)`` (client 1 gets ``floor(n / N)`` clips, as in the published client_dist1).
* ``fedvssl_noniid_partition``: FedVSSL's non-IID K400 split (``k400_non_iid.py``), a sliding window of stride 1 over
  the classes sorted by sample count, with the original's in-place reshuffles (see the function).
* ``by_class_partition``: disjoint groups of whole classes.
* ``dirichlet_partition``: per-class Dirichlet(alpha) proportions over clients.
"""

from __future__ import annotations

import collections
import json
import os
import random
from typing import Any, Mapping, Sequence

import numpy as np

from input_pipeline import annotations as annotations_lib

Entry = dict[str, Any]
SCHEMES = ("iid", "fedvssl-noniid", "by-class", "dirichlet")


def _labels(entries: Sequence[Entry], scheme: str) -> list[int]:
  labels = []
  for i, e in enumerate(entries):
    label = e.get("label")
    if not isinstance(label, int) or label < 1:
      raise ValueError(f"{scheme}: entry #{i} ({e.get('name')!r}) needs a 1-based int label, got {label!r}")
    labels.append(label)
  return labels


def _check_clients(num_clients: int) -> None:
  if not isinstance(num_clients, int) or num_clients < 1:
    raise ValueError(f"num_clients must be a positive int, got {num_clients!r}")


# ----------------------------------------------------------------------------------------------------------------
# IID


def iid_partition(entries: Sequence[Entry], num_clients: int, seed: int = 7) -> list[list[Entry]]:
  """Shuffles with Python's ``random`` (``random.seed(seed)``; FedVSSL uses 7) and cuts contiguous equal chunks.

  Client k (0-based) gets ``shuffled[floor(k n / N) : floor((k + 1) n / N)]``: sizes differ by at most one, every entry
  is in exactly one client.
  """
  _check_clients(num_clients)
  items = list(entries)
  if len(items) < num_clients:
    raise ValueError(f"iid: {len(items)} entries cannot fill {num_clients} clients")
  rng = random.Random()
  rng.seed(seed)
  rng.shuffle(items)
  n = len(items)
  bounds = [k * n // num_clients for k in range(num_clients + 1)]
  return [items[bounds[k]:bounds[k + 1]] for k in range(num_clients)]


# ----------------------------------------------------------------------------------------------------------------
# FedVSSL non-IID


def class_order_by_count(counts: Mapping[int, int], num_classes: int | None = None) -> list[tuple[int, int]]:
  """``[(label, count)]`` for labels 1..num_classes (missing ones count 0), stably sorted by count ascending."""
  if num_classes is None:
    num_classes = max(counts) if counts else 0
  order = [(label, int(counts.get(label, 0))) for label in range(1, num_classes + 1)]
  order.sort(key=lambda x: x[1])
  return order


def fedvssl_noniid_partition(entries: Sequence[Entry], num_clients: int = 100, classes_per_side: int = 4,
                             small_seed: int = 1234, large_seed: int = 4321, num_classes: int | None = None,
                             class_counts: Mapping[int, int] | None = None) -> list[list[Entry]]:
  """FedVSSL's non-IID split: a sliding window (stride 1) over the classes sorted by sample count.

  Algorithm (``k400_non_iid.py`` with N = 100, classes_per_side = 4):
    1. Group the entries by label in file order; order the labels 1..num_classes (absent labels count 0) by count,
       ascending (stable sort: ties keep label order).
    2. For window i in 0..N/2-1: the small classes are ``sorted[i : i + 4]`` and the large ones
       ``sorted[-i - 5 : -i - 1]`` (the single largest class is never used). For j in 0..3: seed Python's ``random``
       with ``small_seed`` and shuffle small class j's list **in place**, seed with ``large_seed`` and shuffle large
       class j's list in place; client i + 1 gets the first halves (``[: n // 2]``) and client i + 1 + N/2 the
       second halves, appended small_j then large_j for j = 0..3.
  Lists are shuffled in place, so a class that sits in several windows is reshuffled from its previous order each
  time (its halves differ between windows): a clip appears in up to 4 windows (4 different clients), and clients k
  and k + N/2 hold the same 8 classes, clients k and k + 1 share 6 of them.

  Reproducibility: this follows the published script exactly, but the shipped ``client_dist{k}.json`` files cannot be
  regenerated from it bit for bit: reshuffling client_dist1 + client_dist51's half-lists of a class shared with
  client_dist2 (seed reset, in place) does not give client_dist2's half, so the shipped files came from a different
  run / version. Class sets, half sizes and the sliding-window structure match the shipped files.

  Generalisation: any even ``num_clients`` (N/2 windows) and ``classes_per_side`` (c small + c large classes per
  client); the windows are ``sorted[i : i + c]`` and ``sorted[-i - c - 1 : -i - 1]``. The small and large windows
  must not overlap: ``num_classes >= N/2 - 1 + 2 c + 1 + (N/2 - 1)`` i.e. ``num_classes >= N + 2 c - 1``.

  Args:
    entries: ``{"name", "label" (1-based)}`` dicts.
    num_clients: N, even.
    classes_per_side: c (4 in FedVSSL).
    small_seed, large_seed: the seeds reset before each shuffle (1234 and 4321 in FedVSSL).
    num_classes: size of the label space (default: the largest label); labels without entries count 0.
    class_counts: optional {label: count} defining the sort order instead of the entries' own counts.

  Returns:
    N lists of entries.
  """
  _check_clients(num_clients)
  if num_clients % 2:
    raise ValueError(f"fedvssl-noniid pairs client i with i + N/2, so num_clients must be even, got {num_clients}")
  c = int(classes_per_side)
  if c < 1:
    raise ValueError(f"classes_per_side must be >= 1, got {classes_per_side}")
  labels = _labels(entries, "fedvssl-noniid")
  by_label: dict[int, list[Entry]] = collections.defaultdict(list)
  for e, label in zip(entries, labels):
    by_label[label].append(dict(e))
  num_classes = num_classes or max(max(labels), max(class_counts) if class_counts else 0)
  counts = class_counts if class_counts is not None else {k: len(v) for k, v in by_label.items()}
  order = class_order_by_count(counts, num_classes)
  windows = num_clients // 2
  needed = num_clients + 2 * c - 1
  if len(order) < needed:
    raise ValueError(
        f"fedvssl-noniid: {num_clients} clients with {c} small + {c} large classes each need at least {needed} "
        f"classes (small windows sorted[i:i+{c}] and large windows sorted[-i-{c + 1}:-i-1] must not overlap), "
        f"got {len(order)}; use fewer clients or a smaller classes_per_side")
  rng = random.Random()
  clients: list[list[Entry]] = [[] for _ in range(num_clients)]
  for i in range(windows):
    small = order[i:i + c]
    large = order[len(order) - i - c - 1:len(order) - i - 1]
    first, second = clients[i], clients[i + windows]
    for j in range(c):
      list_s, list_l = by_label[small[j][0]], by_label[large[j][0]]
      n_s, n_l = len(list_s), len(list_l)
      rng.seed(small_seed)
      rng.shuffle(list_s)
      rng.seed(large_seed)
      rng.shuffle(list_l)
      first.extend(dict(e) for e in list_s[:n_s // 2])
      first.extend(dict(e) for e in list_l[:n_l // 2])
      second.extend(dict(e) for e in list_s[n_s // 2:])
      second.extend(dict(e) for e in list_l[n_l // 2:])
  return clients


# ----------------------------------------------------------------------------------------------------------------
# By class, Dirichlet


def by_class_partition(entries: Sequence[Entry], num_clients: int, seed: int = 0) -> list[list[Entry]]:
  """Disjoint class groups: the labels are shuffled (``random.Random(seed)``) and cut into N near-equal groups;
  client k gets every entry of its classes (file order)."""
  _check_clients(num_clients)
  labels = _labels(entries, "by-class")
  classes = sorted(set(labels))
  if len(classes) < num_clients:
    raise ValueError(f"by-class: {len(classes)} classes cannot give {num_clients} clients a class each")
  random.Random(seed).shuffle(classes)
  owner = {}
  for k in range(num_clients):
    for label in classes[k * len(classes) // num_clients:(k + 1) * len(classes) // num_clients]:
      owner[label] = k
  clients: list[list[Entry]] = [[] for _ in range(num_clients)]
  for e, label in zip(entries, labels):
    clients[owner[label]].append(dict(e))
  return clients


def dirichlet_partition(entries: Sequence[Entry], num_clients: int, alpha: float = 0.5, seed: int = 0,
                        min_per_client: int = 1, max_tries: int = 100) -> list[list[Entry]]:
  """Label-skewed split: for each class, proportions p ~ Dirichlet(alpha * 1_N) over the clients.

  Each class's entries are permuted (``np.random.default_rng(seed)``) and cut at ``floor(cumsum(p) * n_c)``. Small
  alpha gives clients few dominant classes; large alpha approaches IID. Redraws (up to ``max_tries``) until every client
  has at least ``min_per_client`` entries. Disjoint, covers every entry.
  """
  _check_clients(num_clients)
  if not alpha > 0:
    raise ValueError(f"dirichlet: alpha must be > 0, got {alpha}")
  labels = np.asarray(_labels(entries, "dirichlet"))
  if len(labels) < num_clients * min_per_client:
    raise ValueError(f"dirichlet: {len(labels)} entries cannot give {num_clients} clients {min_per_client} each")
  rng = np.random.default_rng(seed)
  classes = np.unique(labels)
  for _ in range(max_tries):
    assignment = np.empty(len(labels), np.int64)
    for label in classes:
      idx = rng.permutation(np.flatnonzero(labels == label))
      p = rng.dirichlet(np.full(num_clients, float(alpha)))
      cuts = np.floor(np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
      for k, part in enumerate(np.split(idx, cuts)):
        assignment[part] = k
    sizes = np.bincount(assignment, minlength=num_clients)
    if sizes.min() >= min_per_client:
      break
  else:
    raise ValueError(f"dirichlet: no draw in {max_tries} tries gave every client >= {min_per_client} entries "
                     f"(alpha={alpha}, {len(labels)} entries, {num_clients} clients)")
  clients: list[list[Entry]] = [[] for _ in range(num_clients)]
  for e, k in zip(entries, assignment):
    clients[int(k)].append(dict(e))
  return clients


def auto_classes_per_side(num_classes: int, num_clients: int, max_per_side: int = 4) -> int:
  """The largest c <= max_per_side with ``num_classes >= num_clients + 2 c - 1`` (fedvssl-noniid windows fit)."""
  c = min(max_per_side, (num_classes - num_clients + 1) // 2)
  if c < 1:
    raise ValueError(f"fedvssl-noniid: {num_classes} classes are too few for {num_clients} clients "
                     f"(need at least {num_clients + 1})")
  return c


def partition(entries: Sequence[Entry], scheme: str, num_clients: int, *, seed: int | None = None,
              alpha: float = 0.5, **kwargs) -> list[list[Entry]]:
  """Dispatches to a scheme by name (``SCHEMES``).

  ``seed`` None keeps each scheme's default (iid: 7, FedVSSL's; by-class / dirichlet: 0; fedvssl-noniid has its own
  fixed seeds and ignores it). For fedvssl-noniid, ``classes_per_side=None`` picks the largest c <= 4 that fits the
  label space (``auto_classes_per_side``), so small datasets work with FedVSSL's scheme.
  """
  entries = annotations_lib.file_entries(entries)
  if scheme == "iid":
    return iid_partition(entries, num_clients, seed=7 if seed is None else seed)
  if scheme == "fedvssl-noniid":
    if kwargs.get("classes_per_side") is None:
      labels = _labels(entries, scheme)
      num_classes = kwargs.get("num_classes") or max(labels)
      kwargs["classes_per_side"] = auto_classes_per_side(num_classes, num_clients)
    return fedvssl_noniid_partition(entries, num_clients, **kwargs)
  if scheme == "by-class":
    return by_class_partition(entries, num_clients, seed=0 if seed is None else seed)
  if scheme == "dirichlet":
    return dirichlet_partition(entries, num_clients, alpha=alpha, seed=0 if seed is None else seed, **kwargs)
  raise ValueError(f"unknown partition scheme {scheme!r}; known: {', '.join(SCHEMES)}")


def partition_records(records: Sequence[annotations_lib.VideoRecord], scheme: str, num_clients: int, *,
                      seed: int | None = None, alpha: float = 0.5, **kwargs
                      ) -> list[list[annotations_lib.VideoRecord]]:
  """``partition`` on VideoRecords (0-based labels): returns the records of each client (same objects)."""
  entries = []
  for i, r in enumerate(records):
    if r.label < 0 and scheme != "iid":
      raise ValueError(f"{scheme}: record {r.name!r} has no label")
    entries.append({"name": r.name, "label": r.label + 1, "_record": i})
  clients = partition(entries, scheme, num_clients, seed=seed, alpha=alpha, **kwargs)
  return [[records[e["_record"]] for e in client] for client in clients]


# ----------------------------------------------------------------------------------------------------------------
# Output


def write_partitions(clients: Sequence[Sequence[Entry]], out_dir, prefix: str = "client_dist") -> list[str]:
  """Writes ``{out_dir}/{prefix}{k}.json`` for k = 1..N in FedVSSL's format; returns the paths."""
  out_dir = os.fspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for k, entries in enumerate(clients, start=1):
    path = os.path.join(out_dir, f"{prefix}{k}.json")
    annotations_lib.write_json_list(entries, path)
    paths.append(path)
  return paths


def partition_stats(clients: Sequence[Sequence[Entry]]) -> dict[str, Any]:
  """Sizes, per-client class counts, unique / duplicated clips of a partition (JSON-serialisable)."""
  sizes = [len(c) for c in clients]
  per_client = [dict(sorted(collections.Counter(e.get("label") for e in c).items())) for c in clients]
  occurrences = collections.Counter(e["name"] for c in clients for e in c)
  return {
      "num_clients": len(clients),
      "sizes": sizes,
      "total_entries": int(sum(sizes)),
      "min_size": int(min(sizes)) if sizes else 0,
      "max_size": int(max(sizes)) if sizes else 0,
      "unique_clips": len(occurrences),
      "clips_in_several_clients": sum(1 for v in occurrences.values() if v > 1),
      "classes_per_client": [len(c) for c in per_client],
      "class_counts": [{str(k): v for k, v in c.items()} for c in per_client],
  }


def write_stats(stats: Mapping[str, Any], path) -> None:
  with open(os.fspath(path), "w", encoding="utf-8") as f:
    json.dump(stats, f, indent=2)
    f.write("\n")
