"""Flat run-config keys (`num-server-rounds=2 ...`), the server's waiting / per-round progress lines."""

import os
import tomllib

import pytest

from fedvssl_jax.federated import toy
from fedvssl_jax.federated.local_trainer import FLAT_RUN_CONFIG_KEYS, config_from_run_config
from fedvssl_jax.federated.server_app import send_and_receive
from fedvssl_jax.federated.strategy import FedVSSLStrategy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flat_keys_override_the_config_and_empty_keeps_it():
  base = config_from_run_config({"config-file": toy.__file__, "config-arg": "num_rounds=3,alpha=0.9"})
  flat = config_from_run_config({
      "config-file": toy.__file__, "config-arg": "num_rounds=3,alpha=0.9",
      "overrides": '{"federated.num_rounds": 5, "federated.round_timeout_s": 9.0}',
      "num-server-rounds": 2, "local-epochs": 3, "fraction-train": 1, "min-train-nodes": 1, "alpha": 0,
      "beta": 0, "strategy": "fedavg"})
  f = flat.federated
  assert (f.num_rounds, f.local_epochs, f.min_train_nodes, f.beta, f.strategy) == (2, 3, 1, 0, "fedavg")
  assert isinstance(f.fraction_train, float) and isinstance(f.alpha, float) and f.alpha == 0.0
  assert f.round_timeout_s == 9.0  # the JSON overrides still apply to the other keys
  empty = config_from_run_config({"config-file": toy.__file__, "config-arg": "num_rounds=3,alpha=0.9",
                                  **{k: "" for k in FLAT_RUN_CONFIG_KEYS}})
  assert empty.federated.to_dict() == base.federated.to_dict()


def test_flat_keys_are_checked_and_task_picks_the_variant():
  with pytest.raises(ValueError, match="num-server-rounds"):
    config_from_run_config({"config-file": toy.__file__, "config-arg": "", "num-server-rounds": "ten"})
  with pytest.raises(ValueError, match="local-epochs"):
    config_from_run_config({"config-file": toy.__file__, "config-arg": "", "local-epochs": 1.5})
  vcop = config_from_run_config({"config-arg": "demo", "task": "vcop"})  # configs/fedvssl.py
  assert vcop.task.name == "vcop"


def test_pyproject_declares_every_flat_key_empty():
  with open(f"{REPO}/pyproject.toml", "rb") as f:
    app_config = tomllib.load(f)["tool"]["flwr"]["app"]["config"]
  for k in list(FLAT_RUN_CONFIG_KEYS) + ["task"]:
    assert app_config[k] == "", k


class _Grid:
  """Nodes connect one by one; replies come back one per pull."""

  def __init__(self, nodes_over_time):
    self.nodes_over_time = list(nodes_over_time)
    self.pending = []

  def get_node_ids(self):
    return self.nodes_over_time.pop(0) if len(self.nodes_over_time) > 1 else self.nodes_over_time[0]

  def push_messages(self, messages):
    self.pending = [f"m{i}" for i, _ in enumerate(messages)]
    return list(self.pending)

  def pull_messages(self, ids):
    class _Reply:  # only what send_and_receive reads
      class metadata:  # pylint: disable=invalid-name
        reply_to_message_id = None

    if not self.pending:
      return []
    r = _Reply()
    r.metadata = type("M", (), {"reply_to_message_id": self.pending.pop(0)})()
    return [r]


def test_server_prints_waiting_and_round_progress(capsys):
  strat = FedVSSLStrategy(min_train_nodes=1, min_available_nodes=3, wait_timeout_s=30.0, log_every_s=0.0)
  assert strat._wait_for_nodes(_Grid([[1], [1, 2], [1, 2, 3]])) == [1, 2, 3]  # pylint: disable=protected-access
  out = capsys.readouterr().out
  assert "waiting for 3 nodes (1 connected)" in out and "waiting for 3 nodes (2 connected)" in out
  assert "3 nodes connected after" in out
  with pytest.raises(TimeoutError, match="only 1 nodes connected"):
    strat = FedVSSLStrategy(min_available_nodes=3, wait_timeout_s=0.6)
    strat._wait_for_nodes(_Grid([[1]]))  # pylint: disable=protected-access
  replies = send_and_receive(_Grid([[1, 2]]), ["a", "b"], timeout=30.0, server_round=2, num_rounds=5,
                             poll_s=0.01)
  assert len(replies) == 2
  out = capsys.readouterr().out
  assert "round 2/5: 1/2 clients replied" in out and "round 2/5: 2/2 clients replied" in out


def test_lab_script_comes_from_the_doc_and_overhead_from_metrics(tmp_path):
  import json

  from fedvssl_jax.federated import lab

  blocks = lab.doc_blocks()
  warm = lab.lab_script(3, 'config-arg=\\"x\\"')
  assert blocks["setup"] in warm and blocks["start"] in warm
  assert 'flwr run . lab --stream --run-config "config-arg=\\"x\\" num-server-rounds=3 ' in warm
  cold = lab.lab_script(3, warm=False)
  assert lab.WORKER_MODULE not in cold and "--isolation process" not in cold and "flower-supernode" in cold
  metrics = tmp_path / "federated_metrics.jsonl"
  rows = [{"round": 1, "round_time_s": 20.0, "clients": [{"train_time_s": 10.0}, {"train_time_s": 15.0}]},
          {"round": 2, "round_time_s": 10.0, "clients": [{"train_time_s": 9.0}, {"train_time_s": 8.0}]},
          {"round": 3, "round_time_s": 10.0, "clients": [{"train_time_s": 9.5}]}]
  metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
  got = lab.round_overhead(str(metrics))
  assert got["kept_rounds"] == [2, 3] and got["rounds"][0]["overhead_s"] == 5.0
  assert abs(got["median_overhead_s"] - 0.75) < 1e-9 and abs(got["total_overhead_frac"] - 1.5 / 20) < 1e-9
