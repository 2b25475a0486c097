"""Data sources: `config.data` -> train / test lists of `VideoRecord`s, chosen by `config.data.source`.

Sources and the layouts they expect under `config.data.root`:

| source | `format=official` | `format=ctp` (microsoft/CtP, FedVSSL) |
|---|---|---|
| ucf101 | `UCF-101/<Class>/v_*.avi` + `ucfTrainTestlist/{classInd,trainlist0K,testlist0K}.txt` | `zips/<name>.zip` + `annotations/{train,test}_split_K.json` |
| hmdb51 | `videos/<class>/<name>.avi` + `testTrainMulti_7030_splits/` | `zips/<name>.zip` + `annotations/{train,test}_split_K.{json,txt}` |
| kinetics400 | `videos/<label>/<ytid>_<start>_<end>.mp4` + `annotations/{train,validate}.csv` | `<name>/RGB_frames.zip` + `annotations/{train,val}.json` |
| json | any: `data.train_annotations` / `data.test_annotations` (CtP JSON / txt / Kinetics CSV) + `data.path_template` | |
| synthetic | made on first use in `data.cache_dir` (no root needed) | |
| tfds | `data.data_dir/<data.tfds_name>/<version>/` ArrayRecord files (`scripts/prepare_dataset.py --tfds`) | |

Every path can be changed with `data.path_template` (fields: `{name}`, `{stem}`, `{class_name}`, `{ext}`), and two-stream
runs find the flow videos with `data.flow_template` (default: the video path with `videos/` -> `videos_flow/`).

Each source resolves names through one `Layout` (root, path template, default extension, class directories, flow
template), kept in `DatasetSplits.layout`: any other annotation file of the same dataset, e.g. a federated client's
`client_dist{k}.json`, is read with `DatasetSplits.read` and gives the very records the source's own lists give.
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


@dataclasses.dataclass(frozen=True)
class Layout:
  """How an annotation name becomes a `VideoRecord` on a dataset's disk: the one resolution of a data source.

  Attributes:
    root: the data root ("" = paths as the template gives them).
    path_template: `annotations.resolve_path` template of the video, e.g. "{name}/RGB_frames.zip".
    default_ext: `{ext}` when the annotation file does not give one (a JSON list of UCF-101 names: ".avi").
    class_dirs: `{class_name}` of each 0-based label when the name has no directory and the file gives no class
      (HMDB-51's bare video stems in a JSON / txt list).
    with_flow: set `VideoRecord.flow_path` (two-stream runs).
    flow_template: template of the flow video; "" = GOCA's rule (the video path with videos/ -> videos_flow/).
  """
  root: str
  path_template: str
  default_ext: str = ""
  class_dirs: tuple[str, ...] = ()
  with_flow: bool = False
  flow_template: str = ""

  def record(self, name: str, label: int, ext: str | None = None, class_name: str | None = None,
             **fields) -> VideoRecord:
    """The record of annotation `name` with 0-based `label`; `ext` / `class_name` as the annotation file gives them."""
    if not class_name and not os.path.dirname(name) and 0 <= label < len(self.class_dirs):
      class_name = self.class_dirs[label]
    fields.update(ext=ext or self.default_ext, class_name=class_name or None)
    root = self.root or None
    path = annotations.resolve_path(name, root, self.path_template, **fields)
    flow = None
    if self.with_flow:
      if self.flow_template:
        flow = annotations.resolve_path(name, root, self.flow_template, **fields)
      else:
        try:
          flow = flow_lib.flow_path_for(path)
        except ValueError as e:
          raise ConfigError(f"{e}; set config.data.flow_template") from None
    return VideoRecord(path=path, label=label, name=name, flow_path=flow)

  def read(self, path: str, fmt: str = "auto", **kwargs) -> list[VideoRecord]:
    """Reads an annotation file (any `annotations.FORMATS`; kwargs as `annotations.load_annotations`) with this
    layout's resolution."""
    return annotations.load_annotations(path, fmt=fmt, make_record=self.record, **kwargs)


def make_layout(data: ml_collections.ConfigDict, root: str, default_template: str, default_ext: str = "",
                class_dirs=()) -> Layout:
  """The `Layout` of `config.data`: `data.path_template` (else `default_template`), `data.with_flow`,
  `data.flow_template`."""
  return Layout(root=root or "", path_template=data.get("path_template", "") or default_template,
                default_ext=default_ext, class_dirs=tuple(class_dirs), with_flow=bool(data.get("with_flow", False)),
                flow_template=data.get("flow_template", "") or "")


@dataclasses.dataclass
class DatasetSplits:
  """The train (gallery / training) and test (query / evaluation) videos of a dataset, and how its names resolve."""
  train: list[VideoRecord]
  test: list[VideoRecord]
  class_names: list[str]
  root: str
  layout: Layout | None = None

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def read(self, path: str, fmt: str = "auto", **kwargs) -> list[VideoRecord]:
    """Reads another annotation file of this dataset (e.g. a client's `client_dist{k}.json`) into records resolved
    exactly as `train` / `test` are (`Layout.read`); without a layout, names are paths under `root`."""
    layout = self.layout or Layout(root=self.root, path_template="{name}")
    return layout.read(path, fmt=fmt, **kwargs)


def load_splits(data: ml_collections.ConfigDict) -> DatasetSplits:
  """Reads `config.data` into train/test records; a missing root or file is a `ConfigError` naming the key.

  In a multi-process job process 0 reads (and makes the synthetic videos) first, then the others.
  """
  from fedvssl_jax.core import distributed

  with distributed.primary_first(f"load_splits {data.source}"):
    splits = DATA_SOURCES.get(data.source)(data)
  if not splits.train:
    raise ConfigError(f"config.data: the {data.source} train split under {splits.root!r} is empty")
  percent = float(data.get("percent_per_class", 1.0))
  if percent != 1.0:
    splits = dataclasses.replace(splits, train=subsample_per_class(splits.train, percent,
                                                                    int(data.get("percent_seed", 0))))
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


def missing_flow(records: list[VideoRecord]) -> list[VideoRecord]:
  """The records whose flow video (`flow_path`, set by `Layout`) is unset or not on disk."""
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
    class_index = os.path.join(root, "annotations", "classInd.txt")
    names = annotations.read_class_index(class_index) if os.path.exists(class_index) else None
    layout = make_layout(data, root, "zips/{name}.zip", class_dirs=names or ())
    train = layout.read(_ctp_annotation(root, "train", k, data))
    test = layout.read(_ctp_annotation(root, "test", k, data))
    return DatasetSplits(train, test, _class_names_from(train + test, names), root, layout)
  lists = os.path.join(root, "ucfTrainTestlist")
  class_index = _require_file(os.path.join(lists, "classInd.txt"), "config.data.root")
  names = annotations.read_class_index(class_index)
  layout = make_layout(data, root, "UCF-101/{name}{ext}", default_ext=".avi", class_dirs=names)
  train = layout.read(_require_file(os.path.join(lists, f"trainlist0{k}.txt"), "config.data.split"), "ucf101",
                      class_index=class_index)
  test = layout.read(_require_file(os.path.join(lists, f"testlist0{k}.txt"), "config.data.split"), "ucf101",
                     class_index=class_index)
  return DatasetSplits(train, test, names, root, layout)


@DATA_SOURCES.register("hmdb51")
def hmdb51(data: ml_collections.ConfigDict) -> DatasetSplits:
  root = _require_root(data, "HMDB-51")
  k = int(data.split)
  if data.format == "ctp":
    layout = make_layout(data, root, "zips/{name}.zip")
    train = layout.read(_ctp_annotation(root, "train", k, data))
    test = layout.read(_ctp_annotation(root, "test", k, data))
    return DatasetSplits(train, test, _class_names_from(train + test), root, layout)
  splits_dir = _require_file(os.path.join(root, "testTrainMulti_7030_splits"), "config.data.root")
  names = annotations.hmdb51_class_names(splits_dir)
  layout = make_layout(data, root, "videos/{class_name}/{name}{ext}", default_ext=".avi", class_dirs=names)
  train = layout.read(splits_dir, "hmdb51", split=k, subset="train")
  test = layout.read(splits_dir, "hmdb51", split=k, subset="test")
  return DatasetSplits(train, test, names, root, layout)


@DATA_SOURCES.register("kinetics400")
def kinetics400(data: ml_collections.ConfigDict) -> DatasetSplits:
  root = _require_root(data, "Kinetics-400")
  ann = os.path.join(root, "annotations")
  if data.format == "ctp":
    class_index = os.path.join(ann, "classInd.txt")
    names = annotations.read_class_index(class_index) if os.path.exists(class_index) else None
    layout = make_layout(data, root, "{name}/RGB_frames.zip",
                         class_dirs=[annotations.kinetics_class_dir(n) for n in names or ()])
    train = layout.read(_require_file(data.train_annotations or os.path.join(ann, "train.json"),
                                      "config.data.train_annotations"))
    test = layout.read(_require_file(data.test_annotations or os.path.join(ann, "val.json"),
                                     "config.data.test_annotations"))
    return DatasetSplits(train, test, _class_names_from(train + test, names), root, layout)
  train_csv = _require_file(data.train_annotations or os.path.join(ann, "train.csv"), "config.data.train_annotations")
  test_csv = _require_file(data.test_annotations or os.path.join(ann, "validate.csv"), "config.data.test_annotations")
  _, class_names, _ = annotations.parse_kinetics_csv(train_csv)
  layout = make_layout(data, root, "videos/{name}.mp4",
                       class_dirs=[annotations.kinetics_class_dir(n) for n in class_names])
  train = layout.read(train_csv, "kinetics_csv", class_index=class_names)
  test = layout.read(test_csv, "kinetics_csv", class_index=class_names)
  return DatasetSplits(train, test, list(class_names), root, layout)


@DATA_SOURCES.register("json")
def generic(data: ml_collections.ConfigDict) -> DatasetSplits:
  root = data.get("root", "") or None
  if not data.train_annotations:
    raise ConfigError("config.data.train_annotations is not set (source=json needs annotation files); "
                      "or try the demo first (--config=configs/<recipe>.py:demo)")
  # No template given: each format's own default (annotations.load_annotations), as before the Layout.
  train_path = _require_file(data.train_annotations, "config.data.train_annotations")
  fmt = annotations.detect_format(train_path)
  layout = make_layout(data, root, {"ucf101": "{name}{ext}", "hmdb51": "{class_name}/{name}{ext}"}.get(fmt, "{name}"))
  train = layout.read(train_path)
  test = []
  if data.test_annotations:
    test = layout.read(_require_file(data.test_annotations, "config.data.test_annotations"))
  return DatasetSplits(train, test, _class_names_from(train + test), root or "", layout)


def synthetic_cache_dir(data: ml_collections.ConfigDict) -> str:
  return data.get("cache_dir", "") or os.path.join(
      os.path.expanduser("~"), ".cache", "fedvssl_jax", f"synthetic_{data.get('synthetic_preset', 'demo')}")


@DATA_SOURCES.register("synthetic")
def synthetic_videos(data: ml_collections.ConfigDict) -> DatasetSplits:
  from input_pipeline import synthetic

  root = synthetic_cache_dir(data)
  synthetic.ensure_dataset(root, data.get("synthetic_preset", "demo"), progress=True)
  ann = os.path.join(root, "annotations")
  names = annotations.read_class_index(os.path.join(ann, "classInd.txt"))
  layout = make_layout(data, root, synthetic.PATH_TEMPLATE, class_dirs=names)
  train = layout.read(os.path.join(ann, "train.json"))
  test = layout.read(os.path.join(ann, "test.json"))
  return DatasetSplits(train, test, names, root, layout)


@DATA_SOURCES.register("tfds")
def tfds_dataset(data: ml_collections.ConfigDict) -> DatasetSplits:
  """A prepared TFDS video dataset (ArrayRecord) as `input_pipeline.tfds_source.TfdsVideoSource` train / test.

  `fedvssl_videos/synthetic[_<suffix>]` is prepared from the synthetic videos (`data.synthetic_preset`) when absent.
  """
  from input_pipeline import tfds_source

  name = data.get("tfds_name", "")
  if not name:
    raise ConfigError("config.data.tfds_name is not set (source=tfds), e.g. --config.data.tfds_name="
                      "fedvssl_videos/ucf101 (prepare it with scripts/prepare_dataset.py --tfds ucf101)")
  data_dir = os.path.expanduser(data.get("data_dir", "") or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
  dataset, _, config_name = name.partition("/")
  config_name = config_name.split("/")[0]
  if dataset == "fedvssl_videos" and config_name.startswith("synthetic"):
    try:
      tfds_source.dataset_dir(name, data_dir)
    except FileNotFoundError:
      from fedvssl_jax import tfds_videos

      preset = data.get("synthetic_preset", "demo")
      print(f"preparing the TFDS dataset {name} from the synthetic {preset!r} videos in {data_dir}", flush=True)
      tfds_videos.prepare("synthetic", name=config_name, data_dir=data_dir, synthetic_preset=preset,
                          manual_dir=synthetic_cache_dir(data), with_flow=bool(data.get("with_flow", False)))
  flow_key = data.get("tfds_flow_key", "") or ("flow" if data.get("with_flow", False) else None)
  kwargs = dict(data_dir=data_dir, video_key=data.get("tfds_video_key", "video"),
                label_key=data.get("tfds_label_key", "label"), flow_key=flow_key)
  try:
    train = tfds_source.TfdsVideoSource(name, data.get("train_split", "train"), **kwargs)
    test_split = data.get("test_split", "test")
    test = tfds_source.TfdsVideoSource(name, test_split, **kwargs) if test_split else []
  except (FileNotFoundError, KeyError, ValueError) as e:
    raise ConfigError(f"config.data.tfds_name={name!r}: {e}") from None
  names = train.class_names
  if not names:
    labels = [train[i]["label"] for i in range(len(train))]
    names = [str(i) for i in range(max(labels, default=-1) + 1)]
  return DatasetSplits(train, test, names, tfds_source.dataset_dir(name, data_dir))
