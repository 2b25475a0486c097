"""The grain pipeline: determinism, worker independence, Orbax iterator checkpoints, bad files, sharding, eval."""

import logging
import os

import numpy as np
import pytest

from input_pipeline import pipeline, samplers
from input_pipeline import video as video_lib
from input_pipeline.annotations import VideoRecord

NUM_GOOD = 8


class IndexBuilder:
  """Test builder: 4 consecutive frames; returns the record index so tests can see which records were used."""

  min_frames = 8

  def build(self, reader, record, rng):
    idx = samplers.consecutive_indices(reader.num_frames, 4, 1, rng)
    clip = reader.read(idx)
    return {"index": np.int32(record["index"]), "label": np.int32(record["label"]),
            "mean": np.float32(clip.mean())}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  """8 good 24-frame 32x32 mp4s (frames brightness-coded by video), plus corrupt / empty / truncated / short files."""
  d = tmp_path_factory.mktemp("pipeline_videos")
  rng = np.random.default_rng(0)
  good = []
  for i in range(NUM_GOOD):
    frames = rng.integers(0, 60, size=(24, 32, 32, 3), dtype=np.uint8) + np.uint8(20 * i)
    p = str(d / f"v{i}.mp4")
    video_lib.write_video(p, frames)
    good.append(VideoRecord(path=p, label=i % 3, name=f"v{i}"))
  (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(200))
  (d / "empty.mp4").write_bytes(b"")
  data = open(good[0].path, "rb").read()
  (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
  video_lib.write_video(str(d / "short.mp4"), rng.integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8))
  bad = [VideoRecord(path=str(d / n), label=0, name=n) for n in ("corrupt.mp4", "empty.mp4", "truncated.mp4",
                                                                 "short.mp4")]
  return {"good": good, "bad": bad}


def _builder():
  return pipeline.SupervisedTrainBuilder(clip_len=4, stride=2, short_side_sizes=(32, 40), crop_size=24, flip_p=0.5,
                                         jitter=(0.4, 0.4, 0.4, 0.1, 0.8))


def _take(ds, n):
  it = iter(ds)
  out = [next(it) for _ in range(n)]
  if hasattr(it, "close"):
    it.close()
  return out


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_train_batches_shapes_and_determinism(videos):
  recs = videos["good"]
  a = _take(pipeline.make_train_dataset(recs, _builder(), batch_size=3, seed=7), 4)
  b = _take(pipeline.make_train_dataset(recs, _builder(), batch_size=3, seed=7), 4)
  c = _take(pipeline.make_train_dataset(recs, _builder(), batch_size=3, seed=8), 4)
  assert a[0]["video"].shape == (3, 4, 24, 24, 3) and a[0]["video"].dtype == np.float32
  assert a[0]["label"].dtype == np.int32 and a[0]["num_replaced"].shape == (3,)
  _assert_batches_equal(a, b)
  assert not all(np.array_equal(x["video"], y["video"]) for x, y in zip(a, c))


def test_epochs_are_reshuffled_and_complete(videos):
  recs = videos["good"]
  batches = _take(pipeline.make_train_dataset(recs, IndexBuilder(), batch_size=4, seed=1, num_epochs=2), 4)
  idx = np.concatenate([b["index"] for b in batches])
  assert sorted(idx[:8].tolist()) == list(range(8)) and sorted(idx[8:].tolist()) == list(range(8))
  assert idx[:8].tolist() != idx[8:].tolist()  # a new order each epoch


def test_workers_do_not_change_the_output(videos):
  recs = videos["good"]
  a = _take(pipeline.make_train_dataset(recs, _builder(), batch_size=2, seed=3, num_workers=0), 3)
  b = _take(pipeline.make_train_dataset(recs, _builder(), batch_size=2, seed=3, num_workers=2), 3)
  _assert_batches_equal(a, b)


def test_iterator_checkpoint_restore_through_workers(videos, tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  ds = pipeline.make_train_dataset(videos["good"], _builder(), batch_size=2, seed=5, num_workers=2)
  it = iter(ds)
  for _ in range(3):
    next(it)
  mngr = ocp.CheckpointManager(str(tmp_path / "ckpt"))
  mngr.save(3, args=ocp.args.Composite(data=pipeline.iterator_save_args(it)))
  mngr.wait_until_finished()
  expected = [next(it) for _ in range(2)]
  it.close()
  fresh = iter(ds)
  mngr.restore(3, args=ocp.args.Composite(data=pipeline.iterator_restore_args(fresh)))
  got = [next(fresh) for _ in range(2)]
  fresh.close()
  mngr.close()
  _assert_batches_equal(expected, got)


def test_bad_files_are_replaced_counted_and_warned_once(videos, caplog):
  pipeline.reset_bad_input_stats()
  good, bad = videos["good"], videos["bad"]
  recs = good + bad  # indices 8..11 are bad
  with caplog.at_level(logging.WARNING, logger="input_pipeline.pipeline"):
    batches = _take(pipeline.make_train_dataset(recs, IndexBuilder(), batch_size=6, seed=2, num_epochs=2), 4)
  idx = np.concatenate([b["index"] for b in batches])
  assert idx.max() < NUM_GOOD  # only good records were built
  replaced = int(sum(b["num_replaced"].sum() for b in batches))
  assert replaced >= 2 * len(bad)  # every bad record is met once per epoch
  stats = pipeline.bad_input_stats()
  assert stats["replaced"] == replaced
  assert set(stats["bad_paths"]) == {r.path for r in bad}
  assert "the builder needs >= 8" in stats["bad_paths"][bad[3].path]  # the short video
  for r in bad:  # named once per path, despite being met in both epochs
    assert sum(r.path in m for m in caplog.messages) == 1, r.path


def test_replacement_is_deterministic(videos):
  recs = videos["good"] + videos["bad"]
  a = _take(pipeline.make_train_dataset(recs, IndexBuilder(), batch_size=6, seed=4), 2)
  b = _take(pipeline.make_train_dataset(recs, IndexBuilder(), batch_size=6, seed=4), 2)
  _assert_batches_equal(a, b)


def test_all_bad_raises(videos):
  ds = pipeline.make_train_dataset(videos["bad"], IndexBuilder(), batch_size=2, seed=0, max_attempts=5)
  with pytest.raises(Exception, match="consecutive records could not be used"):
    _take(ds, 1)


@pytest.mark.parametrize("num_epochs", [None, 2])
def test_process_split_rebuilds_the_single_process_global_batches(videos, num_epochs):
  """2 processes x 2 rows = the 1-process batches of 4 (same examples, same augmentation), disjoint per step."""
  recs = videos["good"]
  single = _take(pipeline.make_train_dataset(recs, _builder(), batch_size=4, seed=3, num_epochs=num_epochs), 4)
  parts = [_take(pipeline.make_train_dataset(recs, _builder(), batch_size=2, seed=3, num_epochs=num_epochs,
                                             process_index=p, process_count=2), 4) for p in range(2)]
  joined = [{k: np.concatenate([parts[0][g][k], parts[1][g][k]]) for k in single[g]} for g in range(4)]
  _assert_batches_equal(single, joined)
  if num_epochs is not None:  # a finite stream: both processes stop after the same number of batches
    counts = [len(list(pipeline.make_train_dataset(recs, _builder(), batch_size=2, seed=3, num_epochs=1,
                                                   process_index=p, process_count=2))) for p in range(2)]
    assert counts == [2, 2]
  with pytest.raises(ValueError, match="process_index"):
    pipeline.make_train_dataset(recs, _builder(), batch_size=2, seed=0, process_index=2, process_count=2)


def test_eval_shards_padded_to_the_same_number_of_batches(videos):
  """Multi-process feature extraction: shards of 5 records (3 and 2) both give 2 batches of 2."""
  recs = videos["good"][:5]
  valid = [[b["valid"].tolist() for b in pipeline.make_eval_dataset(recs, IndexBuilder(), batch_size=2, shard_index=k,
                                                                     shard_count=2, num_batches=2)] for k in range(2)]
  assert valid == [[[True, True], [True, False]], [[True, True], [False, False]]]
  with pytest.raises(ValueError, match="num_batches=1 of 2 cannot hold"):
    pipeline.make_eval_dataset(recs, IndexBuilder(), batch_size=2, num_batches=1)


@pytest.mark.parametrize("shard_count", [3])
def test_shards_only_see_their_records(videos, shard_count):
  recs = videos["good"]
  seen_all = set()
  for k in range(shard_count):
    own = set(range(k, NUM_GOOD, shard_count))
    batches = _take(pipeline.make_train_dataset(recs, IndexBuilder(), batch_size=2, seed=0, shard_index=k,
                                                shard_count=shard_count), 6)
    seen = set(np.concatenate([b["index"] for b in batches]).tolist())
    assert seen == own, (k, seen)
    seen_all |= seen
  assert seen_all == set(range(NUM_GOOD))
  with pytest.raises(ValueError, match="shard_index"):
    pipeline.make_train_dataset(recs, IndexBuilder(), batch_size=2, seed=0, shard_index=3, shard_count=3)


def test_eval_dataset_in_order_padded_with_valid_mask(videos):
  recs = videos["good"][:5] + videos["bad"][:1] + videos["good"][5:]  # a corrupt file at index 5
  builder = pipeline.MultiViewTestBuilder(clip_len=4, stride=2, num_clips=2, short_side=32, crop_size=24)
  batches = list(pipeline.make_eval_dataset(recs, builder, batch_size=4))
  assert len(batches) == 3  # 9 records -> 3 batches of 4 (3 padded slots)
  assert batches[0]["video"].shape == (4, 6, 4, 24, 24, 3)
  index = np.concatenate([b["index"] for b in batches])
  valid = np.concatenate([b["valid"] for b in batches])
  np.testing.assert_array_equal(index[:9], np.arange(9))
  np.testing.assert_array_equal(valid, [True] * 5 + [False] + [True] * 3 + [False] * 3)
  labels = np.concatenate([b["label"] for b in batches])
  np.testing.assert_array_equal(labels[:9], [r.label for r in recs])
  # Sharded evaluation: each shard's valid indices are exactly its own records.
  for k in range(2):
    got = [b for b in pipeline.make_eval_dataset(recs, builder, batch_size=2, shard_index=k, shard_count=2)]
    idx = np.concatenate([b["index"] for b in got])[np.concatenate([b["valid"] for b in got])]
    assert set(idx.tolist()) == set(range(k, 9, 2)) - {5}


def test_clip_reader_flow_and_min_frames(videos):
  a, b = videos["good"][0].path, videos["good"][1].path
  reader = pipeline.ClipReader(a, b)
  assert reader.num_frames == 24 and reader.has_flow
  rgb = reader.read([3, 1, 3])
  np.testing.assert_array_equal(rgb[0], rgb[2])
  np.testing.assert_array_equal(rgb, video_lib.decode_frames(a, [3, 1, 3]))
  np.testing.assert_array_equal(reader.read_flow([2]), video_lib.decode_frames(b, [2]))
  short = pipeline.ClipReader(a, videos["bad"][3].path)
  assert short.num_frames == 4  # min over RGB and flow
  with pytest.raises(pipeline.BadVideoError, match="no flow_path"):
    pipeline.ClipReader(a).read_flow([0])
  with pytest.raises(video_lib.VideoDecodeError, match="corrupt.mp4"):
    pipeline.ClipReader(videos["bad"][0].path).read([0])


def test_clip_reader_names_in_memory_bytes(videos):
  """Errors about encoded bytes (ArrayRecord records) name the record and the stream, empty input included."""
  good = open(videos["good"][0].path, "rb").read()
  corrupt = open(videos["bad"][0].path, "rb").read()
  with pytest.raises(video_lib.VideoDecodeError, match=r"^rec\.mp4 \(rgb\): empty input \(0 bytes\)$"):
    pipeline.ClipReader(b"", name="rec.mp4").num_frames
  with pytest.raises(video_lib.VideoDecodeError, match=r"^rec\.mp4 \(flow\): cannot open as a video container"):
    pipeline.ClipReader(good, corrupt, name="rec.mp4").read_flow([0])
  with pytest.raises(video_lib.VideoDecodeError, match=r"^rec\.mp4 \(rgb\): frame index 99 out of range"):
    pipeline.ClipReader(good, name="rec.mp4").read([99])


def test_clip_reader_resolves_each_file_once(videos, monkeypatch):
  """Counting and reading share one resolution per stream; paths stay paths (no whole-file read, no digest)."""
  a, b = videos["good"][0].path, videos["good"][1].path
  calls = []
  original = video_lib._resolve
  monkeypatch.setattr(video_lib, "_resolve", lambda x, name=None: calls.append(x) or original(x, name))
  reader = pipeline.ClipReader(a, b)
  assert reader.num_frames == 24
  reader.read([0, 3])
  reader.read([5])
  reader.read_flow([1])
  assert calls == [a, b]


def test_source_is_picklable_with_stable_repr(videos):
  import pickle

  src = pipeline.VideoRecordSource(videos["good"])
  copy = pickle.loads(pickle.dumps(src))
  assert repr(copy) == repr(src) and len(copy) == NUM_GOOD
  assert copy[3] == src[3] and src[3].label == videos["good"][3].label and src[3]["index"] == 3
