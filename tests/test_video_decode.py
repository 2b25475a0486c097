"""Frame-exact decoding of H.264 (GOPs, B-frames, VFR), other containers and CtP zips; errors name the file."""

import os
import zipfile

import cv2
import numpy as np
import pytest

from input_pipeline import video

H, W = 48, 80
BITS = 8  # frame index coded as 8 black / white blocks in the top half


def coded_frames(n):
  """uint8 [n, H, W, 3]: bit b of the frame index is a white block b (10 px wide) in the top half."""
  frames = np.zeros((n, H, W, 3), np.uint8)
  for i in range(n):
    for b in range(BITS):
      if (i >> b) & 1:
        frames[i, :24, b * 10:(b + 1) * 10] = 255
    frames[i, 24:] = (i * 37) % 256  # changing bottom half, so frames differ beyond the code
  return frames


def read_code(frame):
  return sum(1 << b for b in range(BITS) if frame[4:20, b * 10 + 2:(b + 1) * 10 - 2].mean() > 127)


def codes(frames):
  return [read_code(f) for f in frames]


@pytest.fixture(scope="module")
def frames60():
  return coded_frames(60)


@pytest.mark.parametrize("gop,bframes", [(5, 2), (12, 3), (None, 0)])
def test_h264_arbitrary_indices(tmp_path, frames60, gop, bframes):
  path = tmp_path / "v.mp4"
  video.write_video(path, frames60, gop=gop, bframes=bframes, crf=10)
  assert video.video_num_frames(path) == 60
  rng = np.random.default_rng(0)
  index_sets = [
      [0], [59], [3, 7], [4, 5, 6, 10, 11],  # across GOP boundaries for gop=5
      [50, 2, 2, 31, 7, 7, 7],  # unsorted with repeats
      list(range(59, -1, -1)),  # everything, reversed
      rng.integers(0, 60, size=12).tolist(),
  ]
  for idx in index_sets:
    out = video.decode_frames(path, idx)
    assert out.shape == (len(idx), H, W, 3) and out.dtype == np.uint8
    assert codes(out) == list(idx)
  # numpy indices work too
  assert codes(video.decode_frames(str(path), np.array([9, 1], np.int32))) == [9, 1]


def test_decoded_pixels_are_rgb_and_close(tmp_path):
  frames = np.zeros((4, H, W, 3), np.uint8)
  frames[..., 0] = 200  # pure red
  path = tmp_path / "red.mp4"
  video.write_video(path, frames, crf=0)
  out = video.decode_frames(path, [1])
  assert abs(int(out[0, ..., 0].mean()) - 200) < 6
  assert out[0, ..., 1].mean() < 10 and out[0, ..., 2].mean() < 10


def test_seek_starts_at_nearest_keyframe(tmp_path, frames60, monkeypatch):
  path = tmp_path / "g.mp4"
  video.write_video(path, frames60, gop=10, bframes=2, crf=10)
  index = video.frame_index(path)
  assert index.seekable and len(index.keyframe_pts) == 6
  seeks = []
  original = video._decode_range

  def spy(src, idx, pts_to_index, wanted, seek_pts, last_pts):
    seeks.append(seek_pts)
    return original(src, idx, pts_to_index, wanted, seek_pts, last_pts)

  monkeypatch.setattr(video, "_decode_range", spy)
  assert codes(video.decode_frames(path, [47, 45])) == [47, 45]
  assert seeks == [int(index.pts[40])]  # keyframe at frame 40, one attempt


def test_variable_frame_rate(tmp_path, frames60):
  rng = np.random.default_rng(1)
  pts = np.cumsum(np.r_[0, rng.choice([13, 40, 77], size=59)])
  path = tmp_path / "vfr.mp4"
  video.write_video(path, frames60, gop=6, bframes=2, crf=10, pts=pts)
  index = video.frame_index(path)
  gaps = np.diff(index.pts)
  assert len(set(gaps.tolist())) > 1  # really irregular timestamps
  assert video.video_num_frames(path) == 60
  idx = [59, 0, 33, 34, 12, 12]
  assert codes(video.decode_frames(path, idx)) == idx


@pytest.mark.parametrize("suffix,codec", [(".mkv", "libx264"), (".avi", "mpeg4"), (".webm", "libvpx-vp9")])
def test_other_containers(tmp_path, frames60, suffix, codec):
  path = tmp_path / f"v{suffix}"
  kwargs = {"crf": None} if codec != "libx264" else {}
  frames = frames60[:24]
  video.write_video(path, frames, codec=codec, gop=8, **kwargs)
  assert video.video_num_frames(path) == 24
  assert codes(video.decode_frames(path, [20, 3, 9])) == [20, 3, 9]


def test_stream_without_timestamps_is_decoded_from_the_start(tmp_path, frames60):
  path = tmp_path / "raw.h264"  # Annex-B elementary stream: packets carry no pts
  video.write_video(path, frames60[:30], gop=5, bframes=2, crf=10)
  index = video.frame_index(path)
  assert not index.seekable and index.num_frames == 30
  assert codes(video.decode_frames(path, [29, 3, 3, 17])) == [29, 3, 3, 17]
  with pytest.raises(video.VideoDecodeError, match="raw.h264.*out of range"):
    video.decode_frames(path, [30])


def test_bytes_input(tmp_path, frames60):
  path = tmp_path / "v.mp4"
  video.write_video(path, frames60[:20], gop=5, bframes=2, crf=10)
  data = path.read_bytes()
  assert video.video_num_frames(data) == 20
  assert codes(video.decode_frames(data, [15, 2, 2])) == [15, 2, 2]
  zpath = tmp_path / "v.zip"
  video.write_frame_zip(zpath, frames60[:20])
  zdata = zpath.read_bytes()
  assert zdata[:2] == b"PK"
  assert video.video_num_frames(zdata) == 20
  assert codes(video.decode_frames(memoryview(zdata), [19, 0])) == [19, 0]


def test_zip_frames(tmp_path, frames60):
  path = tmp_path / "clip.zip"
  video.write_frame_zip(path, frames60[:30])
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    assert names[0] == "img_00001.jpg" and names[-1] == "img_00030.jpg"
    assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
  assert video.video_num_frames(path) == 30
  idx = [29, 0, 14, 14, 3]
  out = video.decode_frames(path, idx)
  assert out.shape == (5, H, W, 3)
  assert codes(out) == idx
  # RGB order (cv2 decodes BGR): a red frame stays red
  red = np.zeros((1, H, W, 3), np.uint8)
  red[..., 0] = 220
  video.write_frame_zip(tmp_path / "red.zip", red)
  r = video.decode_frames(tmp_path / "red.zip", [0])[0]
  assert r[..., 0].mean() > 200 and r[..., 2].mean() < 20


def test_zip_decodes_only_the_sampled_jpegs(tmp_path, frames60):
  path = tmp_path / "bad_one.zip"
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
    for i in range(6):
      if i == 4:
        zf.writestr(f"img_{i + 1:05d}.jpg", b"not a jpeg")
      else:
        ok, enc = cv2.imencode(".jpg", frames60[i][..., ::-1])
        assert ok
        zf.writestr(f"img_{i + 1:05d}.jpg", enc.tobytes())
  assert codes(video.decode_frames(path, [5, 0, 3])) == [5, 0, 3]
  with pytest.raises(video.VideoDecodeError, match="img_00005.jpg"):
    video.decode_frames(path, [4])
  n, error = video.scan_video(path)  # every JPEG decoded: the frames before the bad one are usable
  assert n == 4 and "img_00005.jpg" in error


def test_errors_name_the_file(tmp_path, frames60):
  empty = tmp_path / "empty.mp4"
  empty.write_bytes(b"")
  garbage = tmp_path / "garbage.mp4"
  garbage.write_bytes(np.random.default_rng(0).bytes(4000))
  good = tmp_path / "good.mp4"
  video.write_video(good, frames60, gop=5, bframes=2)
  data = good.read_bytes()
  truncated = tmp_path / "truncated.mp4"  # moov atom at the end is cut off
  truncated.write_bytes(data[:len(data) // 2])
  bad_zip = tmp_path / "bad.zip"
  bad_zip.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
  no_frames_zip = tmp_path / "noframes.zip"
  with zipfile.ZipFile(no_frames_zip, "w") as zf:
    zf.writestr("readme.txt", "hi")
  for path in (empty, garbage, truncated, bad_zip, no_frames_zip, tmp_path / "missing.mp4"):
    with pytest.raises(video.VideoDecodeError, match=path.name):
      video.video_num_frames(path)
    with pytest.raises(video.VideoDecodeError, match=path.name):
      video.decode_frames(path, [0])
  with pytest.raises(video.VideoDecodeError, match="empty"):
    video.decode_frames(b"", [0])
  with pytest.raises(video.VideoDecodeError, match="good.mp4.*out of range"):
    video.decode_frames(good, [3, 60])
  with pytest.raises(video.VideoDecodeError, match="out of range"):
    video.decode_frames(good, [-1])
  with pytest.raises(ValueError):
    video.decode_frames(good, [])


def test_truncated_stream_never_returns_garbage(tmp_path, frames60):
  """moov-first (faststart) mp4 cut short: the index shrinks, undecodable tail frames raise, exact count is exact."""
  path = tmp_path / "fast.mp4"
  video.write_video(path, frames60, gop=8, bframes=2, crf=10, faststart=True)
  data = path.read_bytes()
  cut = tmp_path / "cut.mp4"
  cut.write_bytes(data[:int(len(data) * 0.7)])
  n_index = video.video_num_frames(cut)
  assert 0 < n_index < 60
  ok = []
  for i in range(n_index):
    try:
      out = video.decode_frames(cut, [i])
    except video.VideoDecodeError as e:
      assert "cut.mp4" in str(e)
    else:
      assert read_code(out[0]) == i
      ok.append(i)
  n_exact = video.video_num_frames(cut, exact=True)
  assert ok == list(range(n_exact)) and n_exact > 0
  assert codes(video.decode_frames(cut, list(range(n_exact)))) == list(range(n_exact))


def test_index_cache_is_invalidated_by_rewrites(tmp_path, frames60):
  path = tmp_path / "v.mp4"
  video.write_video(path, frames60[:10])
  first = video.frame_index(path)
  assert video.frame_index(path) is first  # cached
  video.write_video(path, frames60[:30])
  os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10_000_000))
  assert video.video_num_frames(path) == 30
  assert codes(video.decode_frames(path, [25])) == [25]


def test_writer_validates_input(tmp_path):
  with pytest.raises(ValueError, match="even"):
    video.write_video(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8))
  with pytest.raises(ValueError, match="uint8"):
    video.write_video(tmp_path / "f.mp4", np.zeros((2, 16, 16, 3), np.float32))
  with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
    video.write_frame_zip(tmp_path / "z.zip", np.zeros((16, 16, 3), np.uint8))
