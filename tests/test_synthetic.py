"""Synthetic motion-class videos (determinism, class defined by motion, caching) and dataset verification."""

import filecmp
import importlib.util
import json
import os
import pathlib
import shutil

import cv2
import numpy as np
import pytest

from input_pipeline import annotations as ann
from input_pipeline import synthetic
from input_pipeline import verify
from input_pipeline import video

SCRIPTS = pathlib.Path(__file__).resolve().parents[1] / "scripts"
TINY = dict(num_classes=2, videos_per_class_train=1, videos_per_class_test=1, num_frames=12, height=32, width=48,
            seed=5)


def load_script(name):
  spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_test_preset_dataset(synthetic_videos):
  root = synthetic_videos
  p = synthetic.TEST_PRESET
  manifest = json.loads((root / "dataset.json").read_text())
  assert manifest["counts"] == {"train": p["num_classes"] * p["videos_per_class_train"],
                                "test": p["num_classes"] * p["videos_per_class_test"]}
  assert manifest["classes"] == list(synthetic.CLASS_NAMES[:p["num_classes"]])
  assert ann.read_class_index(root / "annotations/classInd.txt") == manifest["classes"]
  train = ann.read_json_list(root / "annotations/train.json", root, synthetic.PATH_TEMPLATE)
  assert [(r.name, r.label) for r in train] == [
      (r.name, r.label) for r in ann.read_txt_list(root / "annotations/train.txt")]
  assert sorted({r.label for r in train}) == list(range(p["num_classes"]))
  test = ann.load_annotations(root / "annotations/test.json", root, path_template=synthetic.PATH_TEMPLATE)
  for r in train + test:
    assert r.path.endswith(".mp4") and os.path.isfile(r.path)
    assert r.name.split("/")[0] == manifest["classes"][r.label]
    assert video.video_num_frames(r.path) == p["num_frames"]
  clip = video.decode_frames(train[0].path, [0, p["num_frames"] - 1])
  assert clip.shape == (2, p["height"], p["width"], 3)
  assert synthetic.is_complete(root, **p)


def test_deterministic_for_a_seed(tmp_path):
  a = synthetic.make_dataset(tmp_path / "a", **TINY)
  b = synthetic.make_dataset(tmp_path / "b", **TINY, workers=2)
  c = synthetic.make_dataset(tmp_path / "c", **dict(TINY, seed=6))
  files = sorted(pathlib.Path(a["root"]).rglob("*.mp4"))
  assert len(files) == 4
  for f in files:
    rel = f.relative_to(a["root"])
    assert filecmp.cmp(f, pathlib.Path(b["root"]) / rel, shallow=False)  # byte-identical, any worker count
    assert not filecmp.cmp(f, pathlib.Path(c["root"]) / rel, shallow=False)  # another seed, other videos
  r1 = synthetic.render_video("rotate_cw", 8, 32, 32, np.random.default_rng(1))
  r2 = synthetic.render_video("rotate_cw", 8, 32, 32, np.random.default_rng(1))
  np.testing.assert_array_equal(r1, r2)


def mean_flow(frames):
  """Mean (dx, dy) optical flow over moving pixels, pixels per frame."""
  gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
  flows = []
  for a, b in zip(gray[:-1], gray[1:]):
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    moving = np.linalg.norm(flow, axis=-1) > 0.3
    if moving.sum() > 10:
      flows.append(flow[moving].mean(axis=0))
  return np.mean(flows, axis=0)


def test_class_is_defined_by_motion():
  """Same appearance (same rng), different class -> opposite motion; appearance alone does not give the class."""
  for seed in range(3):
    left = synthetic.render_video("move_left_slow", 16, 64, 64, np.random.default_rng(seed))
    right = synthetic.render_video("move_right_slow", 16, 64, 64, np.random.default_rng(seed))
    np.testing.assert_array_equal(left[0], right[0])  # identical first frame: only the motion differs
    assert mean_flow(left)[0] < -0.2 < 0.2 < mean_flow(right)[0]
    up = synthetic.render_video("move_up_fast", 12, 64, 64, np.random.default_rng(seed))
    down = synthetic.render_video("move_down_fast", 12, 64, 64, np.random.default_rng(seed))
    assert mean_flow(up)[1] < -0.4 < 0.4 < mean_flow(down)[1]
  # grow vs shrink: the foreground area changes in opposite directions
  rng = np.random.default_rng(0)
  t = synthetic.make_trajectory("grow", 20, 64, 64, rng)
  assert np.all(np.diff(t.scale) > 0)
  t = synthetic.make_trajectory("shrink", 20, 64, 64, rng)
  assert np.all(np.diff(t.scale) < 0)
  cw = synthetic.make_trajectory("rotate_cw", 20, 64, 64, rng)
  ccw = synthetic.make_trajectory("rotate_ccw", 20, 64, 64, rng)
  assert np.all(np.diff(cw.angle) > 0) and np.all(np.diff(ccw.angle) < 0)
  osc = synthetic.make_trajectory("oscillate_horizontal", 40, 64, 64, rng)
  assert np.sum(np.diff(np.sign(np.diff(osc.cx))) != 0) >= 2  # changes direction several times
  with pytest.raises(ValueError, match="unknown synthetic class"):
    synthetic.make_trajectory("jump", 4, 32, 32, rng)


def test_ensure_dataset_reuses_and_regenerates(tmp_path):
  out = tmp_path / "cache"
  first = synthetic.ensure_dataset(out, TINY)
  f = pathlib.Path(first["root"]) / "videos" / synthetic.CLASS_NAMES[0] / f"v_{synthetic.CLASS_NAMES[0]}_train_0000.mp4"
  mtime = f.stat().st_mtime_ns
  again = synthetic.ensure_dataset(out, TINY)
  assert again["counts"] == first["counts"] and f.stat().st_mtime_ns == mtime  # reused
  f.unlink()
  synthetic.ensure_dataset(out, TINY)  # incomplete -> regenerated
  assert f.exists()
  changed = synthetic.ensure_dataset(out, TINY, num_frames=14)  # other parameters -> regenerated
  assert changed["params"]["num_frames"] == 14 and video.video_num_frames(f) == 14
  with pytest.raises(ValueError, match="unknown synthetic preset"):
    synthetic.ensure_dataset(out, "huge")
  with pytest.raises(ValueError, match="even"):
    synthetic.make_dataset(tmp_path / "odd", **dict(TINY, height=33))


def test_make_synthetic_videos_script(tmp_path, capsys):
  mod = load_script("make_synthetic_videos")
  out = tmp_path / "s"
  assert mod.main(["--out", str(out), "--preset", "test", "--num_classes", "2", "--videos_per_class_train", "1",
                   "--videos_per_class_test", "1", "--num_frames", "8", "--height", "32", "--width", "32"]) == 0
  assert "videos: {'train': 2, 'test': 2}" in capsys.readouterr().out
  assert synthetic.load_manifest(out)["params"]["num_frames"] == 8


def test_verify_dataset_finds_bad_videos(tmp_path, capsys):
  root = tmp_path / "ds"
  info = synthetic.make_dataset(root, **dict(TINY, videos_per_class_train=3))
  train_json = pathlib.Path(info["train_annotations"])
  recs = ann.read_json_list(train_json, root, synthetic.PATH_TEMPLATE)
  assert len(recs) == 6
  # break three videos: truncate one, replace one with garbage, delete one
  data = pathlib.Path(recs[1].path).read_bytes()
  pathlib.Path(recs[1].path).write_bytes(data[:len(data) // 3])
  pathlib.Path(recs[2].path).write_bytes(b"\x00garbage" * 100)
  os.remove(recs[4].path)
  summary = verify.verify_dataset(train_json, root, out_path=tmp_path / "clean.json",
                                  path_template=synthetic.PATH_TEMPLATE, min_frames=4, workers=2)
  assert summary["total"] == 6 and summary["ok"] == 3 and summary["bad"] == 3
  bad = {b["name"]: b["reason"] for b in summary["bad_videos"]}
  assert bad == {recs[1].name: "unreadable", recs[2].name: "unreadable", recs[4].name: "missing"}
  clean = ann.read_json_list(tmp_path / "clean.json", root, synthetic.PATH_TEMPLATE)
  assert [r.name for r in clean] == [recs[i].name for i in (0, 3, 5)]
  # too short
  summary = verify.verify_dataset(tmp_path / "clean.json", root, path_template=synthetic.PATH_TEMPLATE,
                                  min_frames=100)
  assert summary["reasons"] == {"too_short": 3}
  # the script: same format (txt), exit code 0, printed summary
  mod = load_script("verify_dataset")
  txt = pathlib.Path(info["train_txt"])
  rc = mod.main(["--annotations", str(txt), "--data_root", str(root), "--path_template", synthetic.PATH_TEMPLATE,
                 "--out", str(tmp_path / "clean.txt"), "--min_frames", "4", "--exact"])
  assert rc == 0
  printed = capsys.readouterr().out
  assert "6 videos, 3 ok, 3 bad" in printed and "missing: 1" in printed
  assert len((tmp_path / "clean.txt").read_text().splitlines()) == 3
  assert mod.main(["--annotations", str(tmp_path / "nope.json"), "--data_root", str(root)]) == 2


def test_verify_detects_truncated_tail(tmp_path):
  """A moov-first mp4 cut short opens fine but its last indexed frames do not decode: reported, not kept."""
  frames = synthetic.render_video("move_left_slow", 40, 32, 32, np.random.default_rng(0))
  path = tmp_path / "videos" / "a.mp4"
  video.write_video(path, frames, gop=8, bframes=2, crf=None, faststart=True)
  good = tmp_path / "videos" / "b.mp4"
  shutil.copy(path, good)
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * 0.8)])
  ann.write_json_list([{"name": "a", "label": 1}, {"name": "b", "label": 1}], tmp_path / "l.json")
  summary = verify.verify_dataset(tmp_path / "l.json", tmp_path, path_template="videos/{name}.mp4")
  assert summary["ok"] == 1 and summary["bad_videos"][0]["name"] == "a"
  assert summary["bad_videos"][0]["reason"] in ("truncated", "unreadable")
