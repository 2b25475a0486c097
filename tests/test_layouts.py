"""The non-demo recipes on miniature copies of the datasets' real on-disk layouts (tests/layouts.py), shrunk only by
`--config.*` overrides (batch, steps, width, clip length, workers), never through `:demo`."""

import json
import os

import ml_collections
import numpy as np
import pytest

import layouts
from conftest import run_main

# Shrinks a recipe (never its data layout or its protocol): a tiny backbone, in-process data loading.
TINY = ["--config.data.num_workers=0", "--config.model.backbone_kwargs.width_multiplier=0.0625"]
CTP_TINY = [*TINY, "--config.batch_size=2", "--config.task.clip_len=4", "--config.task.crop_size=32",
            "--config.task.short_side_sizes=(32,40)", "--config.task.patch_mask.scales=(6,8,12)"]
FED_TINY = ["--config.federated.num_clients=2", "--config.federated.fraction_train=1.0",
            "--config.federated.num_rounds=2", "--config.federated.max_steps_per_round=2",
            "--config.federated.client_resources.num_gpus=0", "--config.federated.client_resources.num_cpus=1",
            "--config.federated.round_timeout_s=600"]


@pytest.fixture(scope="session")
def kinetics_ctp(tmp_path_factory):
  return str(layouts.make_kinetics_ctp(str(tmp_path_factory.mktemp("kinetics400_ctp"))))


def _fed_config(root: str, partitions_dir: str = "") -> ml_collections.ConfigDict:
  from configs import fedvssl

  config = fedvssl.get_config()
  config.data.root = root
  config.federated.num_clients = 2
  config.federated.partitions.dir = partitions_dir
  return config


def test_client_records_are_the_data_sources_records(kinetics_ctp):
  """A client of FedVSSL's client_dist{k}.json files gets the records the centralised run makes for the same names
  (the CtP layout's `{name}/RGB_frames.zip`), not the bare names (which are directories)."""
  from fedvssl_jax import datasets
  from fedvssl_jax.train import local

  config = _fed_config(kinetics_ctp, os.path.join(kinetics_ctp, "annotations", "fedvssl_clients"))
  splits = datasets.load_splits(config.data)
  central = {r.name: r for r in splits.train}
  got = [local.client_records(config, splits, p) for p in (0, 1)]
  assert sum(len(g) for g in got) == len(splits.train)
  for client in got:
    for r in client:
      assert r == central[r.name]
      assert r.path.endswith("/RGB_frames.zip") and os.path.isfile(r.path)


def test_fedvssl_recipe_on_kinetics_ctp_with_fedvssl_partition_files(kinetics_ctp, tmp_path):
  """configs/fedvssl.py (the paper's recipe, not the demo) on K400 in CtP's format with FedVSSL's client files."""
  pytest.importorskip("ray")
  workdir = tmp_path / "fed"
  run_main("--config=configs/fedvssl.py", f"--workdir={workdir}", f"--config.data.root={kinetics_ctp}",
           f"--config.federated.partitions.dir={os.path.join(kinetics_ctp, 'annotations', 'fedvssl_clients')}",
           *CTP_TINY, *FED_TINY)
  rounds = [json.loads(line) for line in (workdir / "federated_metrics.jsonl").read_text().splitlines()]
  assert [r["round"] for r in rounds] == [1, 2]
  for r in rounds:
    assert r["num_aggregated"] == 2 and r["num_failed"] == 0
    assert sorted(c["num_examples"] for c in r["clients"]) == [6, 6]  # client_dist1/2: 2 classes x 3 videos
    assert np.isfinite(r["global_loss"])
  assert os.path.isfile(workdir / "export" / "backbone" / "model.json")


def test_paper_recipe_without_partition_files_writes_fedvssl_noniid_split(kinetics_ctp, tmp_path, capsys):
  """configs/fedvssl.py without partitions.dir: FedVSSL's non-IID split of the train list (k400_non_iid.py's scheme),
  written as client_dist{k}.json into the workdir and read back by the clients; iid uses FedVSSL's seed 7."""
  from fedvssl_jax import datasets
  from fedvssl_jax.train import federated, local
  from input_pipeline import annotations, partition

  config = _fed_config(kinetics_ctp)
  assert (config.federated.partitions.scheme, config.federated.partitions.seed) == ("fedvssl-noniid", 7)
  splits = datasets.load_splits(config.data)
  entries = annotations.file_entries(splits.train)
  for scheme, expected in (("fedvssl-noniid", partition.fedvssl_noniid_partition(entries, 2, classes_per_side=1)),
                           ("iid", partition.iid_partition(entries, 2, seed=7))):
    config.federated.partitions.scheme = scheme
    workdir = tmp_path / scheme
    used = federated._with_partition_files(config, splits, str(workdir))
    assert used.federated.partitions.dir == str(workdir / "partitions") and not config.federated.partitions.dir
    assert f"partitions.scheme={scheme}" in capsys.readouterr().out
    for k in (1, 2):
      written = json.loads((workdir / "partitions" / f"client_dist{k}.json").read_text())
      assert written == expected[k - 1]
      assert [r.name for r in local.client_records(used, splits, k - 1)] == [e["name"] for e in expected[k - 1]]
    assert json.loads((workdir / "partitions" / "partition_summary.json").read_text())["scheme"] == scheme
  noniid = json.loads((tmp_path / "fedvssl-noniid" / "partitions" / "partition_summary.json").read_text())
  assert noniid["classes_per_client"] == [2, 2]  # 1 small + 1 large class per client out of 4
