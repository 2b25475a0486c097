"""`task.min_frames` (issue 15): a video shorter than one clip is replaced (and counted), not clamped and trained on."""

import numpy as np
import pytest

from fedvssl_jax.config_utils import load_recipe
from fedvssl_jax.pretext import PRETEXT_TASKS
from input_pipeline import pipeline
from input_pipeline import video as video_lib


@pytest.fixture(scope="module")
def short_and_long(tmp_path_factory):
  out = tmp_path_factory.mktemp("min_frames")
  rng = np.random.default_rng(0)
  paths = {}
  for name, n in (("short", 2), ("long", 40)):
    paths[name] = str(out / f"{name}.mp4")
    video_lib.write_video(paths[name], rng.integers(0, 255, (n, 64, 80, 3), dtype=np.uint8))
  return paths


@pytest.mark.parametrize("task", ["ctp", "vcop", "speed"])
def test_too_short_video_is_replaced(task, short_and_long):
  config = load_recipe(task).get_config("demo")
  assert config.task.min_frames == config.task.clip_len
  builder = PRETEXT_TASKS.get(task).make_builder(config.task)
  assert builder.min_frames == config.task.clip_len
  short = {"path": short_and_long["short"], "label": 0, "index": 0}
  long = {"path": short_and_long["long"], "label": 0, "index": 1}
  out = pipeline.BuildClip(builder, [long]).random_map(short, np.random.default_rng(0))
  assert int(out["num_replaced"]) == 1
  # min_frames=1 accepts the 2-frame video (its frames clamped), as before.
  config.task.min_frames = 1
  builder = PRETEXT_TASKS.get(task).make_builder(config.task)
  out = pipeline.BuildClip(builder, [long]).random_map(short, np.random.default_rng(0))
  assert int(out["num_replaced"]) == 0
