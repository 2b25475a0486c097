"""The prepared-clip format: JPEG frames (simplejpeg) in a TFDS ArrayRecord dataset, read without TensorFlow, only the
sampled frames decoded; bad videos named and skipped; preparation resumes from its frame cache; a CtP run trains
from it."""

import json
import os
import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("simplejpeg")
tfds = pytest.importorskip("tensorflow_datasets")

from conftest import DATA_SHRINK, run_main  # noqa: E402
from input_pipeline import jpeg_frames, pipeline, tfds_source  # noqa: E402
from input_pipeline import video as video_lib  # noqa: E402
from input_pipeline.annotations import VideoRecord, write_json_list  # noqa: E402


def _frames(n=12, h=48, w=64, seed=0):
  """Smooth moving gradients (JPEG and H.264 keep them to a few grey levels)."""
  yy, xx = np.mgrid[0:h, 0:w]
  t = np.arange(n)[:, None, None]
  chans = [(xx * 2 + 5 * t + 40 * seed) % 200, (yy * 3 + 3 * t) % 200, (xx + yy + 7 * t) % 200]
  return (np.stack(chans, -1) + 20).astype(np.uint8)


def test_encode_decode_roundtrip_and_reader_decodes_only_asked_frames(monkeypatch):
  frames = _frames()
  enc = jpeg_frames.encode_frames(frames, short_side=32, quality=95)
  assert len(enc) == 12 and all(e[:2] == b"\xff\xd8" for e in enc)
  assert jpeg_frames.decode_image(enc[0]).shape == (32, 43, 3)
  full = jpeg_frames.encode_frames(frames, short_side=None, quality=95)
  dec = jpeg_frames.decode_image(full[3])
  assert dec.shape == (48, 64, 3) and np.abs(dec.astype(int) - frames[3]).mean() < 3

  import simplejpeg

  decoded = []
  real = simplejpeg.decode_jpeg
  monkeypatch.setattr(simplejpeg, "decode_jpeg", lambda d, **kw: decoded.append(d) or real(d, **kw))
  reader = jpeg_frames.JpegClipReader(full, name="v")
  clip = reader.read([5, 1, 5, 7])
  assert clip.shape == (4, 48, 64, 3) and np.array_equal(clip[0], clip[2])
  assert len(decoded) == 3  # frames 1, 5, 7: each distinct frame once, nothing else
  assert np.abs(clip[1].astype(int) - frames[1]).mean() < 3
  for idx in ([1, 5, 7], [7, 5, 1], [3]):  # decoded in place, gathered only when needed: the same frames
    np.testing.assert_array_equal(reader.read(idx), np.stack([jpeg_frames.decode_image(full[i]) for i in idx]))
  mixed = jpeg_frames.JpegClipReader([full[0], enc[1], b"\xff\xd8broken"], name="m")
  with pytest.raises(video_lib.VideoDecodeError, match="m \\(rgb\\): frame 1 is \\(32, 43, 3\\), frame 0 is"):
    mixed.read([0, 1])
  with pytest.raises(video_lib.VideoDecodeError, match="m \\(rgb\\) frame 2: not a decodable image"):
    mixed.read([0, 2])
  with pytest.raises(video_lib.VideoDecodeError, match="v \\(rgb\\): frame indices"):
    reader.read([12])
  with pytest.raises(pipeline.BadVideoError, match="no flow frames"):
    reader.read_flow([0])


def test_decode_image_png_fallback_and_bad_bytes():
  import cv2

  frame = _frames(1)[0]
  ok, png = cv2.imencode(".png", frame[..., ::-1])
  assert ok and np.array_equal(jpeg_frames.decode_image(png.tobytes()), frame)
  with pytest.raises(video_lib.VideoDecodeError, match="clip7: not a decodable image"):
    jpeg_frames.decode_image(b"\xff\xd8garbage", "clip7")
  with pytest.raises(video_lib.VideoDecodeError, match="clip8"):
    jpeg_frames.decode_image(b"nothing", "clip8")


@pytest.fixture(scope="module")
def json_dataset(tmp_path_factory):
  """3 small mp4 videos + one corrupt file, as CtP JSON annotations (source=json)."""
  root = tmp_path_factory.mktemp("tfds_json")
  recs = []
  for i in range(3):
    path = root / "videos" / f"v{i}.mp4"
    path.parent.mkdir(exist_ok=True)
    video_lib.write_video(path, _frames(10, 48, 64, seed=i), fps=25)
    recs.append(VideoRecord(path=str(path), label=i % 2, name=f"v{i}"))
  bad = root / "videos" / "broken.mp4"
  bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
  recs.insert(1, VideoRecord(path=str(bad), label=0, name="broken"))
  write_json_list(recs, root / "train.json")
  write_json_list(recs[:2], root / "test.json")
  return root


def _prepare_json(root, data_dir, name="json_small"):
  from fedvssl_jax import tfds_videos

  return tfds_videos.prepare("synthetic", name=name, data_dir=str(data_dir), manual_dir=str(root), source="json",
                             train_annotations=str(root / "train.json"), test_annotations=str(root / "test.json"),
                             path_template="videos/{name}.mp4", short_side=32)


def test_prepare_skips_bad_videos_resumes_and_reads_without_tensorflow(json_dataset, tmp_path, monkeypatch):
  data_dir = tmp_path / "tfds"
  out = _prepare_json(json_dataset, data_dir)
  assert "tensorflow" not in sys.modules
  cache = data_dir / "downloads" / "fedvssl_videos_frames" / "json_small"
  skipped = json.loads((cache / "skipped_train.json").read_text())
  assert [s["name"] for s in skipped] == ["broken"] and "broken.mp4" in skipped[0]["path"]

  # the records are stored uncompressed (TFDS writes zstd; JPEG frames barely compress)
  from array_record.python import array_record_module

  shards = [n for n in os.listdir(out) if ".array_record-" in n]
  assert shards and all("uncompressed" in array_record_module.ArrayRecordReader(os.path.join(out, n))
                        .writer_options_string() for n in shards)
  # the standard TFDS reader (full decoding) and our grain source (clip decoding) see the same 3 videos
  ds = tfds.data_source("fedvssl_videos/json_small", split="train", data_dir=str(data_dir))
  assert len(ds) == 3
  src = tfds_source.TfdsVideoSource("fedvssl_videos/json_small", "train", data_dir=str(data_dir))
  assert len(src) == 3 and len(src.class_names) == 2
  by_name = {src[i]["name"]: src[i] for i in range(3)}
  assert sorted(by_name) == ["v0", "v1", "v2"] and by_name["v2"]["label"] == 0 and by_name["v1"]["label"] == 1
  rec = by_name["v1"]
  assert rec["num_frames"] == 10
  clip = pipeline.reader_for(rec).read([0, 9])
  ref = _frames(10, 48, 64, seed=1)
  assert clip.shape == (2, 32, 43, 3)
  small = jpeg_frames.decode_image(jpeg_frames.encode_frames(ref[9:], 32, 100)[0])
  assert np.abs(clip[1].astype(int) - small).mean() < 8  # H.264 + JPEG round trips of the same frame
  assert "tensorflow" not in sys.modules
  src2 = pickle.loads(pickle.dumps(src))
  assert src2[0]["name"] == src[0]["name"] and repr(src2) == repr(src)

  # resumable: with the ArrayRecord files gone, a rerun re-encodes nothing (every finished video is cached)
  import shutil

  shutil.rmtree(out)
  encoded = []

  def no_encoding(path, *args):
    encoded.append(os.path.basename(path))
    raise video_lib.VideoDecodeError(f"{path}: not cached")

  monkeypatch.setattr(jpeg_frames, "_encode_video", no_encoding)
  out2 = _prepare_json(json_dataset, data_dir)
  assert set(encoded) == {"broken.mp4"}  # only the bad video is tried again
  assert len(tfds_source.TfdsVideoSource("fedvssl_videos/json_small", "train", data_dir=str(data_dir))) == 3
  assert len(tfds_source.TfdsVideoSource("fedvssl_videos/json_small", "test", data_dir=str(data_dir))) == 1
  assert out2 == out


def test_uncompress_array_records_keeps_the_records(tmp_path):
  from array_record.python import array_record_module
  from fedvssl_jax import tfds_videos

  path = str(tmp_path / "ds-train.array_record-00000-of-00001")
  records = [bytes([i]) * (1000 + 37 * i) for i in range(40)]
  writer = array_record_module.ArrayRecordWriter(path, "group_size:1")  # TFDS's options: zstd by default
  for r in records:
    writer.write(r)
  writer.close()
  assert "zstd" in array_record_module.ArrayRecordReader(path).writer_options_string()
  assert tfds_videos.uncompress_array_records(str(tmp_path)) == 1
  reader = array_record_module.ArrayRecordReader(path)
  assert "uncompressed" in reader.writer_options_string().split(",")
  assert reader.read(list(range(40))) == records
  assert tfds_videos.uncompress_array_records(str(tmp_path)) == 0  # already done: left as it is
  assert sorted(os.listdir(tmp_path)) == ["ds-train.array_record-00000-of-00001"]


def test_tfds_source_in_the_grain_pipeline(json_dataset, tmp_path):
  from input_pipeline import benchmark

  data_dir = tmp_path / "tfds"
  _prepare_json(json_dataset, data_dir)
  src = tfds_source.TfdsVideoSource("fedvssl_videos/json_small", "train[:2]", data_dir=str(data_dir))
  builder = benchmark.CtPLikeBuilder(clip_len=4, crop=24, short_side_sizes=(28, 32))
  it = iter(pipeline.make_train_dataset(src, builder, batch_size=2, seed=0, num_workers=0))
  batch = next(it)
  assert batch["video"].shape == (2, 4, 24, 24, 3) and batch["video"].dtype == np.float32
  with pytest.raises(Exception, match="no_such_ds"):
    tfds_source.TfdsVideoSource("no_such_ds", "train", data_dir=str(data_dir))


def test_benchmark_tiles_a_few_videos_to_a_real_datasets_index_count(json_dataset, tmp_path):
  """grain's shuffle costs ~50 / n ms per element over n records: the benchmark's dozen videos are listed
  `MIN_SHUFFLED_RECORDS` times over so the shuffle costs what a real dataset pays; each record is the source's."""
  from input_pipeline import benchmark

  data_dir = tmp_path / "tfds"
  _prepare_json(json_dataset, data_dir)
  src = tfds_source.TfdsVideoSource("fedvssl_videos/json_small", "train[:2]", data_dir=str(data_dir))
  tiled = benchmark.TiledSource(src, min_len=7)
  assert len(tiled) == 8  # whole copies of the 2 records
  for i in range(len(tiled)):
    a, b = tiled[i], src[i % 2]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) if isinstance(a[k], np.ndarray) else a[k] == b[k]
                                        for k in a)
  builder = benchmark.CtPUint8Builder(clip_len=4, crop=24, short_side_sizes=(28, 32))
  clips_per_s, clips_per_cpu_s = benchmark.pipeline_clips_per_s(src, builder, 0, 0.5, batch_size=2)
  assert clips_per_s > 0 and (clips_per_cpu_s is None or clips_per_cpu_s > 0)
  costs = benchmark.jpeg_per_clip_ms(src, {"augment_uint8": builder}, clips=2)
  assert set(costs) == {"read_record", "decode", "augment_uint8", "ctp_patch_mask"}  # PatchMask on the uint8 clip
  assert set(benchmark.shuffle_ms_per_element(sizes=(12, 240_000), calls=5)) == {"12", "240000"}


def test_benchmark_per_core_divides_by_the_busy_cores():
  """A grain worker whose threads kept ~2 cores busy is not one core's rate (the old clips/s / workers was)."""
  from input_pipeline import benchmark

  one_worker_two_cores = benchmark._entry("jpeg_uint8", "ctp", 1, (200.0, 100.0))
  assert one_worker_two_cores["cores"] == 2.0 and one_worker_two_cores["clips_per_s_per_core"] == 100.0
  in_process = benchmark._entry("jpeg_uint8", "ctp", 0, (120.0, 125.0))  # under one core busy: counted as one
  assert in_process["cores"] == 1.0 and in_process["clips_per_s_per_core"] == 120.0
  assert benchmark._entry("mp4", "ctp", 2, (8.0, None))["clips_per_s_per_core"] == 4.0  # without psutil


def test_ctp_demo_trains_from_tfds_prepared_data(synthetic_videos, tmp_path):
  workdir = tmp_path / "run"
  run_main("--config=configs/ctp.py:demo,tfds", f"--workdir={workdir}", *DATA_SHRINK,
           f"--config.data.cache_dir={synthetic_videos}", f"--config.data.data_dir={tmp_path / 'tfds'}",
           "--config.data.tfds_name=fedvssl_videos/synthetic_test", "--config.batch_size=4", "--config.num_steps=2",
           "--config.log_every=1", "--config.knn.enabled=False", "--config.task.clip_len=8",
           "--config.task.crop_size=32", "--config.task.short_side_sizes=(32,40)",
           "--config.task.patch_mask.scales=(6,8,12)")
  results = json.loads((workdir / "results.json").read_text())
  assert results["steps"] == 2
  assert os.path.isdir(tmp_path / "tfds" / "fedvssl_videos" / "synthetic_test" / "1.0.0")
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert all(np.isfinite(l["loss"]) for l in lines if "loss" in l)
