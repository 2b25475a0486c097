"""ArrayRecord shards: record format, round trip, pipeline equivalence with files, prepare_dataset script."""

import importlib.util
import json
import os
import pickle

import numpy as np
import pytest

from input_pipeline import annotations, pipeline, shards
from input_pipeline import video as video_lib
from input_pipeline.annotations import VideoRecord

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """6 tiny mp4s (frames 24 / 20 / ...) + a flow video for the first, and a corrupt file, with a JSON list."""
  d = tmp_path_factory.mktemp("shard_videos")
  rng = np.random.default_rng(0)
  recs = []
  for i in range(6):
    n = 24 - (i % 3) * 2
    video_lib.write_video(str(d / "videos" / f"c{i % 2}" / f"v{i}.mp4"),
                          rng.integers(0, 255, size=(n, 32, 32, 3), dtype=np.uint8))
    recs.append(VideoRecord(path=str(d / "videos" / f"c{i % 2}" / f"v{i}.mp4"), label=i % 2, name=f"c{i % 2}/v{i}"))
  (d / "videos" / "bad.mp4").write_bytes(b"not a video at all" * 4)
  ann = d / "train.json"
  annotations.write_json_list(recs + [VideoRecord(path="", label=0, name="bad")], ann)
  return {"dir": d, "records": recs, "annotations": str(ann)}


def test_record_encode_decode_round_trip():
  rec = shards.encode_record(b"\x01\x02video", name="a/b", label=3, num_frames=17, path="/x/a/b.mp4",
                             flow_bytes=b"flow!", flow_num_frames=16)
  out = shards.decode_record(rec)
  assert out["video_bytes"] == b"\x01\x02video" and out["flow_bytes"] == b"flow!"
  assert (out["name"], out["label"], out["num_frames"], out["flow_num_frames"]) == ("a/b", 3, 17, 16)
  assert shards.decode_record(shards.encode_record(b"v", name="n", label=0, num_frames=1))["flow_bytes"] is None
  with pytest.raises(shards.ShardFormatError, match="not an FVR1"):
    shards.decode_record(b"garbage bytes")
  with pytest.raises(shards.ShardFormatError, match="header says"):
    shards.decode_record(rec[:-1])


def test_write_and_read_shards(data, tmp_path):
  recs = list(data["records"])
  recs[0] = VideoRecord(path=recs[0].path, label=recs[0].label, name=recs[0].name, flow_path=recs[1].path)
  bad = VideoRecord(path=str(data["dir"] / "videos" / "bad.mp4"), label=1, name="bad")
  index = shards.write_shards(recs + [bad], str(tmp_path / "ar"), num_shards=2)
  assert index["num_records"] == 6 and index["records_per_shard"] == [3, 3]
  assert [s["path"] for s in index["skipped"]] == [bad.path]
  src = shards.ArrayRecordVideoSource(str(tmp_path / "ar"))
  assert len(src) == 6
  by_name = {src[i]["name"]: src[i] for i in range(len(src))}
  for r in recs:
    got = by_name[r.name]
    assert got["video_bytes"] == open(r.path, "rb").read()
    assert got["label"] == r.label and got["path"] == r.path
    assert got["num_frames"] == video_lib.video_num_frames(r.path)
  assert by_name[recs[0].name]["flow_bytes"] == open(recs[1].path, "rb").read()
  assert by_name[recs[0].name]["flow_num_frames"] == 22
  reader = pipeline.reader_for(by_name[recs[0].name])
  assert reader.num_frames == 22  # min(24 RGB, 22 flow)
  np.testing.assert_array_equal(reader.read([0, 5]), video_lib.decode_frames(recs[0].path, [0, 5]))
  copy = pickle.loads(pickle.dumps(src))
  assert repr(copy) == repr(src) and copy[2]["name"] == src[2]["name"]


def test_pipeline_over_shards_equals_pipeline_over_files(data, tmp_path):
  recs = data["records"]
  shards.write_shards(recs, str(tmp_path / "ar1"), num_shards=1)  # one shard keeps the file order
  src = shards.ArrayRecordVideoSource(str(tmp_path / "ar1"))
  builder = pipeline.SupervisedTrainBuilder(clip_len=4, stride=2, short_side_sizes=(32,), crop_size=24,
                                            jitter=(0.3, 0.3, 0.3, 0.05, 1.0))
  kw = dict(batch_size=2, seed=11)
  a = list(pipeline.make_train_dataset(recs, builder, num_epochs=1, **kw))
  b = list(pipeline.make_train_dataset(src, builder, num_epochs=1, **kw))
  assert len(a) == len(b) == 3
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_prepare_dataset_script(data, tmp_path):
  spec = importlib.util.spec_from_file_location("prepare_dataset", os.path.join(ROOT, "scripts", "prepare_dataset.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  out = tmp_path / "prepared"
  rc = mod.main(["--annotations", data["annotations"], "--data_root", str(data["dir"] / "videos"), "--out", str(out),
                 "--format", "json", "--num_shards", "3", "--path_template", "{name}.mp4"])
  assert rc == 0
  meta = json.load(open(out / "videos.json"))
  assert meta["num_records"] == 6 and len(meta["shards"]) == 3 and len(meta["skipped"]) == 1
  src = shards.ArrayRecordVideoSource(str(out))
  assert sorted(src[i]["name"] for i in range(len(src))) == sorted(r.name for r in data["records"])
  assert {src[i]["name"]: src[i]["label"] for i in range(len(src))} == {r.name: r.label for r in data["records"]}
