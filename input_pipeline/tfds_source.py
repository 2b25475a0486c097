"""Grain source over a prepared TFDS video dataset (ArrayRecord files), without TensorFlow.

Works for the datasets `scripts/prepare_dataset.py --tfds` writes (`fedvssl_videos/<config>`, frames as JPEG) and for
a user's own prepared TFDS video dataset in ArrayRecord format (e.g. `ucf101`: a `Video` / `Sequence(Image)` feature
and an integer label). Every example is read as its serialized `tf.train.Example` (TFDS's vendored proto, no
TensorFlow) and only the encoded frames are kept: the clip builder then decodes just the frames it samples
(`jpeg_frames.JpegClipReader`), where TFDS's own decoding would decode every frame of the video.

    source = TfdsVideoSource("fedvssl_videos/synthetic", "train", data_dir="~/tensorflow_datasets")
    ds = pipeline.make_train_dataset(source, builder, batch_size=8, seed=0, num_workers=2)

`tfds.data_source("fedvssl_videos/synthetic", split="train", data_dir=...)` reads the same files with full decoding.
"""

from __future__ import annotations

import os
from typing import Any

import grain

from input_pipeline.pipeline import SourceRecord


def _version_key(v: str) -> tuple[int, ...]:
  try:
    return tuple(int(p) for p in v.split("."))
  except ValueError:
    return (-1,)


def dataset_dir(name: str, data_dir: str | None = None) -> str:
  """`data_dir/<name>[/<config>]/<version>` of a prepared TFDS dataset (the newest version when `name` has none).

  `name`: "dataset", "dataset/config", or either with "/1.0.0"; `data_dir` defaults to $TFDS_DATA_DIR or
  ~/tensorflow_datasets. Raises FileNotFoundError naming the directory searched.
  """
  data_dir = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
  path = os.path.join(data_dir, *name.split("/"))
  if os.path.isfile(os.path.join(path, "dataset_info.json")):
    return path
  if not os.path.isdir(path):
    raise FileNotFoundError(f"TFDS dataset {name!r}: {path} does not exist (prepare it with scripts/prepare_dataset.py "
                            "--tfds, or set config.data.data_dir)")
  versions = [v for v in os.listdir(path) if os.path.isfile(os.path.join(path, v, "dataset_info.json"))]
  if not versions:
    raise FileNotFoundError(f"TFDS dataset {name!r}: no <version>/dataset_info.json under {path} (name the config, "
                            "e.g. fedvssl_videos/ucf101)")
  return os.path.join(path, max(versions, key=_version_key))


class TfdsVideoSource(grain.sources.RandomAccessDataSource):
  """Random-access grain source over one split of a prepared TFDS video dataset.

  Args:
    name: "dataset[/config][/version]", e.g. "fedvssl_videos/ucf101" or "ucf101".
    split: a TFDS split, slices allowed ("train", "test[:10%]").
    data_dir: the TFDS data directory.
    video_key, flow_key, label_key, name_key: the features holding the encoded frames (a `Video` or
      `Sequence(Image)`), the flow frames (None: no flow), the integer label and the video's name (optional).

  `source[i]` -> `SourceRecord(index, path, label, name, flow_path=None, frames=list[bytes],
  flow_frames=list[bytes] | None, num_frames)`, read by `pipeline.reader_for` with a `JpegClipReader`.
  Picklable (reopens the files in each worker); stable `repr`.
  """

  def __init__(self, name: str, split: str = "train", data_dir: str | None = None, *, video_key: str = "video",
               flow_key: str | None = None, label_key: str = "label", name_key: str | None = "name"):
    self._args = dict(name=name, split=split, data_dir=data_dir, video_key=video_key, flow_key=flow_key,
                      label_key=label_key, name_key=name_key)
    self._open()

  def _open(self):
    import tensorflow_datasets as tfds  # TFDS without TensorFlow: reads ArrayRecord + the vendored protos

    a = self._args
    self._dir = dataset_dir(a["name"], a["data_dir"])
    builder = tfds.builder_from_directory(self._dir)
    fmt = getattr(builder.info.file_format, "value", builder.info.file_format)
    if fmt != "array_record":
      raise ValueError(f"{self._dir}: file format {fmt}, TfdsVideoSource needs array_record "
                       "(prepare with file_format='array_record')")
    features = builder.info.features
    for key in (a["video_key"], a["label_key"]) + ((a["flow_key"],) if a["flow_key"] else ()):
      if key not in features:
        raise KeyError(f"{self._dir}: no feature {key!r} (features: {sorted(features.keys())}); set "
                       "config.data.tfds_video_key / tfds_label_key / tfds_flow_key")
    self._raw = builder.as_data_source(a["split"]).data_source
    meta = builder.info.metadata or {}
    names = meta.get("class_names")
    if not names and hasattr(features[a["label_key"]], "names"):
      names = list(features[a["label_key"]].names)
    self.class_names: list[str] = list(names or [])
    self._has_name = bool(a["name_key"]) and a["name_key"] in features

  def __len__(self) -> int:
    return len(self._raw)

  def __getitem__(self, index: int) -> SourceRecord:
    from tensorflow_datasets.proto import tf_example_pb2

    a = self._args
    index = int(index) % len(self._raw)
    where = f"{self._dir} ({a['split']})[{index}]"
    try:
      feats = tf_example_pb2.Example.FromString(self._raw[index]).features.feature
      frames = list(feats[a["video_key"]].bytes_list.value)
      label = int(feats[a["label_key"]].int64_list.value[0])
      flow = list(feats[a["flow_key"]].bytes_list.value) if a["flow_key"] else None
      name = feats[a["name_key"]].bytes_list.value[0].decode("utf-8") if self._has_name else where
    except (KeyError, IndexError, ValueError) as e:  # DecodeError is a ValueError
      raise ValueError(f"{where}: malformed example ({type(e).__name__}: {e})") from e
    return SourceRecord(index=index, path=name, label=label, name=name, flow_path=None, frames=frames,
                        flow_frames=flow, num_frames=len(frames))

  def __getstate__(self) -> dict[str, Any]:
    return dict(self._args)

  def __setstate__(self, state: dict[str, Any]) -> None:
    self._args = dict(state)
    self._open()

  def __repr__(self) -> str:
    a = self._args
    return f"TfdsVideoSource({a['name']!r}, split={a['split']!r}, dir={self._dir!r})"
