"""Miniature copies of the public datasets' on-disk layouts that the README / `fedvssl_jax/datasets.py` document, from
tiny generated videos (32x40 px, 24 frames; each class moves as one synthetic class does), for the end-to-end tests of
the non-demo recipes. `make_all(root)` writes every layout once (about 100 small files):

* `ucf101/`: UCF-101 official, `UCF-101/<Class>/v_<Class>_gXX_cYY.avi` (MPEG-4 Part 2 in AVI, as published) and
  `ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt` with CRLF line ends as published;
* `hmdb51/`: HMDB-51 official, `videos/<class>/<name>.avi` and
  `testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt` (`<name>.avi <0|1|2>`, 1 = train, 2 = test);
* `kinetics400/`: Kinetics-400 official, `annotations/{train,validate}.csv` (`label,youtube_id,time_start,time_end,
  split`; class names with spaces) and `videos/<class_dir>/<ytid>_<start:06d>_<end:06d>.mp4`;
* `kinetics400_ctp/`: Kinetics-400 in CtP's format (FedVSSL's), `<class_dir>/<clip>/RGB_frames.zip` (JPEG frames),
  `annotations/{train,val}.json` (`[{"name": "<class_dir>/<clip>", "label": 1-based}]`), `annotations/classInd.txt` and
  FedVSSL's `annotations/fedvssl_clients/client_dist{1,2}.json`;
* `ucf101_ctp/`, `hmdb51_ctp/`: UCF-101 / HMDB-51 in CtP's format, `zips/<name>.zip` with
  `annotations/{train,test}_split_1.json` (UCF, names `<Class>/v_...`, + classInd.txt) or `.txt` lists (HMDB,
  `<stem> <label>`).
"""

from __future__ import annotations

import json
import os

import numpy as np

from input_pipeline import annotations
from input_pipeline import synthetic
from input_pipeline import video as video_lib

NUM_FRAMES = 24
HEIGHT, WIDTH = 32, 40
UCF_CLASSES = ("ApplyEyeMakeup", "Archery", "Basketball")
HMDB_CLASSES = ("brush_hair", "cartwheel", "catch")
# Official Kinetics label strings (spaces); 4 classes so FedVSSL's non-IID window fits 2 clients (N + 2c - 1 <= 4).
KINETICS_CLASSES = ("abseiling", "brushing teeth", "playing guitar", "taking a shower")
KINETICS_TRAIN, KINETICS_TEST = 3, 2  # videos per class
UCF_TRAIN, UCF_TEST = 2, 1  # groups per class in the train / test list (one clip each)


def frames(label: int, index: int, split: str, num_frames: int = NUM_FRAMES) -> np.ndarray:
  """uint8 [T, 32, 40, 3] frames of a video of class `label` (synthetic class `label`'s motion)."""
  rng = np.random.default_rng([label, index, 0 if split == "train" else 1])
  return synthetic.render_video(synthetic.CLASS_NAMES[label], num_frames, HEIGHT, WIDTH, rng)


def _write_text(path: str, lines, newline: str = "\n") -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write("".join(line + newline for line in lines))


def _write_json(path: str, entries) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(entries, f)


def _avi(path: str, rgb: np.ndarray) -> None:
  video_lib.write_video(path, rgb, codec="mpeg4", crf=None)


# ----------------------------------------------------------------------------------------------------------------
# UCF-101


def _ucf_videos():
  """[(class, name without extension, 0-based label, index, split)]: train groups 8.., test groups 1.. as published."""
  out = []
  for label, cls in enumerate(UCF_CLASSES):
    for i in range(UCF_TRAIN):
      out.append((cls, f"{cls}/v_{cls}_g{8 + i:02d}_c01", label, i, "train"))
    for i in range(UCF_TEST):
      out.append((cls, f"{cls}/v_{cls}_g{1 + i:02d}_c01", label, i, "test"))
  return out


def make_ucf101(root: str) -> str:
  for cls, name, label, i, split in _ucf_videos():
    _avi(os.path.join(root, "UCF-101", f"{name}.avi"), frames(label, i, split))
  lists = os.path.join(root, "ucfTrainTestlist")
  _write_text(os.path.join(lists, "classInd.txt"), [f"{i} {c}" for i, c in enumerate(UCF_CLASSES, 1)], "\r\n")
  videos = _ucf_videos()
  _write_text(os.path.join(lists, "trainlist01.txt"),
              [f"{n}.avi {label + 1}" for _, n, label, _, s in videos if s == "train"], "\r\n")
  _write_text(os.path.join(lists, "testlist01.txt"), [f"{n}.avi" for _, n, _, _, s in videos if s == "test"], "\r\n")
  return root


def make_ucf101_ctp(root: str) -> str:
  videos = _ucf_videos()
  for cls, name, label, i, split in videos:
    video_lib.write_frame_zip(os.path.join(root, "zips", f"{name}.zip"), frames(label, i, split))
  for split in ("train", "test"):
    _write_json(os.path.join(root, "annotations", f"{split}_split_1.json"),
                [{"name": n, "label": label + 1} for _, n, label, _, s in videos if s == split])
  annotations.write_class_index(UCF_CLASSES, os.path.join(root, "annotations", "classInd.txt"))
  return root


# ----------------------------------------------------------------------------------------------------------------
# HMDB-51


def _hmdb_videos():
  """[(class, stem, 0-based label, index, split flag 1 = train / 2 = test / 0 = unused)]."""
  out = []
  for label, cls in enumerate(HMDB_CLASSES):
    for i, flag in enumerate((1, 1, 2, 0)):
      out.append((cls, f"{cls.capitalize()}_video_{i}_{cls}_f_cm_np1_fr_med_{i}", label, i, flag))
  return out


def make_hmdb51(root: str) -> str:
  videos = _hmdb_videos()
  for cls, stem, label, i, flag in videos:
    if flag:
      _avi(os.path.join(root, "videos", cls, f"{stem}.avi"), frames(label, i, "train" if flag == 1 else "test"))
  splits = os.path.join(root, "testTrainMulti_7030_splits")
  for cls in HMDB_CLASSES:
    for k in (1, 2, 3):  # splits 2 and 3 swap train and test (all three files exist, as published)
      flags = {1: {1: 1, 2: 2, 0: 0}, 2: {1: 2, 2: 1, 0: 0}, 3: {1: 2, 2: 1, 0: 0}}[k]
      _write_text(os.path.join(splits, f"{cls}_test_split{k}.txt"),
                  [f"{stem}.avi {flags[flag]} " for c, stem, _, _, flag in videos if c == cls])
  return root


def make_hmdb51_ctp(root: str) -> str:
  videos = _hmdb_videos()
  for cls, stem, label, i, flag in videos:
    if flag:
      video_lib.write_frame_zip(os.path.join(root, "zips", f"{stem}.zip"),
                                frames(label, i, "train" if flag == 1 else "test"))
  for split, want in (("train", 1), ("test", 2)):
    _write_text(os.path.join(root, "annotations", f"{split}_split_1.txt"),
                [f"{stem} {label + 1}" for _, stem, label, _, flag in videos if flag == want])
  return root


# ----------------------------------------------------------------------------------------------------------------
# Kinetics-400


def _kinetics_clips(split: str):
  """[(class name, class dir, clip id, 0-based label, index)] of a miniature Kinetics split."""
  per = KINETICS_TRAIN if split == "train" else KINETICS_TEST
  out = []
  for label, cls in enumerate(KINETICS_CLASSES):
    for i in range(per):
      ytid = f"{'t' if split == 'train' else 'v'}{label}x{i}-AbC_d"  # 11 characters with '-' and '_' as YouTube ids
      start = 10 * i + 3
      out.append((cls, annotations.kinetics_class_dir(cls), f"{ytid}_{start:06d}_{start + 10:06d}", label, i))
  return out


def make_kinetics(root: str) -> str:
  for split, csv_name, csv_split in (("train", "train.csv", "train"), ("val", "validate.csv", "val")):
    rows = ["label,youtube_id,time_start,time_end,split"]
    for cls, cdir, clip, label, i in _kinetics_clips(split):
      video_lib.write_video(os.path.join(root, "videos", cdir, f"{clip}.mp4"), frames(label, i, split))
      ytid, start, end = clip.rsplit("_", 2)
      label_text = f'"{cls}"' if " " in cls else cls
      rows.append(f"{label_text},{ytid},{int(start)},{int(end)},{csv_split}")
    _write_text(os.path.join(root, "annotations", csv_name), rows)
  return root


def make_kinetics_ctp(root: str) -> str:
  for split, ann in (("train", "train.json"), ("val", "val.json")):
    entries = []
    for cls, cdir, clip, label, i in _kinetics_clips(split):
      video_lib.write_frame_zip(os.path.join(root, cdir, clip, "RGB_frames.zip"), frames(label, i, split))
      entries.append({"name": f"{cdir}/{clip}", "label": label + 1})
    _write_json(os.path.join(root, "annotations", ann), entries)
  annotations.write_class_index([annotations.kinetics_class_dir(c) for c in KINETICS_CLASSES],
                                os.path.join(root, "annotations", "classInd.txt"))
  # FedVSSL's client files (its entry format): client 1 the first two classes, client 2 the last two.
  train = json.load(open(os.path.join(root, "annotations", "train.json"), encoding="utf-8"))
  half = len(KINETICS_CLASSES) // 2
  for k, labels in ((1, range(1, half + 1)), (2, range(half + 1, len(KINETICS_CLASSES) + 1))):
    _write_json(os.path.join(root, "annotations", "fedvssl_clients", f"client_dist{k}.json"),
                [e for e in train if e["label"] in labels])
  return root


LAYOUTS = {"ucf101": make_ucf101, "ucf101_ctp": make_ucf101_ctp, "hmdb51": make_hmdb51, "hmdb51_ctp": make_hmdb51_ctp,
           "kinetics400": make_kinetics, "kinetics400_ctp": make_kinetics_ctp}


def make_all(root: str) -> dict[str, str]:
  """Writes every layout under `root/<layout name>`; returns {layout name: its root}."""
  return {name: make(os.path.join(root, name)) for name, make in LAYOUTS.items()}
