"""TFDS builder `fedvssl_videos`: Kinetics-400 / UCF-101 / HMDB-51 / the synthetic set as JPEG frames in ArrayRecord.

Manual-download style: the videos are already on disk in `manual_dir`, laid out as `config.data.root` of the matching
`fedvssl_jax.datasets` source (see that module's table); TFDS downloads nothing. Each example is one video:

    {"video": Sequence(Image(jpeg)) [T frames at short side `short_side`], "label": int64 (0-based),
     "name": text, ("flow": Sequence(Image(jpeg)), (128, v, u) flow frames, when `with_flow`)}

with splits "train" and "test", the class names in `info.metadata["class_names"]`, file format ArrayRecord (rewritten
without compression after TFDS writes them: `uncompress_array_records`). Building
and reading need no TensorFlow (tensorflow-datasets 4.9 with its vendored protos):

    python scripts/prepare_dataset.py --tfds ucf101 --manual_dir /data/ucf101 --data_dir ~/tensorflow_datasets
    tfds.data_source("fedvssl_videos/ucf101", split="train", data_dir="~/tensorflow_datasets")   # full decoding
    input_pipeline.tfds_source.TfdsVideoSource("fedvssl_videos/ucf101", "train", data_dir=...)  # clip decoding

Resumable: every video's JPEG frames are cached in `<data_dir>/downloads/fedvssl_videos_frames/<config>/` as it is
encoded, so a killed preparation restarts without re-encoding what it had done (TFDS then rewrites the ArrayRecord
files, which is fast). Videos that cannot be read are named in a warning, skipped, and listed in
`skipped_<split>.json` next to that cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

_log = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class VideoFramesConfig(tfds.core.BuilderConfig):
  """Which local dataset to read and how to encode it (the `config.data` keys of `fedvssl_jax.datasets`)."""
  source: str = "synthetic"     # ucf101 | hmdb51 | kinetics400 | json | synthetic
  data_format: str = "official"  # official | ctp
  split: int = 1                # official split (UCF-101 / HMDB-51)
  train_annotations: str = ""   # source json / kinetics400 overrides
  test_annotations: str = ""
  path_template: str = ""
  synthetic_preset: str = "demo"
  with_flow: bool = False       # also store the flow video (GOCA)
  flow_template: str = ""
  short_side: int = 128         # frames larger than this are scaled down to this short side (pixels)
  quality: int = 90             # JPEG quality


VERSION = tfds.core.Version("1.0.0")
BUILDER_CONFIGS = [
    VideoFramesConfig(name="kinetics400", source="kinetics400", description="Kinetics-400, short side 128"),
    VideoFramesConfig(name="ucf101", source="ucf101", description="UCF-101 split 1, short side 128"),
    VideoFramesConfig(name="hmdb51", source="hmdb51", description="HMDB-51 split 1, short side 128"),
    VideoFramesConfig(name="synthetic", source="synthetic", description="the synthetic demo videos (64 x 64)"),
]


def data_config_for(cfg: VideoFramesConfig, root: str) -> ml_collections.ConfigDict:
  """The `config.data` block that reads `cfg`'s dataset from `root` (the manual dir)."""
  from fedvssl_jax.config_utils import data_config

  data = data_config(cfg.source)
  data.root = root
  data.format = cfg.data_format
  data.split = cfg.split
  data.train_annotations = cfg.train_annotations
  data.test_annotations = cfg.test_annotations
  data.path_template = cfg.path_template
  data.synthetic_preset = cfg.synthetic_preset
  data.with_flow = cfg.with_flow
  data.flow_template = cfg.flow_template
  if cfg.source == "synthetic":
    data.cache_dir = root
  return data


class FedvsslVideos(tfds.core.GeneratorBasedBuilder):
  """Local video datasets as per-frame JPEGs (see the module docstring)."""

  VERSION = VERSION
  BUILDER_CONFIGS = BUILDER_CONFIGS
  DEFAULT_CONFIG_NAME = "synthetic"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point --manual_dir (DownloadConfig.manual_dir) at the dataset's root as fedvssl_jax.datasets expects it, e.g. "
      "UCF-101/ + ucfTrainTestlist/ for ucf101 (format official); the synthetic set is made there when missing.")

  def _info(self) -> tfds.core.DatasetInfo:
    frames = tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"))
    features = {"video": frames, "label": tfds.features.Scalar(dtype=np.int64), "name": tfds.features.Text()}
    if self.builder_config.with_flow:
      features["flow"] = tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"))
    return tfds.core.DatasetInfo(builder=self, description=__doc__.split("\n")[0],
                                 features=tfds.features.FeaturesDict(features),
                                 metadata=tfds.core.MetadataDict(), homepage="https://github.com/yasar-rehman/FEDVSSL")

  def _split_generators(self, dl_manager):
    from fedvssl_jax import datasets

    cfg = self.builder_config
    root = os.fspath(dl_manager.manual_dir) if dl_manager.manual_dir else ""
    if cfg.source == "synthetic" and not root:
      root = datasets.synthetic_cache_dir(ml_collections.ConfigDict({"synthetic_preset": cfg.synthetic_preset}))
    splits = datasets.load_splits(data_config_for(cfg, root))
    self.info.metadata["class_names"] = list(splits.class_names)
    self.info.metadata["short_side"] = cfg.short_side
    self.info.metadata["source_root"] = os.path.abspath(root)
    cache = os.path.join(os.fspath(dl_manager.download_dir), "fedvssl_videos_frames", cfg.name)
    out = {"train": self._generate_examples(splits.train, cache, "train")}
    if splits.test:
      out["test"] = self._generate_examples(splits.test, cache, "test")
    return out

  def _generate_examples(self, records, cache_dir: str, split: str):
    from input_pipeline import jpeg_frames
    from input_pipeline.pipeline import BAD_INPUT_ERRORS

    cfg = self.builder_config
    skipped = []
    t0 = time.time()
    for i, r in enumerate(records):
      flow_path = getattr(r, "flow_path", None) if cfg.with_flow else None
      try:
        frames, flow = jpeg_frames.prepare_video(r.path, flow_path=flow_path, short_side=cfg.short_side,
                                                 quality=cfg.quality, cache_dir=cache_dir, name=r.name)
      except BAD_INPUT_ERRORS as e:
        _log.warning("skipping %s: %s: %s", r.path, type(e).__name__, e)
        skipped.append({"path": str(r.path), "name": r.name, "reason": f"{type(e).__name__}: {e}"})
        continue
      if cfg.with_flow and len(flow) != len(frames):
        n = min(len(flow), len(frames))  # flow of a T-frame video has T - 1 (or T) frames: keep the common prefix
        frames, flow = frames[:n], flow[:n]
      ex = {"video": frames, "label": int(r.label), "name": r.name}
      if cfg.with_flow:
        ex["flow"] = flow
      if (i + 1) % 100 == 0:
        _log.info("%s: %d / %d videos (%.0fs)", split, i + 1, len(records), time.time() - t0)
      yield f"{i:08d}", ex
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, f"skipped_{split}.json"), "w", encoding="utf-8") as f:
      json.dump(skipped, f, indent=2)
    if skipped:
      _log.warning("%s: %d of %d videos skipped (listed in %s)", split, len(skipped), len(records),
                   os.path.join(cache_dir, f"skipped_{split}.json"))


def make_config(base_config: str, name: str = "", **overrides) -> VideoFramesConfig:
  """The predeclared config `base_config` with `overrides` (`VideoFramesConfig` fields, `source` included).

  TFDS refuses a custom config under a predeclared name, so a config that differs from the predeclared one is named
  `name`, or `<source>_<8 hex digits of the options>` when `name` is empty.
  """
  base = {c.name: c for c in BUILDER_CONFIGS}.get(base_config)
  if base is None:
    known = sorted(c.name for c in BUILDER_CONFIGS)
    raise ValueError(f"fedvssl_videos: unknown config {base_config!r}; known: {known}")
  fields = {f.name for f in dataclasses.fields(VideoFramesConfig)} - {"name", "version", "description"}
  unknown = set(overrides) - fields
  if unknown:
    raise ValueError(f"fedvssl_videos: unknown options {sorted(unknown)}; known: {sorted(fields)}")
  changed = {k: v for k, v in overrides.items() if getattr(base, k) != v}
  if not changed and name in ("", base_config):
    return base
  if not name or name in {c.name for c in BUILDER_CONFIGS}:
    digest = hashlib.sha1(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()[:8]
    name = f"{base_config}_{digest}"
  return dataclasses.replace(base, name=name, description=f"{base.description}; {changed}", **changed)


def prepare(base_config: str, *, data_dir: str, manual_dir: str = "", name: str = "", **overrides) -> str:
  """Builds `fedvssl_videos/<config name>` in `data_dir` from `manual_dir`; returns the dataset's directory.

  `base_config`, `name`, `overrides`: as `make_config`. A dataset already complete in `data_dir` is kept as it is; an
  interrupted one resumes from its frame cache.
  """
  cfg = make_config(base_config, name, **overrides)
  builder = FedvsslVideos(config=cfg, data_dir=os.path.expanduser(data_dir), file_format="array_record")
  dl_config = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir) if manual_dir else None)
  builder.download_and_prepare(download_config=dl_config)
  uncompress_array_records(os.fspath(builder.data_path))
  return os.fspath(builder.data_path)


ARRAY_RECORD_OPTIONS = "group_size:1,uncompressed"


def uncompress_array_records(dataset_dir: str) -> int:
  """Rewrites the ArrayRecord files of a prepared dataset without compression; returns how many it rewrote.

  TFDS writes them zstd-compressed ("group_size:1", zstd level 3 by default). JPEG frames barely compress (the
  synthetic benchmark set: 12% larger uncompressed), while decompressing a video's record costs more CPU than
  decoding the clip's JPEGs (docs/benchmarks.md). The files keep their names and their records (same order), so TFDS
  readers (`tfds.data_source`) and `TfdsVideoSource` read them as before; files already uncompressed are skipped, so
  a dataset prepared earlier is converted on the next `prepare` (or left as it is: both read the same).
  """
  from array_record.python import array_record_module

  done = 0
  for name in sorted(os.listdir(dataset_dir)):
    if ".array_record-" not in name or name.endswith(".tmp"):
      continue
    path = os.path.join(dataset_dir, name)
    reader = array_record_module.ArrayRecordReader(path)
    try:
      if "uncompressed" in reader.writer_options_string().split(","):
        continue
      tmp = path + ".tmp"
      writer = array_record_module.ArrayRecordWriter(tmp, ARRAY_RECORD_OPTIONS)
      n = reader.num_records()
      for start in range(0, n, 16):  # a few videos at a time: never the whole file in memory
        for record in reader.read(list(range(start, min(n, start + 16)))):
          writer.write(record)
      writer.close()
    finally:
      reader.close()
    os.replace(tmp, path)  # atomic: a killed rewrite leaves the compressed file, rewritten on the next prepare
    done += 1
  return done
