"""The GOCA demo path end to end through the main command, scaled down: flow extraction into the dataset, prototypes,
two-stream training with the prior and the queue, export of both backbones, kNN of pretrained vs random init,
results.json and plots."""

import json
import os

from conftest import DATA_SHRINK, FEDERATED_SHRINK, KNN_SHRINK, run_main
from input_pipeline import flow as flow_lib

SHRINK = [
    *DATA_SHRINK,
    "--config.model.num_prototypes=16", "--config.model.embed_dim=8", "--config.model.hidden_dim=16",
    "--config.model.prototype_steps=20",
    "--config.views.crop_size=32", "--config.views.short_side_range=(32,40)", "--config.views.min_start_distance=4",
    "--config.flow.short_side=32", "--config.flow.workers=1",
    "--config.batch_size=4", "--config.num_steps=3", "--config.goca.queue_length=8", "--config.log_every=1",
    *KNN_SHRINK,
]


def test_goca_demo_path(synthetic_videos, tmp_path):
  workdir = tmp_path / "goca"
  run_main("--config=configs/goca.py:demo", f"--workdir={workdir}", f"--config.data.cache_dir={synthetic_videos}",
           *SHRINK)

  # Flow was made beside the RGB videos with the demo's bound, for every video of both splits.
  settings = flow_lib.read_flow_settings(str(synthetic_videos / "videos_flow"))
  assert settings["bound"] == 3.0 and settings["short_side"] == 32
  manifest = json.loads((synthetic_videos / "dataset.json").read_text())
  num_flow = sum(len(files) for _, _, files in os.walk(synthetic_videos / "videos_flow") if files)
  assert num_flow - 1 == manifest["counts"]["train"] + manifest["counts"]["test"]  # + flow_params.json

  steps = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [s["step"] for s in steps if "loss" in s] == [1, 2, 3]
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == "goca" and results["steps"] == 3
  for which in ("pretrained", "random_init"):
    assert set(results["knn"][which]) == {"R@1", "R@5", "R@10", "R@20", "R@50"}
    assert set(results["knn_per_stream"][which]) == {"rgb", "flow"}
  for stream in ("rgb", "flow"):
    assert os.path.isfile(os.path.join(results["export"][stream], "model.json"))
  assert (workdir / "training_loss.png").is_file() and (workdir / "knn_recall.png").is_file()


def test_ensure_flow_makes_missing_and_remakes_other_settings(tmp_path):
  import numpy as np
  import pytest

  from fedvssl_jax import datasets
  from fedvssl_jax.config_utils import ConfigError, load_recipe
  from input_pipeline import annotations
  from input_pipeline import video as video_lib
  from fedvssl_jax.goca import runner as goca_trainer

  rng = np.random.default_rng(0)
  records = []
  for i in range(2):
    path = tmp_path / "videos" / f"v{i}.mp4"
    video_lib.write_video(path, rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), fps=10)
    records.append(annotations.VideoRecord(str(path), i, f"v{i}", flow_lib.flow_path_for(str(path))))
  splits = datasets.DatasetSplits(records[:1], records[1:], ["a", "b"], str(tmp_path))
  config = load_recipe("goca").get_config("demo")
  config.flow.update(dict(short_side=0, workers=1))

  config.flow.extract_missing = False
  with pytest.raises(ConfigError, match="2 flow videos are missing"):
    goca_trainer.ensure_flow(config, splits)
  config.flow.extract_missing = True
  goca_trainer.ensure_flow(config, splits)
  flow_dir = str(tmp_path / "videos_flow")
  assert flow_lib.read_flow_settings(flow_dir)["bound"] == 3.0
  assert all(os.path.isfile(r.flow_path) for r in records)

  # The same settings: nothing is redone. Other settings (a cache from an older release): the folder is remade.
  stamp = os.path.getmtime(records[0].flow_path)
  goca_trainer.ensure_flow(config, splits)
  assert os.path.getmtime(records[0].flow_path) == stamp
  config.flow.bound = 20.0
  goca_trainer.ensure_flow(config, splits)
  assert flow_lib.read_flow_settings(flow_dir)["bound"] == 20.0
  assert os.path.getmtime(records[0].flow_path) > stamp


def test_goca_federated_demo_path(synthetic_videos, tmp_path):
  """`configs/goca.py:demo,federated`: Flower simulation of GOCA clients, the ServerApp's export of both backbones,
  then kNN of the final global model."""
  import pytest

  pytest.importorskip("ray")
  workdir = tmp_path / "goca_fed"
  run_main("--config=configs/goca.py:demo,federated", f"--workdir={workdir}",
           f"--config.data.cache_dir={synthetic_videos}", *SHRINK, *FEDERATED_SHRINK)
  rounds = [json.loads(line) for line in (workdir / "federated_metrics.jsonl").read_text().splitlines()]
  assert [r["round"] for r in rounds] == [1, 2] and all(r["num_aggregated"] == 3 for r in rounds)
  results = json.loads((workdir / "results.json").read_text())
  assert results["federated"]["resumed_from"] == 0
  # results.json rounds to 6 significant digits
  assert results["federated"]["final_global_loss"] == pytest.approx(rounds[-1]["global_loss"], rel=1e-5)
  assert set(results["export"]) == {"rgb", "flow"}
  for stream in ("rgb", "flow"):
    assert os.path.isfile(os.path.join(results["export"][stream], "model.json"))
  assert set(results["knn"]) == {"pretrained", "random_init"}
  assert set(results["knn_per_stream"]["pretrained"]) == {"rgb", "flow"}


def test_goca_single_stream_demo_path(synthetic_videos, tmp_path):
  """`configs/goca.py:demo,modality=rgb` (GOCA's released RGB-only SwAV) end to end, with GOCA's kNN clip placement
  of the backbone: one backbone exported, its R@k against its random init."""
  workdir = tmp_path / "goca_rgb"
  run_main("--config=configs/goca.py:demo,modality=rgb", f"--workdir={workdir}",
           f"--config.data.cache_dir={synthetic_videos}", *SHRINK, "--config.knn.clip_placement=goca")
  results = json.loads((workdir / "results.json").read_text())
  assert set(results["export"]) == {"rgb"} and results["knn_stream"] == "rgb"
  assert "knn_per_stream" not in results
  for which in ("pretrained", "random_init"):
    assert set(results["knn"][which]) == {"R@1", "R@5", "R@10", "R@20", "R@50"}
  steps = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [s["step"] for s in steps if "loss" in s] == [1, 2, 3] and all("protos_used" in s for s in steps
                                                                       if "loss" in s)
