"""Data sources: `config.data` -> train / test lists of `VideoRecord`s, chosen by `config.data.source`.

Sources and the layouts they expect under `config.data.root`:

| source | `format=official` | `format=ctp` (microsoft/CtP, FedVSSL) |
|---|---|---|
| ucf101 | `UCF-101/<Class>/v_*.avi` + `ucfTrainTestlist/{classInd,trainlist0K,testlist0K}.txt` | `zips/<name>.zip` + `annotations/{train,test}_split_K.json` |
| hmdb51 | `videos/<class>/<name>.avi` + `testTrainMulti_7030_splits/` | `zips/<name>.zip` + `annotations/{train,test}_split_K.{json,txt}` |
| kinetics400 | `videos/<label>/<ytid>_<start>_<end>.mp4` + `annotations/{train,validate}.csv` | `<name>/RGB_frames.zip` + `annotations/{train,val}.json` |
| json | any: `data.train_annotations` / `data.test_annotations` (CtP JSON / txt / Kinetics CSV) + `data.path_template` | |
| synthetic | made on first use in `data.cache_dir` (no root needed) | |

Every path can be changed with `data.path_template` (fields: `{name}`, `{stem}`, `{class_name}`, `{ext}`), and two-stream
runs find the flow videos with `data.flow_template` (default: the video path with `videos/` -> `videos_flow/`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import ml_collections
import numpy as np

from fedvssl_jax.config_utils import ConfigError
from fedvssl_jax.registry import Registry
from input_pipeline import annotations
from input_pipeline import flow as flow_lib
from input_pipeline.annotations import VideoRecord

DATA_SOURCES: Registry[Callable[[ml_collections.ConfigDict], "DatasetSplits"]] = Registry("data source")


@dataclasses.dataclass
class DatasetSplits:
  """The train (gallery / training) and test (query / evaluation) videos of a dataset."""
  train: list[VideoRecord]
  test: list[VideoRecord]
  class_names: list[str]
  root: str

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def load_splits(data: ml_collections.ConfigDict) -> DatasetSplits:
  """Reads `config.data` into train/test records; a missing root or file is a `ConfigError` naming the key."""
  splits = DATA_SOURCES.get(data.source)(data)
  if not splits.train:
    raise ConfigError(f"config.data: the {data.source} train split under {splits.root!r} is empty")
  percent = float(data.get("percent_per_class", 1.0))
  if percent != 1.0:
    splits = dataclasses.replace(splits, train=subsample_per_class(splits.train, percent,
                                                                    int(data.get("percent_seed", 0))))
  if data.get("with_flow", False):
    splits = dataclasses.replace(splits, train=with_flow_paths(splits.train, data),
                                 test=with_flow_paths(splits.test, data))
  return splits


def subsample_per_class(records: list[VideoRecord], fraction: float, seed: int = 0) -> list[VideoRecord]:
  """Low-data training: per class max(int(n_c * fraction), 1) of its n_c records, drawn without replacement
  (GOCA's `--percent_per_cls`, my_ds/AVideoDatasetCont.py update_valid_indices; there with `random.sample`, here
  seeded), kept in their original order.

  Args:
    records: the train split.
    fraction: in (0, 1] (1 = all; GOCA's 0.1 = 10% per class).
    seed: the draw's seed (`config.data.percent_seed`).
  """
  if not 0.0 < fraction <= 1.0:
    raise ConfigError(f"config.data.percent_per_class={fraction}: expected a fraction in (0, 1]")
  rng = np.random.default_rng(seed)
  by_class: dict[int, list[int]] = {}
  for i, r in enumerate(records):
    by_class.setdefault(int(r.label), []).append(i)
  keep = []
  for label in sorted(by_class):
    idx = by_class[label]
    keep.extend(rng.choice(idx, size=max(int(len(idx) * fraction), 1), replace=False).tolist())
  return [records[i] for i in sorted(keep)]


def with_flow_paths(records: list[VideoRecord], data: ml_collections.ConfigDict) -> list[VideoRecord]:
  """The records with `flow_path` set: `data.flow_template`, or GOCA's videos/ -> videos_flow/ rule."""
  template = data.get("flow_template", "")
  out = []
  for r in records:
    if template:
      flow = annotations.resolve_path(r.name, data.root or None, template)
    else:
      try:
        flow = flow_lib.flow_path_for(r.path)
      except ValueError as e:
        raise ConfigError(f"{e}; set config.data.flow_template") from None
    out.append(dataclasses.replace(r, flow_path=flow))
  return out


def missing_flow(records: list[VideoRecord]) -> list[VideoRecord]:
  """The records whose flow video (`flow_path`, see `with_flow_paths`) is unset or not on disk."""
  return [r for r in records if not (r.flow_path and os.path.exists(r.flow_path))]


def check_flow_files(splits: DatasetSplits, hint: str = "or set config.data.flow_template") -> None:
  """Raises a one-line ConfigError when a record of `splits` (train and test) has no flow video (`missing_flow`).

  The message counts the missing videos, names one, gives the scripts/extract_flow.py command and ends with
  `({hint})`.
  """
  missing = missing_flow(splits.train + splits.test)
  if missing:
    raise ConfigError(
        f"{len(missing)} flow videos are missing, e.g. {missing[0].flow_path}: make them with "
        f"`python scripts/extract_flow.py --videos <root>/videos --out <root>/videos_flow` ({hint})")


def _require_root(data: ml_collections.ConfigDict, what: str) -> str:
  root = data.get("root", "")
  if not root:
    raise ConfigError(
        f"config.data.root is not set: point it at your {what} folder (--config.data.root=/path/to/{data.source}), "
        "or try the demo on synthetic videos first (--config=configs/<recipe>.py:demo)")
  if not os.path.isdir(root):
    raise ConfigError(f"config.data.root={root!r} is not a directory")
  return root


def _require_file(path: str, key: str) -> str:
  if not os.path.exists(path):
    raise ConfigError(f"{path} not found (set {key} or check config.data.root / config.data.format)")
  return path


def _class_names_from(records: list[VideoRecord], names: list[str] | None = None) -> list[str]:
  if names:
    return list(names)
  num = max((r.label for r in records), default=-1) + 1
  by_label = {}
  for r in records:
    by_label.setdefault(r.label, os.path.dirname(r.name) or str(r.label))
  return [by_label.get(i, str(i)) for i in range(num)]


def _ctp_annotation(root: str, subset: str, split: int, data: ml_collections.ConfigDict) -> str:
  for name in (f"{subset}_split_{split}.json", f"{subset}_split_{split}.txt", f"{subset}.json", f"{subset}.txt"):
    path = os.path.join(root, "annotations", name)
    if os.path.exists(path):
      return path
  raise ConfigError(f"no CtP annotation file for the {subset} split {split} in {os.path.join(root, 'annotations')} "
                    "(expected e.g. train_split_1.json)")


@DATA_SOURCES.register("ucf101")
def ucf101(data: ml_collections.ConfigDict) -> DatasetSplits:
  root = _require_root(data, "UCF-101")
  k = int(data.split)
  if data.format == "ctp":
    template = data.path_template or "zips/{name}.zip"
    train = annotations.load_annotations(_ctp_annotation(root, "train", k, data), root, path_template=template)
    test = annotations.load_annotations(_ctp_annotation(root, "test", k, data), root, path_template=template)
    class_index = os.path.join(root, "annotations", "classInd.txt")
    names = annotations.read_class_index(class_index) if os.path.exists(class_index) else None
    return DatasetSplits(train, test, _class_names_from(train + test, names), root)
  lists = os.path.join(root, "ucfTrainTestlist")
  class_index = _require_file(os.path.join(lists, "classInd.txt"), "config.data.root")
  template = data.path_template or "UCF-101/{name}{ext}"
  train = annotations.read_ucf101_split(_require_file(os.path.join(lists, f"trainlist0{k}.txt"), "config.data.split"),
                                        class_index, root, path_template=template)
  test = annotations.read_ucf101_split(_require_file(os.path.join(lists, f"testlist0{k}.txt"), "config.data.split"),
                                       class_index, root, path_template=template)
  return DatasetSplits(train, test, annotations.read_class_index(class_index), root)


@DATA_SOURCES.register("hmdb51")
def hmdb51(data: ml_collections.ConfigDict) -> DatasetSplits:
  root = _require_root(data, "HMDB-51")
  k = int(data.split)
  if data.format == "ctp":
    template = data.path_template or "zips/{name}.zip"
    train = annotations.load_annotations(_ctp_annotation(root, "train", k, data), root, path_template=template)
    test = annotations.load_annotations(_ctp_annotation(root, "test", k, data), root, path_template=template)
    return DatasetSplits(train, test, _class_names_from(train + test), root)
  splits_dir = _require_file(os.path.join(root, "testTrainMulti_7030_splits"), "config.data.root")
  template = data.path_template or "videos/{class_name}/{name}{ext}"
  train = annotations.read_hmdb51_split(splits_dir, k, "train", root, path_template=template)
  test = annotations.read_hmdb51_split(splits_dir, k, "test", root, path_template=template)
  return DatasetSplits(train, test, annotations.hmdb51_class_names(splits_dir), root)


@DATA_SOURCES.register("kinetics400")
def kinetics400(data: ml_collections.ConfigDict) -> DatasetSplits:
  root = _require_root(data, "Kinetics-400")
  ann = os.path.join(root, "annotations")
  if data.format == "ctp":
    template = data.path_template or "{name}/RGB_frames.zip"
    train = annotations.load_annotations(_require_file(data.train_annotations or os.path.join(ann, "train.json"),
                                                       "config.data.train_annotations"), root, path_template=template)
    test = annotations.load_annotations(_require_file(data.test_annotations or os.path.join(ann, "val.json"),
                                                      "config.data.test_annotations"), root, path_template=template)
    class_index = os.path.join(ann, "classInd.txt")
    names = annotations.read_class_index(class_index) if os.path.exists(class_index) else None
    return DatasetSplits(train, test, _class_names_from(train + test, names), root)
  template = data.path_template or "videos/{name}.mp4"
  train_csv = _require_file(data.train_annotations or os.path.join(ann, "train.csv"), "config.data.train_annotations")
  test_csv = _require_file(data.test_annotations or os.path.join(ann, "validate.csv"), "config.data.test_annotations")
  _, class_names, _ = annotations.parse_kinetics_csv(train_csv)
  train = annotations.read_kinetics_csv(train_csv, root, path_template=template, class_index=class_names)
  test = annotations.read_kinetics_csv(test_csv, root, path_template=template, class_index=class_names)
  return DatasetSplits(train, test, list(class_names), root)


@DATA_SOURCES.register("json")
def generic(data: ml_collections.ConfigDict) -> DatasetSplits:
  root = data.get("root", "") or None
  if not data.train_annotations:
    raise ConfigError("config.data.train_annotations is not set (source=json needs annotation files); "
                      "or try the demo first (--config=configs/<recipe>.py:demo)")
  template = data.path_template or None
  train = annotations.load_annotations(_require_file(data.train_annotations, "config.data.train_annotations"), root,
                                       path_template=template)
  test = []
  if data.test_annotations:
    test = annotations.load_annotations(_require_file(data.test_annotations, "config.data.test_annotations"), root,
                                        path_template=template)
  return DatasetSplits(train, test, _class_names_from(train + test), root or "")


def synthetic_cache_dir(data: ml_collections.ConfigDict) -> str:
  return data.get("cache_dir", "") or os.path.join(
      os.path.expanduser("~"), ".cache", "fedvssl_jax", f"synthetic_{data.get('synthetic_preset', 'demo')}")


@DATA_SOURCES.register("synthetic")
def synthetic_videos(data: ml_collections.ConfigDict) -> DatasetSplits:
  from input_pipeline import synthetic

  root = synthetic_cache_dir(data)
  synthetic.ensure_dataset(root, data.get("synthetic_preset", "demo"), progress=True)
  ann = os.path.join(root, "annotations")
  template = data.path_template or "videos/{name}.mp4"
  train = annotations.load_annotations(os.path.join(ann, "train.json"), root, path_template=template)
  test = annotations.load_annotations(os.path.join(ann, "test.json"), root, path_template=template)
  names = annotations.read_class_index(os.path.join(ann, "classInd.txt"))
  return DatasetSplits(train, test, names, root)
