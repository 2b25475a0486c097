"""Client partitions: FedVSSL IID and non-IID (sliding window) splits, by-class, Dirichlet; the script."""

import collections
import json
import random

import numpy as np
import pytest

from input_pipeline import annotations as ann
from input_pipeline import partition


def kinetics_like(num_classes=400, low=4, high=24, seed=0):
  """Entries of a K400-like list: class sizes drawn at random, names unique."""
  rng = np.random.default_rng(seed)
  counts = rng.integers(low, high, size=num_classes)
  return [{"name": f"class{label}/v{i:04d}", "label": label}
          for label in range(1, num_classes + 1) for i in range(counts[label - 1])]


def labels_of(client):
  return {e["label"] for e in client}


def test_iid_reproduces_random_seed_7_chunks():
  entries = [{"name": f"v{i}", "label": i % 7 + 1} for i in range(1003)]
  clients = partition.iid_partition(entries, 10)
  expected = list(entries)
  random.seed(7)
  random.shuffle(expected)
  assert [e for c in clients for e in c] == expected  # contiguous chunks of the seed-7 shuffle
  sizes = [len(c) for c in clients]
  assert sizes[0] == 100 and set(sizes) == {100, 101} and sum(sizes) == 1003
  assert partition.iid_partition(entries, 10, seed=8) != clients
  with pytest.raises(ValueError, match="cannot fill"):
    partition.iid_partition(entries[:3], 5)


def test_fedvssl_noniid_properties():
  entries = kinetics_like()
  clients = partition.fedvssl_noniid_partition(entries, 100)
  assert len(clients) == 100
  sets = [labels_of(c) for c in clients]
  assert all(len(s) == 8 for s in sets)
  assert all(sets[k] == sets[k + 50] for k in range(50))
  assert all(len(sets[k] & sets[k + 1]) == 6 for k in range(49))
  assert len(set().union(*sets)) == 106  # fedvssl.md: only 106 of the 400 classes are used
  counts = collections.Counter(e["label"] for e in entries)
  order = [label for label, _ in sorted(((l, counts[l]) for l in range(1, 401)), key=lambda x: x[1])]
  assert order[-1] not in set().union(*sets)  # the largest class is never used (sorted[-i-5:-i-1])
  assert sets[0] == set(order[0:4]) | set(order[-5:-1])
  assert sets[49] == set(order[49:53]) | set(order[-54:-50])
  for k in range(50):  # halves: first = n // 2, second = the rest, and disjoint
    a, b = clients[k], clients[k + 50]
    assert not {e["name"] for e in a} & {e["name"] for e in b}
    ca, cb = collections.Counter(e["label"] for e in a), collections.Counter(e["label"] for e in b)
    assert all(ca[l] == counts[l] // 2 and cb[l] == counts[l] - counts[l] // 2 for l in sets[k])
  occurrences = collections.Counter(e["name"] for c in clients for e in c)
  assert max(occurrences.values()) == 4  # a clip sits in up to 4 windows -> 4 clients
  # output order: small_j then large_j, j = 0..3
  first_labels = list(dict.fromkeys(e["label"] for e in clients[0]))
  assert first_labels == [order[0], order[-5], order[1], order[-4], order[2], order[-3], order[3], order[-2]]


def test_fedvssl_noniid_reshuffles_in_place():
  """A class in windows 0 and 1 is shuffled (seed reset) on its already shuffled list, as in k400_non_iid.py."""
  entries = kinetics_like(num_classes=60, seed=3)
  clients = partition.fedvssl_noniid_partition(entries, 4)
  counts = collections.Counter(e["label"] for e in entries)
  order = [l for l, _ in sorted(((l, counts[l]) for l in range(1, 61)), key=lambda x: x[1])]
  small = order[1]  # in windows 0 (j = 1) and 1 (j = 0)
  items = [e for e in entries if e["label"] == small]
  n = len(items)
  rng = random.Random()
  rng.seed(1234)
  rng.shuffle(items)
  assert [e for e in clients[0] if e["label"] == small] == items[:n // 2]
  assert [e for e in clients[2] if e["label"] == small] == items[n // 2:]
  rng.seed(1234)
  rng.shuffle(items)  # second, in-place reshuffle
  assert [e for e in clients[1] if e["label"] == small] == items[:n // 2]
  large = order[-3]  # windows 0 (j = 2) and 1 (j = 3), seed 4321
  items = [e for e in entries if e["label"] == large]
  rng.seed(4321)
  rng.shuffle(items)
  assert [e for e in clients[0] if e["label"] == large] == items[:len(items) // 2]


def test_fedvssl_noniid_generalises_and_validates():
  entries = kinetics_like(num_classes=10, low=10, high=20)
  with pytest.raises(ValueError, match="even"):
    partition.fedvssl_noniid_partition(entries, 3)
  with pytest.raises(ValueError, match="at least 11 classes"):
    partition.fedvssl_noniid_partition(entries, 4)
  clients = partition.partition(entries, "fedvssl-noniid", 4)  # auto: 3 small + 3 large classes
  assert [len(labels_of(c)) for c in clients] == [6, 6, 6, 6]
  assert labels_of(clients[0]) == labels_of(clients[2])
  assert partition.auto_classes_per_side(400, 100) == 4
  # external class counts define the order
  counts = {l: 1000 - l for l in range(1, 11)}  # label 10 smallest
  clients = partition.fedvssl_noniid_partition(entries, 2, classes_per_side=2, class_counts=counts)
  assert labels_of(clients[0]) == {10, 9, 3, 2}


def test_by_class_is_disjoint():
  entries = kinetics_like(num_classes=12, seed=1)
  clients = partition.by_class_partition(entries, 5, seed=0)
  sets = [labels_of(c) for c in clients]
  assert sorted(len(s) for s in sets) == [2, 2, 2, 3, 3]
  assert all(not (sets[a] & sets[b]) for a in range(5) for b in range(a + 1, 5))
  assert sum(len(c) for c in clients) == len(entries)
  with pytest.raises(ValueError, match="cannot give"):
    partition.by_class_partition(entries, 13)


def entropy(client):
  p = np.bincount([e["label"] for e in client], minlength=21)[1:] / len(client)
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


def test_dirichlet_alpha_controls_skew():
  entries = [{"name": f"v{i}", "label": i % 20 + 1} for i in range(4000)]
  mean_entropy = {}
  for alpha in (0.05, 1.0, 100.0):
    clients = partition.dirichlet_partition(entries, 8, alpha=alpha, seed=0)
    names = [e["name"] for c in clients for e in c]
    assert sorted(names) == sorted(e["name"] for e in entries)  # disjoint cover
    mean_entropy[alpha] = np.mean([entropy(c) for c in clients])
  assert mean_entropy[0.05] < mean_entropy[1.0] < mean_entropy[100.0]
  assert mean_entropy[100.0] > 0.95 * np.log(20)  # close to uniform
  a = partition.dirichlet_partition(entries, 8, alpha=0.5, seed=3)
  assert a == partition.dirichlet_partition(entries, 8, alpha=0.5, seed=3)
  assert a != partition.dirichlet_partition(entries, 8, alpha=0.5, seed=4)
  with pytest.raises(ValueError, match="alpha"):
    partition.dirichlet_partition(entries, 8, alpha=0)


def test_partition_records_and_unknown_scheme():
  records = [ann.VideoRecord(f"/d/v{i}.mp4", i % 6, f"v{i}") for i in range(120)]
  for scheme in partition.SCHEMES:
    clients = partition.partition_records(records, scheme, 2, seed=0)
    assert all(isinstance(r, ann.VideoRecord) for c in clients for r in c)
    names = {r.name for c in clients for r in c}
    if scheme == "fedvssl-noniid":  # uses 2 x 2 classes of the 6 (sliding window), never the largest
      assert len({r.label for c in clients for r in c}) == 4 and names < {r.name for r in records}
    else:
      assert names == {r.name for r in records}
  with pytest.raises(ValueError, match="unknown partition scheme"):
    partition.partition([], "random", 2)


def test_script_writes_client_files(tmp_path):
  import importlib.util
  import pathlib

  script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "partition_clients.py"
  spec = importlib.util.spec_from_file_location("partition_clients", script)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  src = tmp_path / "train.json"
  ann.write_json_list(kinetics_like(num_classes=20, seed=2), src)
  out = tmp_path / "clients"
  assert mod.main(["--annotations", str(src), "--scheme", "fedvssl-noniid", "--num_clients", "4", "--out",
                   str(out)]) == 0
  files = sorted(p.name for p in out.glob("client_dist*.json"))
  assert files == [f"client_dist{k}.json" for k in (1, 2, 3, 4)]
  c1 = ann.read_json_list(out / "client_dist1.json")
  c3 = ann.read_json_list(out / "client_dist3.json")
  assert len({r.label for r in c1}) == 8 and {r.label for r in c1} == {r.label for r in c3}
  summary = json.loads((out / "partition_summary.json").read_text())
  assert summary["classes_per_client"] == [8, 8, 8, 8] and summary["scheme"] == "fedvssl-noniid"
  assert mod.main(["--annotations", str(src), "--scheme", "dirichlet", "--alpha", "0.3", "--num_clients", "3",
                   "--out", str(tmp_path / "d"), "--seed", "1"]) == 0
  assert len(list((tmp_path / "d").glob("client_dist*.json"))) == 3
  assert mod.main(["--annotations", str(src), "--scheme", "by-class", "--num_clients", "50", "--out",
                   str(tmp_path / "e")]) == 2  # too few classes: clear error, exit code 2
