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
def layout_roots(tmp_path_factory):
  """Every miniature layout (tests/layouts.py), made once per test run."""
  return layouts.make_all(str(tmp_path_factory.mktemp("layouts")))


@pytest.fixture(scope="session")
def kinetics_ctp(layout_roots):
  return layout_roots["kinetics400_ctp"]


@pytest.fixture(scope="session")
def kinetics_with_flow(layout_roots):
  """The official Kinetics copy with GOCA's flow videos made first by scripts/extract_flow.py (videos_flow/)."""
  import subprocess
  import sys

  from conftest import REPO

  root = layout_roots["kinetics400"]
  subprocess.run([sys.executable, "scripts/extract_flow.py", "--videos", os.path.join(root, "videos"), "--out",
                  os.path.join(root, "videos_flow"), "--short_side", "32", "--fast", "--workers", "1"],
                 cwd=REPO, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=REPO))
  return root


def _run(recipe: str, workdir, overrides: dict) -> dict:
  """Runs `configs/<recipe>` (file[:variant], never :demo) in-process with `overrides` ({"a.b": value}, what
  `--config.a.b=value` sets); returns its results.json."""
  import importlib

  from fedvssl_jax import runners

  name, _, arg = recipe.partition(":")
  assert "demo" not in arg
  config = importlib.import_module(f"configs.{name}").get_config(arg or None)
  # one device: the conftest's 8 emulated CPU devices would need batches of 8
  config.update_from_flattened_dict({"mesh": [("data", 1)], **overrides})
  runners.run(config, str(workdir))
  return json.loads((workdir / "results.json").read_text())


def _losses(workdir) -> np.ndarray:
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return np.asarray([m["loss"] for m in lines if "loss" in m])


# Shrinks of the recipes' clips (as the --config flags would): 4 frames, 32 px, 1 test view.
PRETEXT = {"data.num_workers": 0, "model.backbone_kwargs.width_multiplier": 0.0625, "batch_size": 2, "num_steps": 2,
           "log_every": 1, "task.clip_len": 4, "task.crop_size": 32}
SUPERVISED = {"data.num_workers": 0, "model.backbone_kwargs.width_multiplier": 0.0625, "batch_size": 2,
              "num_steps": 2, "log_every": 1, "train.clip_len": 4, "train.crop_size": 32,
              "train.short_side_sizes": (32, 40), "test.clip_len": 4, "test.num_clips": 1, "test.crop_size": 32,
              "test.short_side": 32, "test.batch_size": 3}
EVAL_VIEWS = {"clip_len": 4, "num_clips": 1, "short_side": 32, "crop_size": 32, "batch_size": 3}


@pytest.fixture(scope="session")
def ctp_export(kinetics_ctp, tmp_path_factory):
  """configs/ctp.py on Kinetics-400 in CtP's format (its default layout): 2 steps; the exported backbone."""
  workdir = tmp_path_factory.mktemp("ctp_run")
  results = _run("ctp", workdir, {**PRETEXT, "data.root": kinetics_ctp, "task.short_side_sizes": (32, 40),
                                  "task.patch_mask.scales": (6, 8, 12)})
  assert results["steps"] == 2 and _losses(workdir).size == 2 and np.isfinite(_losses(workdir)).all()
  return results["export"]


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
  from fedvssl_jax.federated import task_trainer as local

  config = _fed_config(kinetics_ctp, os.path.join(kinetics_ctp, "annotations", "fedvssl_clients"))
  splits = datasets.load_splits(config.data)
  central = {r.name: r for r in splits.train}
  got = [local.client_records(config, splits, p) for p in (0, 1)]
  assert sum(len(g) for g in got) == len(splits.train)
  for client in got:
    for r in client:
      assert r == central[r.name]
      assert r.path.endswith("/RGB_frames.zip") and os.path.isfile(r.path)


@pytest.mark.parametrize("partition_files", [True, False])
def test_fedvssl_recipe_on_kinetics_ctp(partition_files, kinetics_ctp, tmp_path):
  """configs/fedvssl.py (the paper's recipe, not the demo) on K400 in CtP's format, with FedVSSL's client files, or
  without them (FedVSSL's non-IID split of train.json, written into the workdir)."""
  pytest.importorskip("ray")
  workdir = tmp_path / "fed"
  files = os.path.join(kinetics_ctp, "annotations", "fedvssl_clients")
  proc = run_main("--config=configs/fedvssl.py", f"--workdir={workdir}", f"--config.data.root={kinetics_ctp}",
                  *([f"--config.federated.partitions.dir={files}"] if partition_files else []), *CTP_TINY, *FED_TINY)
  rounds = [json.loads(line) for line in (workdir / "federated_metrics.jsonl").read_text().splitlines()]
  assert [r["round"] for r in rounds] == [1, 2]
  # client_dist1/2: 2 classes x 3 videos each; the non-IID split of 4 classes x 3 videos: halves of 1 small + 1 large
  sizes = [6, 6] if partition_files else [2, 4]
  for r in rounds:
    assert r["num_aggregated"] == 2 and r["num_failed"] == 0
    assert sorted(c["num_examples"] for c in r["clients"]) == sizes
    assert np.isfinite(r["global_loss"])
  assert os.path.isfile(workdir / "export" / "backbone" / "model.json")
  if not partition_files:
    assert "partitions.scheme=fedvssl-noniid" in proc.stdout
    assert (workdir / "partitions" / "client_dist2.json").is_file()


def test_paper_recipe_without_partition_files_writes_fedvssl_noniid_split(kinetics_ctp, tmp_path, capsys):
  """configs/fedvssl.py without partitions.dir: FedVSSL's non-IID split of the train list (k400_non_iid.py's scheme),
  written as client_dist{k}.json into the workdir and read back by the clients; iid uses FedVSSL's seed 7."""
  from fedvssl_jax import datasets
  from fedvssl_jax.federated import task_trainer as local
  from fedvssl_jax.runners import federated
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


def test_ctp_recipe_on_kinetics_ctp(ctp_export):
  assert os.path.isfile(os.path.join(ctp_export, "model.json"))


@pytest.mark.parametrize("task,layout,extra", [
    ("vcop", "kinetics400", {"task.interval": 2, "task.resize_wh": (40, 32)}),
    ("speed", "kinetics400_ctp", {"task.short_side_sizes": (32, 40)}),
])
def test_vcop_and_speed_recipes(task, layout, extra, layout_roots, tmp_path):
  fmt = "ctp" if layout.endswith("_ctp") else "official"
  results = _run(task, tmp_path / task, {**PRETEXT, **extra, "data.root": layout_roots[layout], "data.format": fmt})
  assert results["steps"] == 2 and np.isfinite(_losses(tmp_path / task)).all()
  assert os.path.isfile(os.path.join(results["export"], "model.json"))


def test_supervised_recipe_on_ucf101_official(layout_roots, tmp_path):
  """configs/supervised.py on UCF-101's own layout (AVI videos, CRLF split lists)."""
  results = _run("supervised", tmp_path / "sup", {**SUPERVISED, "data.root": layout_roots["ucf101"]})
  assert results["test"]["num_videos"] == 3 and np.isfinite(_losses(tmp_path / "sup")).all()


@pytest.mark.parametrize("recipe,layout", [("finetune_ucf101", "ucf101_ctp"), ("finetune_hmdb51", "hmdb51")])
def test_finetune_recipes_from_the_ctp_export(recipe, layout, layout_roots, ctp_export, tmp_path):
  fmt = "ctp" if layout.endswith("_ctp") else "official"
  # CtP's (w, h) scales and 171x128 test resize, shrunk with the 32 px crop
  results = _run(recipe, tmp_path / recipe, {**SUPERVISED, "data.root": layout_roots[layout], "data.format": fmt,
                                             "init.backbone_checkpoint": ctp_export,
                                             "train.scales_wh": ((43, 32), (48, 36)), "test.resize_wh": (43, 32)})
  assert results["steps"] == 2 and results["test"]["num_videos"] == 3
  assert set(results["test"]) >= {"top1", "top5", "mean_class"}


def test_knn_recipe_on_hmdb51_ctp(layout_roots, ctp_export, tmp_path):
  results = _run("knn:dataset=hmdb51", tmp_path / "knn", {
      "data.root": layout_roots["hmdb51_ctp"], "data.format": "ctp", "data.num_workers": 0,
      "init.backbone_checkpoint": ctp_export, **{f"knn.{k}": v for k, v in EVAL_VIEWS.items()}})
  assert results["num_gallery"] == 6 and results["num_queries"] == 3
  assert set(results["knn"]["backbone"]) == {"R@1", "R@5", "R@10", "R@20", "R@50"}


def test_linear_probe_recipe_on_ucf101_official(layout_roots, ctp_export, tmp_path):
  results = _run("linear_probe", tmp_path / "lin", {
      "data.root": layout_roots["ucf101"], "data.num_workers": 0, "init.backbone_checkpoint": ctp_export,
      "probe.epochs": 5, **{f"features.{k}": v for k, v in EVAL_VIEWS.items()}})
  assert results["num_train"] == 6 and 0.0 <= results["linear_probe"]["top1"] <= 100.0  # percent


GOCA_TINY = {"data.num_workers": 0, "model.backbone_kwargs.width_multiplier": 0.0625, "model.num_prototypes": 16,
             "model.embed_dim": 8, "model.hidden_dim": 16, "model.prototype_steps": 20, "views.clip_lens": (8, 4),
             "views.num_clips": (2, 2), "views.crop_size": 32, "views.short_side_range": (32, 40),
             "views.min_start_distance": 4, "batch_size": 4, "goca.queue_length": 8}


def test_goca_recipe_on_kinetics_official_with_extracted_flow(kinetics_with_flow, tmp_path):
  """configs/goca.py on the official Kinetics layout, flow made first by scripts/extract_flow.py (GOCA's videos/ ->
  videos_flow/ rule finds it)."""
  workdir = tmp_path / "goca"
  results = _run("goca", workdir, {**GOCA_TINY, "data.root": kinetics_with_flow, "num_steps": 2, "log_every": 1})
  assert results["method"] == "goca" and results["steps"] == 2 and np.isfinite(_losses(workdir)).all()
  assert set(results["export"]) == {"rgb", "flow"}


@pytest.fixture(scope="session")
def kinetics_ctp_with_flow(kinetics_ctp):
  """K400 in CtP's format with GOCA's flow made first from its frame zips by scripts/extract_flow.py (`--exts .zip`):
  `<root>/flow/<name>/RGB_frames.mp4`, found with `data.flow_template`."""
  import subprocess
  import sys

  from conftest import REPO

  subprocess.run([sys.executable, "scripts/extract_flow.py", "--videos", kinetics_ctp, "--out",
                  os.path.join(kinetics_ctp, "flow"), "--exts", ".zip", "--short-side", "32", "--fast", "--workers",
                  "1"], cwd=REPO, check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=REPO))
  return kinetics_ctp


@pytest.mark.parametrize("partition_files", [True, False])
def test_fedvssl_goca_recipe_on_kinetics_ctp(partition_files, kinetics_ctp_with_flow, tmp_path):
  """configs/fedvssl.py:task=goca (not the demo) on K400 in CtP's format with its extracted flow: 1 round of 2 clients
  from FedVSSL's client files, or from FedVSSL's non-IID split of train.json written into the workdir."""
  pytest.importorskip("ray")
  root = kinetics_ctp_with_flow
  workdir = tmp_path / "fed_goca"
  files = os.path.join(root, "annotations", "fedvssl_clients")
  goca = [f"--config.{k}={v}".replace(" ", "") for k, v in GOCA_TINY.items() if k != "batch_size"]
  # 1 round of 1 step; the round includes both clients' GOCA compilation (597 s at load 12-15 on 2 cores): 30 min
  one = {"--config.federated.num_rounds": "1", "--config.federated.max_steps_per_round": "1",
         "--config.federated.round_timeout_s": "1800"}
  fed = [f"{k}={one.get(k, v)}" for k, v in (f.split("=", 1) for f in FED_TINY)]
  proc = run_main("--config=configs/fedvssl.py:task=goca", f"--workdir={workdir}", f"--config.data.root={root}",
                  "--config.data.format=ctp", "--config.data.flow_template=flow/{name}/RGB_frames.mp4",
                  "--config.batch_size=2", *goca,
                  *([f"--config.federated.partitions.dir={files}"] if partition_files else []), *fed)
  rounds = [json.loads(line) for line in (workdir / "federated_metrics.jsonl").read_text().splitlines()]
  assert [r["round"] for r in rounds] == [1]
  r = rounds[0]
  assert r["num_aggregated"] == 2 and r["num_failed"] == 0 and np.isfinite(r["global_loss"])
  assert sorted(c["num_examples"] for c in r["clients"]) == ([6, 6] if partition_files else [2, 4])
  for stream in ("backbone", "flow_backbone"):
    assert os.path.isfile(workdir / "export" / stream / "model.json")
  if not partition_files:
    assert "partitions.scheme=fedvssl-noniid" in proc.stdout
    assert (workdir / "partitions" / "client_dist2.json").is_file()
