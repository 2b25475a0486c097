"""Federated machinery without a Flower run: arrays, client / server state, client round, strategy faults."""

import os

import numpy as np
import pytest

from fedvssl_jax.federated import arrays as fa
from fedvssl_jax.federated import client_state, server_state, toy
from fedvssl_jax.federated.client_app import client_round
from fedvssl_jax.federated.local_trainer import (LocalResult, apply_override, config_from_run_config,
                                                 make_local_trainer)
from fedvssl_jax.federated.strategy import ClientReply, FedVSSLStrategy


def _model(value, d=3, h=4, c=2):
  return {
      "backbone/norm/mean": np.full(d, value, np.float32),
      "backbone/dense/kernel": np.full((d, h), value, np.float32),
      "head/dense/kernel": np.full((h, c), value + 100, np.float32),
      "head/dense/bias": np.full(c, value + 200, np.float32),
  }


class RecordingTrainer:
  """Records the arrays each train call starts from; adds `delta` to every array."""

  def __init__(self, initial, delta=1.0, loss=0.5):
    self.initial, self.delta, self.loss = initial, delta, loss
    self.starts = []

  def initial_arrays(self):
    return {k: v.copy() for k, v in self.initial.items()}

  def num_examples(self, partition_id):
    return 10 + partition_id

  def train(self, partition_id, arrays, *, server_round, local_epochs, workdir):
    assert os.path.isdir(workdir)
    self.starts.append({k: np.array(v, copy=True) for k, v in arrays.items()})
    out = {k: (v + self.delta).astype(np.float32) for k, v in arrays.items()}
    return LocalResult(arrays=out, num_examples=self.num_examples(partition_id), mean_loss=self.loss,
                       metrics={"steps": 3.0})


def test_pytree_flat_round_trip_and_arrayrecord():
  tree = {"backbone": {"layer1": {0: {"conv": {"kernel": np.ones((2, 2), np.float64)}}}, "bn": {"mean": [1, 2]}},
          "head": {"b": np.zeros(3, np.int32)}}
  flat = fa.pytree_to_flat(tree)
  assert list(flat) == ["backbone/layer1/0/conv/kernel", "backbone/bn/mean", "head/b"]
  assert all(v.dtype == np.float32 for v in flat.values())
  back = fa.flat_to_pytree(flat, like=tree)
  assert 0 in back["backbone"]["layer1"]  # int key restored from `like`
  np.testing.assert_array_equal(back["backbone"]["bn"]["mean"], [1.0, 2.0])
  plain = fa.flat_to_pytree(flat)
  assert "0" in plain["backbone"]["layer1"]
  with pytest.raises(ValueError, match="backbone/bn/mean"):
    fa.flat_to_pytree({**flat, "backbone/bn/mean": np.zeros(3)}, like=tree)
  with pytest.raises(ValueError, match="head/b"):
    fa.flat_to_pytree({k: v for k, v in flat.items() if k != "head/b"}, like=tree)
  rec = fa.flat_to_arrayrecord(flat, packed=False)
  assert list(rec.keys()) == list(flat)
  again = fa.arrayrecord_to_flat(rec)
  for k in flat:
    np.testing.assert_array_equal(again[k], flat[k])
    assert again[k].dtype == np.float32


def test_packed_arrayrecord_round_trip_is_exact():
  rng = np.random.default_rng(0)
  flat = {"backbone/layer1/0/conv/kernel": rng.standard_normal((3, 3, 3, 2, 4)).astype(np.float32),
          "backbone/bn/mean": np.array([1.0, np.nextafter(np.float32(1), np.float32(2)), -0.0, 3e-39], np.float32),
          "backbone/scalar": np.float32(7.5), "head/empty": np.zeros((0, 3), np.float32),
          "head/b": np.arange(6, dtype=np.float64).reshape(2, 3)}  # float64 in: float32 out, as unpacked
  rec = fa.flat_to_arrayrecord(flat)
  assert sorted(rec.keys()) == sorted([fa.PACKED_INDEX, fa.PACKED_DATA])  # 2 arrays on the wire, not one per path
  again = fa.arrayrecord_to_flat(rec)
  assert list(again) == list(flat)  # keys by pytree path, in order
  for k, v in flat.items():
    assert again[k].dtype == np.float32 and again[k].shape == np.shape(v), k
    np.testing.assert_array_equal(again[k].view(np.uint32), np.asarray(v, np.float32).view(np.uint32))  # bit-exact
  again["head/b"][0, 0] = 99.0  # writable, and owns its buffer (the record is left alone)
  assert fa.arrayrecord_to_flat(rec)["head/b"][0, 0] == 0.0
  # Both formats read back the same; a broken index names the key.
  per_key = fa.arrayrecord_to_flat(fa.flat_to_arrayrecord(flat, packed=False))
  assert list(per_key) == list(flat)
  index, data = fa.pack_flat(flat)
  with pytest.raises(ValueError, match="covers"):
    fa.unpack_flat(index, data[:-1])
  with pytest.raises(ValueError, match=fa.PACKED_INDEX):
    fa.unpack_flat(np.frombuffer(b"{not json", np.uint8), data)


def test_split_and_merge_backbone():
  local, glob = _model(1.0), _model(2.0)
  bb, rest = fa.split_backbone(local)
  assert set(bb) == {"backbone/norm/mean", "backbone/dense/kernel"} and set(rest) == {"head/dense/kernel",
                                                                                        "head/dense/bias"}
  merged = fa.merge_backbone(local, glob)
  for k in bb:
    np.testing.assert_array_equal(merged[k], glob[k])
  for k in rest:
    assert merged[k] is local[k]
  bad = dict(glob, **{"backbone/new": np.zeros(1, np.float32)})
  with pytest.raises(ValueError, match="backbone/new"):
    fa.merge_backbone(local, bad)
  bad = dict(glob, **{"backbone/norm/mean": np.zeros(5, np.float32)})
  with pytest.raises(ValueError, match="backbone/norm/mean"):
    fa.merge_backbone(local, bad)


def test_backbone_only_update_keeps_stored_head_exactly(tmp_path):
  wd = str(tmp_path)
  stored = _model(1.0)
  stored["head/dense/kernel"] = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
  client_state.save_client_state(wd, 3, 1, stored)
  glob = _model(7.0)
  trainer = RecordingTrainer(_model(-5.0))
  result = client_round(trainer, 3, glob, mode="fedvssl", server_round=2, local_epochs=1, workdir=wd)
  start = trainer.starts[-1]
  for k in ("head/dense/kernel", "head/dense/bias"):
    np.testing.assert_array_equal(start[k], stored[k])  # the head exactly as stored, not the global one
  for k in ("backbone/norm/mean", "backbone/dense/kernel"):
    np.testing.assert_array_equal(start[k], glob[k])
  assert result.metrics["train-time-s"] >= 0
  # The new local model is stored for round 2, and round 3 starts from it.
  arrays, meta = client_state.load_client_state(wd, 3)
  assert meta["round"] == 2
  np.testing.assert_array_equal(arrays["head/dense/kernel"], stored["head/dense/kernel"] + 1.0)
  # First participation: head from the trainer's initial model; fedavg: the whole global model.
  client_round(trainer, 4, glob, mode="fedvssl", server_round=2, local_epochs=1, workdir=wd)
  np.testing.assert_array_equal(trainer.starts[-1]["head/dense/bias"], _model(-5.0)["head/dense/bias"])
  client_round(trainer, 5, glob, mode="fedavg", server_round=2, local_epochs=1, workdir=wd)
  np.testing.assert_array_equal(trainer.starts[-1]["head/dense/bias"], glob["head/dense/bias"])
  assert client_state.load_client_state(wd, 5) is None  # fedavg stores nothing


def test_client_state_round_trip_stale_and_corrupt(tmp_path):
  wd = str(tmp_path)
  assert client_state.load_client_state(wd, 0) is None
  m1, m2, m3 = _model(1.0), _model(2.0), _model(3.0)
  client_state.save_client_state(wd, 0, 1, m1, meta={"loss": 0.3})
  client_state.save_client_state(wd, 0, 4, m2)
  arrays, meta = client_state.load_client_state(wd, 0)
  assert meta["round"] == 4 and list(arrays) == list(m2)
  for k in m2:
    np.testing.assert_array_equal(arrays[k], m2[k])
    assert arrays[k].dtype == np.float32
  arrays, meta = client_state.load_client_state(wd, 0, before_round=4)  # a resumed round 4 ignores its stale state
  assert meta["round"] == 1 and meta["loss"] == 0.3
  np.testing.assert_array_equal(arrays["head/dense/bias"], m1["head/dense/bias"])
  client_state.save_client_state(wd, 0, 4, m3)  # replaces the stale round-4 state
  assert client_state.stored_rounds(wd, 0) == [1, 4]
  np.testing.assert_array_equal(client_state.load_client_state(wd, 0)[0]["head/dense/bias"], m3["head/dense/bias"])
  client_state.save_client_state(wd, 0, 2, m1)  # an older round being (re)run removes later ones
  assert client_state.stored_rounds(wd, 0) == [1, 2]
  # Corrupt the newest state: an error naming its path, never a silent fresh head.
  step_dir = os.path.join(client_state.client_dir(wd, 0), "state", "2")
  for root, _, files in os.walk(os.path.join(step_dir, "arrays")):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  with pytest.raises(client_state.ClientStateError, match=step_dir):
    client_state.load_client_state(wd, 0)


def test_server_state_resume(tmp_path):
  wd = str(tmp_path)
  assert server_state.load_server_state(wd) is None
  g1, g2 = _model(1.0), _model(2.0)
  meta = {"strategy": {"mode": "fedvssl", "alpha": 0.9, "beta": 1}, "num_rounds": 5}
  server_state.save_server_state(wd, server_state.ServerState(1, g1, None, meta))
  server_state.save_server_state(wd, server_state.ServerState(2, g2, g1, meta))
  st = server_state.load_server_state(wd)
  assert st.round == 2 and st.meta["strategy"]["alpha"] == 0.9 and st.meta["num_rounds"] == 5
  for k in g2:
    np.testing.assert_array_equal(st.global_arrays[k], g2[k])
    np.testing.assert_array_equal(st.previous[k], g1[k])
  # The strategy resumed from it averages with the stored global (beta = 1).
  strat = FedVSSLStrategy(mode="fedvssl", alpha=0.0, beta=1, min_train_nodes=1, min_available_nodes=1)
  strat.set_global(st.global_arrays, has_history=True)
  reply = ClientReply(node_id=1, partition_id=0, arrays=_model(4.0), num_examples=5, loss=1.0)
  new, _ = strat.aggregate_replies(3, [reply])
  np.testing.assert_allclose(new["backbone/dense/kernel"], 0.5 * 4.0 + 0.5 * 2.0)
  path = server_state.save_final_global(wd, g2)
  back = server_state.load_final_global(path)
  np.testing.assert_array_equal(back["head/dense/bias"], g2["head/dense/bias"])
  # A damaged newest step is an error naming it.
  step_dir = os.path.join(server_state.server_dir(wd), "2")
  for root, _, files in os.walk(os.path.join(step_dir, "global_model")):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  with pytest.raises(server_state.ServerStateError, match=step_dir):
    server_state.load_server_state(wd)


def _replies(values, losses, ns):
  return [ClientReply(node_id=100 + i, partition_id=i, arrays=_model(v), num_examples=n, loss=l)
          for i, (v, l, n) in enumerate(zip(values, losses, ns))]


def test_failing_and_nonfinite_clients_are_skipped():
  strat = FedVSSLStrategy(mode="fedvssl", alpha=0.0, beta=0, min_train_nodes=2, min_available_nodes=2)
  strat.set_global(_model(0.0), has_history=False)
  replies = _replies([1.0, 3.0, 50.0, 70.0], [0.5, 0.5, 0.5, float("nan")], [10, 30, 10, 10])
  replies[2].arrays["backbone/dense/kernel"][0, 0] = np.inf
  replies.append(ClientReply(node_id=200, partition_id=9, error="client error: boom"))
  new, metrics = strat.aggregate_replies(1, replies)
  np.testing.assert_allclose(new["backbone/dense/kernel"], 0.25 * 1.0 + 0.75 * 3.0)
  assert metrics["num-replies"] == 2 and metrics["num-failures"] == 1 and metrics["num-dropped"] == 2
  rep = strat.last_report
  assert [c.partition_id for c in rep.dropped] == [2, 3] and [c.partition_id for c in rep.failed] == [9]
  assert rep.global_loss == pytest.approx(0.5)
  # Too few usable replies: no aggregate, the global is unchanged.
  new, metrics = strat.aggregate_replies(2, replies[2:])
  assert new is None and metrics["num-replies"] == 0
  np.testing.assert_allclose(strat.current_global["backbone/dense/kernel"], 2.5)


@pytest.fixture
def task_identity():
  """Flower refuses to build Messages outside a run; pretend to be inside one."""
  from flwr.supercore.task_identity import TaskIdentity

  saved = (TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id)  # pylint: disable=protected-access
  TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
  yield
  TaskIdentity._run_id, TaskIdentity._task_id, TaskIdentity._node_id = saved  # pylint: disable=protected-access


def test_aggregate_train_on_real_messages_with_error_and_dead_node(task_identity):
  del task_identity
  from flwr.app import ConfigRecord, Error, Message, MetricRecord, RecordDict

  strat = FedVSSLStrategy(mode="fedavg", min_train_nodes=2, min_available_nodes=2)
  strat.set_global(_model(0.0), has_history=False)
  strat.sent[1] = [11, 12, 13, 14]
  strat.partitions = {11: 0, 12: 1, 13: 2, 14: 3}
  sent = {n: Message(content=RecordDict({"config": ConfigRecord({"server-round": 1})}), dst_node_id=n,
                     message_type="train") for n in strat.sent[1]}
  replies = []
  for node, value in ((11, 1.0), (12, 3.0)):
    content = RecordDict({"arrays": fa.flat_to_arrayrecord(_model(value)),
                          "metrics": MetricRecord({"num-examples": 10, "loss": 0.2, "partition-id": node - 11})})
    replies.append(Message(content=content, reply_to=sent[node]))
  replies.append(Message(Error(code=0, reason="RuntimeError: injected"), reply_to=sent[13]))  # 14: no reply
  record, metrics = strat.aggregate_train(1, replies)
  assert record is not None
  np.testing.assert_allclose(fa.arrayrecord_to_flat(record)["head/dense/bias"], 202.0)
  assert metrics["num-failures"] == 2 and metrics["client-partition"] == [0, 1]
  errors = sorted(c.error for c in strat.last_report.failed)
  assert "injected" in errors[0] and "no reply" in errors[1]


def test_sampling_is_reproducible_by_partition():
  strat = FedVSSLStrategy(mode="fedvssl", fraction_train=0.05, min_train_nodes=5, min_available_nodes=5)
  a = strat.sample_partitions(7, list(range(100)))
  b = strat.sample_partitions(7, list(reversed(range(100))))
  assert a == b and len(a) == 5 and len(set(a)) == 5
  assert strat.sample_partitions(8, list(range(100))) != a


def test_config_from_run_config_and_toy_trainer(tmp_path):
  toy_file = toy.__file__
  cfg = config_from_run_config({"config-file": toy_file, "config-arg": "num_rounds=4,strategy=fedavg",
                                "overrides": '{"federated.alpha": 0, "toy.fail_partitions": [2, 5]}',
                                "override.federated.local_epochs": 2})
  assert cfg.federated.num_rounds == 4 and cfg.federated.strategy == "fedavg" and cfg.federated.local_epochs == 2
  assert cfg.federated.alpha == 0.0 and isinstance(cfg.federated.alpha, float)
  assert cfg.toy.fail_partitions == (2, 5)
  with pytest.raises(KeyError, match="federated.nope"):
    apply_override(cfg, "federated.nope", 1)
  with pytest.raises(FileNotFoundError, match="missing.py"):
    config_from_run_config({"config-file": str(tmp_path / "missing.py")})
  trainer = make_local_trainer(cfg)
  init = trainer.initial_arrays()
  r1 = trainer.train(1, init, server_round=1, local_epochs=1, workdir=str(tmp_path))
  r2 = trainer.train(1, init, server_round=1, local_epochs=1, workdir=str(tmp_path))
  assert r1.num_examples == trainer.num_examples(1) == 32
  for k in init:
    np.testing.assert_array_equal(r1.arrays[k], r2.arrays[k])  # deterministic
  assert not np.array_equal(r1.arrays["head/dense/kernel"], init["head/dense/kernel"])
  with pytest.raises(RuntimeError, match="injected"):
    make_local_trainer(cfg).train(2, init, server_round=1, local_epochs=1, workdir=str(tmp_path))


def test_flower_baseline_mode_keeps_its_list_across_resume():
  replies = _replies([1.0, 3.0], [0.5, 1.0], [10, 30])
  strat = FedVSSLStrategy(mode="flower_baseline", beta=1, mix_coeff=0.9, min_train_nodes=1, min_available_nodes=1)
  strat.set_global(_model(0.0), has_history=False)
  g1, _ = strat.aggregate_replies(1, replies)
  np.testing.assert_allclose(g1["backbone/dense/kernel"], 0.9 * 2.5, rtol=1e-6)  # mix_coeff * FedAvg, not FedAvg
  saved = strat.export_state()
  assert len(saved) == 2 * len(_model(0.0))
  resumed = FedVSSLStrategy(mode="flower_baseline", beta=1, mix_coeff=0.9, min_train_nodes=1, min_available_nodes=1)
  resumed.set_global(g1, has_history=True)
  resumed.import_state(saved)
  g2_resumed, _ = resumed.aggregate_replies(2, replies)
  g2, _ = strat.aggregate_replies(2, replies)
  for k in g2:
    np.testing.assert_array_equal(g2_resumed[k], g2[k])
  np.testing.assert_allclose(g2["backbone/dense/kernel"], 0.45 * 2.5 + 0.5 * 0.9 * 2.5, rtol=1e-6)


class FakeGrid:
  """Answers query messages with the node's partition id (node id 1000 + p)."""

  def __init__(self, partitions):
    self.nodes = [1000 + p for p in partitions]
    self.queries = 0

  def get_node_ids(self):
    return list(self.nodes)

  def send_and_receive(self, messages, *, timeout=None):
    from flwr.app import Message, MetricRecord, RecordDict

    out = []
    for m in messages:
      assert m.metadata.message_type == "query"
      self.queries += 1
      out.append(Message(content=RecordDict({"metrics": MetricRecord({"partition-id": m.metadata.dst_node_id - 1000})}),
                         reply_to=m))
    return out


def test_configure_train_samples_by_partition(task_identity):
  del task_identity
  from flwr.app import ConfigRecord

  strat = FedVSSLStrategy(mode="fedvssl", fraction_train=0.3, min_train_nodes=2, min_available_nodes=10)
  grid = FakeGrid(reversed(range(10)))
  msgs = list(strat.configure_train(3, fa.flat_to_arrayrecord(_model(0.0)), ConfigRecord(), grid))
  assert grid.queries == 10
  got = sorted(m.metadata.dst_node_id - 1000 for m in msgs)
  assert got == strat.sample_partitions(3, list(range(10))) and len(got) == 3
  assert msgs[0].content["config"]["server-round"] == 3 and msgs[0].content["config"]["mode"] == "fedvssl"
  list(strat.configure_train(4, fa.flat_to_arrayrecord(_model(0.0)), ConfigRecord(), grid))
  assert grid.queries == 10  # partition ids are cached
  # All nodes take part: the partition ids are still asked (once), so that a client failing in its first round is
  # reported by its partition id, not -1.
  strat2 = FedVSSLStrategy(mode="fedvssl", fraction_train=1.0, min_train_nodes=2, min_available_nodes=3)
  grid2 = FakeGrid(range(3))
  assert len(list(strat2.configure_train(1, fa.flat_to_arrayrecord(_model(0.0)), ConfigRecord(), grid2))) == 3
  assert grid2.queries == 3 and strat2.partitions == {1000: 0, 1001: 1, 1002: 2}
  list(strat2.configure_train(2, fa.flat_to_arrayrecord(_model(0.0)), ConfigRecord(), grid2))
  assert grid2.queries == 3
  record, _ = strat2.aggregate_train(1, [])  # round 1: every client died before replying
  assert record is None
  assert sorted(c.partition_id for c in strat2.last_report.failed + strat2.last_report.dropped) == [0, 1, 2]


def test_flat_keys_match_models_export_flatten_state():
  from fedvssl_jax.models import export

  tree = {"backbone": {"layer1": {0: {"bn1": {"mean": np.zeros(2), "var": np.ones(2)}}}}, "head": {"k": np.ones(1)}}
  assert list(fa.pytree_to_flat(tree)) == list(export.flatten_state(tree))
  prefixed = fa.pytree_to_flat(tree, prefix="model")
  assert list(prefixed) == ["model/" + k for k in export.flatten_state(tree)]
  assert all(v.dtype == np.float32 for v in prefixed.values())
  with pytest.raises(ValueError, match="a/b"):
    fa.pytree_to_flat({"a/b": np.zeros(1)})
  with pytest.raises(ValueError, match="head/name"):
    fa.pytree_to_flat({"head": {"name": np.array(["text"])}})
