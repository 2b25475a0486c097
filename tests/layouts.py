"""Miniature copies of the public datasets' on-disk layouts (the ones the README documents), from tiny generated
videos, for the end-to-end tests of the non-demo recipes (`layout_root` fixture in conftest.py, made once per run).

`make_kinetics_ctp(root)`: Kinetics-400 in CtP's format, as FedVSSL uses it:
  `<class_dir>/<ytid>_<start:06d>_<end:06d>/RGB_frames.zip` (JPEG frames `img_00001.jpg ...`),
  `annotations/{train,val}.json` (`[{"name": "<class_dir>/<clip>", "label": 1-based}]`), `annotations/classInd.txt`,
  and FedVSSL's `annotations/fedvssl_clients/client_dist{k}.json` (k = 1, 2; the same entry format).
"""

from __future__ import annotations

import json
import os

import numpy as np

from input_pipeline import annotations
from input_pipeline import synthetic
from input_pipeline import video as video_lib

# Kinetics class names as in the official CSVs (spaces), with distinct synthetic motions for a learnable signal.
KINETICS_CLASSES = ("abseiling", "brushing teeth", "playing guitar", "taking a shower")
NUM_FRAMES = 24
HEIGHT, WIDTH = 32, 40
TRAIN_PER_CLASS, TEST_PER_CLASS = 3, 2


def frames(label: int, index: int, split: str, num_frames: int = NUM_FRAMES) -> np.ndarray:
  """uint8 [T, 32, 40, 3] frames of a synthetic video of class `label` (its motion is synthetic class `label`'s)."""
  rng = np.random.default_rng([label, index, 0 if split == "train" else 1])
  return synthetic.render_video(synthetic.CLASS_NAMES[label], num_frames, HEIGHT, WIDTH, rng)


def _kinetics_clips(split: str):
  """[(class name, class dir, clip id, 0-based label, index)] of a miniature Kinetics split."""
  per = TRAIN_PER_CLASS if split == "train" else TEST_PER_CLASS
  out = []
  for label, cls in enumerate(KINETICS_CLASSES):
    for i in range(per):
      ytid = f"{'t' if split == 'train' else 'v'}{label}x{i}-AbC_d"  # 11 characters, '-' and '_' as YouTube ids
      start = 10 * i + 3
      out.append((cls, annotations.kinetics_class_dir(cls), f"{ytid}_{start:06d}_{start + 10:06d}", label, i))
  return out


def _write_json(path: str, entries) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(entries, f)


def make_kinetics_ctp(root: str) -> str:
  """Writes the Kinetics-400-in-CtP-format miniature under `root`; returns `root`."""
  for split, ann in (("train", "train.json"), ("val", "val.json")):
    entries = []
    for cls, cdir, clip, label, i in _kinetics_clips("train" if split == "train" else "val"):
      video_lib.write_frame_zip(os.path.join(root, cdir, clip, "RGB_frames.zip"), frames(label, i, split))
      entries.append({"name": f"{cdir}/{clip}", "label": label + 1})
    _write_json(os.path.join(root, "annotations", ann), entries)
  annotations.write_class_index([annotations.kinetics_class_dir(c) for c in KINETICS_CLASSES],
                                os.path.join(root, "annotations", "classInd.txt"))
  # FedVSSL's client files: client 1 the first two classes, client 2 the last two (names as in train.json).
  train = json.load(open(os.path.join(root, "annotations", "train.json"), encoding="utf-8"))
  half = len(KINETICS_CLASSES) // 2
  for k, labels in ((1, range(1, half + 1)), (2, range(half + 1, len(KINETICS_CLASSES) + 1))):
    _write_json(os.path.join(root, "annotations", "fedvssl_clients", f"client_dist{k}.json"),
                [e for e in train if e["label"] in labels])
  return root
