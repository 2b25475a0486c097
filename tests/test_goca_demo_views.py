"""The GOCA demo's views keep the class of a synthetic video (issue 21): a horizontal flip mirrors the motion, and on
the synthetic videos a mirrored motion is another class, so the demo's swapped prediction must not see flipped views.
"""

import importlib.util
import pathlib

import numpy as np

from input_pipeline import synthetic

ROOT = pathlib.Path(__file__).resolve().parent.parent


def goca_config(arg):
  spec = importlib.util.spec_from_file_location("goca_recipe", ROOT / "configs" / "goca.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


def mean_dx(frames):
  """Mean horizontal Farneback flow of the moving pixels, pixels per frame (> 0: to the right)."""
  import cv2
  gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
  flows = [cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0) for a, b in zip(gray[:-1], gray[1:])]
  return float(np.mean([f[np.linalg.norm(f, axis=-1) > 0.3][:, 0].mean() for f in flows]))


def test_flip_turns_a_demo_class_into_another():
  """A flipped move_left video moves right (the demo has both classes), so a flip changes the class."""
  demo_classes = synthetic.CLASS_NAMES[:synthetic.DEMO_PRESET["num_classes"]]
  assert {"move_left_slow", "move_right_slow", "rotate_cw", "rotate_ccw"} <= set(demo_classes)
  left = synthetic.render_video("move_left_slow", 12, 64, 64, np.random.default_rng(0))
  assert mean_dx(left) < -0.2 and mean_dx(left[:, :, ::-1]) > 0.2


def test_goca_demo_views_are_not_flipped():
  for arg in ("demo", "demo,modality=rgb", "demo,modality=flow", "demo,merge=avg", "demo,federated"):
    assert goca_config(arg).views.flip_p == 0.0, arg
  assert goca_config(None).views.flip_p == 0.5  # the recipe (real videos) keeps GOCA's flip
