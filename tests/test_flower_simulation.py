"""Flower simulation (Ray) of the toy task: 2 rounds x 3 clients, and kill-after-round-1 + resume == uninterrupted."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("ray")

from fedvssl_jax.federated import client_state, server_state, simulation, toy  # noqa: E402


def _config(num_rounds):
  config = toy.get_config(f"num_rounds={num_rounds},num_clients=3,strategy=fedvssl,alpha=0.9,beta=1")
  config.federated.client_resources.num_cpus = 1
  return config


def _rounds(workdir):
  with open(os.path.join(workdir, "federated_metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_simulation_resume_reproduces_uninterrupted_run(tmp_path):
  full, part = str(tmp_path / "full"), str(tmp_path / "part")

  summary = simulation.run_simulation(_config(2), full)
  assert summary["rounds"] == 2 and summary["resumed_from"] == 0
  rounds = _rounds(full)
  assert [r["round"] for r in rounds] == [1, 2]
  for r in rounds:
    assert r["num_aggregated"] == 3 and r["num_failed"] == 0
    assert sorted(c["partition_id"] for c in r["clients"]) == [0, 1, 2]
    assert [c["num_examples"] for c in sorted(r["clients"], key=lambda c: c["partition_id"])] == [24, 32, 40]
    assert np.isfinite(r["global_loss"])
  assert rounds[1]["global_loss"] < rounds[0]["global_loss"]
  assert os.path.isdir(os.path.join(full, "tensorboard"))
  final_full = server_state.load_final_global(summary["final_global"])
  init = toy.ToyTrainer(_config(2)).initial_arrays()
  assert sorted(final_full) == sorted(init)
  assert not np.allclose(final_full["backbone/dense/kernel"], init["backbone/dense/kernel"])

  # "Killed" after round 1: a 1-round run, plus a stale client state of round 2 as a kill mid-round 2 leaves it.
  simulation.run_simulation(_config(1), part)
  assert server_state.load_server_state(part).round == 1
  stale = {k: np.full_like(v, 123.0) for k, v in init.items()}
  client_state.save_client_state(part, 0, 2, stale)
  summary = simulation.run_simulation(_config(2), part)
  assert summary["resumed_from"] == 1 and summary["rounds"] == 2
  assert [r["round"] for r in _rounds(part)] == [1, 2]

  final_part = server_state.load_final_global(summary["final_global"])
  for k in final_full:
    np.testing.assert_array_equal(final_part[k], final_full[k], err_msg=k)
  for pid in range(3):  # every client's stored local model (its head) is the same too
    a, meta_a = client_state.load_client_state(full, pid)
    b, meta_b = client_state.load_client_state(part, pid)
    assert meta_a["round"] == meta_b["round"] == 2
    for k in a:
      np.testing.assert_array_equal(a[k], b[k], err_msg=f"client {pid} {k}")
  # Heads stay local: the clients' heads differ from each other and from the global head.
  heads = [client_state.load_client_state(full, pid)[0]["head/dense/kernel"] for pid in range(3)]
  assert not np.allclose(heads[0], heads[1]) and not np.allclose(heads[0], final_full["head/dense/kernel"])
