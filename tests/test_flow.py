"""TV-L1 flow: direction of motion, GOCA's encoding, flow videos (alignment, frame count), folders and resume."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from input_pipeline import flow
from input_pipeline import video as video_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _texture(h, w, seed=0):
  rng = np.random.default_rng(seed)
  img = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
  return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _moving_frames(n, h, w, dx, dy, seed=0):
  """n uint8 RGB frames of a smooth texture translating by (dx, dy) pixels per frame."""
  big = _texture(h + 64, w + 64, seed)
  frames = []
  for i in range(n):
    y0, x0 = 32 - i * dy, 32 - i * dx
    g = big[y0:y0 + h, x0:x0 + w]
    frames.append(np.repeat(g[..., None], 3, axis=-1))
  return np.stack(frames)


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, 2), (-1, 1)])
def test_tvl1_direction(dx, dy):
  frames = _moving_frames(2, 48, 64, dx, dy)
  f = flow.tvl1_flow(frames[0], frames[1], flow.FAST_TVL1)
  assert f.shape == (48, 64, 2) and f.dtype == np.float32
  inner = f[8:-8, 8:-8]
  np.testing.assert_allclose(inner[..., 0].mean(), dx, atol=0.4)
  np.testing.assert_allclose(inner[..., 1].mean(), dy, atol=0.4)


def test_tvl1_default_params_and_errors():
  g = _moving_frames(2, 32, 32, 1, 0)[..., 0]
  f = flow.tvl1_flow(g[0], g[1])  # OpenCV defaults
  assert f[6:-6, 6:-6, 0].mean() > 0.5
  with pytest.raises(ValueError, match="shapes differ"):
    flow.tvl1_flow(g[0], g[1][:16])
  with pytest.raises(ValueError, match="uint8"):
    flow.tvl1_flow(g[0].astype(np.float32), g[1])


def test_encode_decode():
  f = np.array([[[0.0, 0.0], [20.0, -20.0], [35.0, -50.0], [1.3, -7.7]]], np.float32)
  img = flow.encode_flow(f)
  assert img.dtype == np.uint8 and img.shape == (1, 4, 3)
  np.testing.assert_array_equal(img[..., 0], 128)
  # (R, G, B) = (128, v, u); u8 = round((clip(f) + 20) * 255 / 40).
  np.testing.assert_array_equal(img[0, :, 2], np.round((np.clip(f[0, :, 0], -20, 20) + 20) * 255 / 40))
  np.testing.assert_array_equal(img[0, :, 1], np.round((np.clip(f[0, :, 1], -20, 20) + 20) * 255 / 40))
  assert img[0, 0, 2] == 128 and img[0, 1, 2] == 255 and img[0, 1, 1] == 0
  back = flow.decode_flow(img)
  np.testing.assert_allclose(back[0, [0, 1, 3]], f[0, [0, 1, 3]], atol=40 / 255 / 2 + 1e-6)
  np.testing.assert_allclose(back[0, 2], [20.0, -20.0], atol=1e-5)
  with pytest.raises(ValueError):
    flow.encode_flow(np.zeros((4, 4, 3)))


def test_flow_path_for():
  assert flow.flow_path_for("/data/k400/videos/abseiling/x.mp4") == "/data/k400/videos_flow/abseiling/x.mp4"
  assert flow.flow_path_for("/d/videos/a/videos/b.avi") == "/d/videos/a/videos_flow/b.mp4"
  assert flow.flow_path_for("videos/b.avi", ext=None) == "videos_flow/b.avi"
  with pytest.raises(ValueError, match="videos"):
    flow.flow_path_for("/data/k400/clips/x.mp4")


def test_extract_video_flow(tmp_path):
  n = 6
  right = _moving_frames(n, 64, 80, 2, 0, seed=1)
  down = _moving_frames(n, 64, 80, 0, 2, seed=2)
  src_r, src_d = tmp_path / "videos" / "right.mp4", tmp_path / "videos" / "down.mp4"
  video_lib.write_video(src_r, right, fps=12, crf=10)
  video_lib.write_video(src_d, down, fps=12, crf=10)
  dst_r = flow.flow_path_for(str(src_r))
  written = flow.extract_video_flow(str(src_r), dst_r, short_side=48, params=flow.FAST_TVL1)
  assert written == n
  assert video_lib.video_num_frames(dst_r) == video_lib.video_num_frames(str(src_r)) == n
  assert abs(flow.video_fps(dst_r) - 12) < 1e-3
  enc = video_lib.decode_frames(dst_r, np.arange(n))
  assert enc.shape == (n, 48, 60, 3)  # short side 48, 80 * 48 / 64 = 60
  np.testing.assert_allclose(enc[..., 0].astype(np.float32).mean(), 128, atol=2)
  uv = flow.decode_flow(enc)[:, 6:-6, 6:-6]
  # 2 px/frame at 64 px short side is 1.5 px at 48 px.
  assert np.all(uv[..., 0].mean(axis=(1, 2)) > 0.8), uv[..., 0].mean(axis=(1, 2))
  assert np.all(np.abs(uv[..., 1].mean(axis=(1, 2))) < 0.4)
  # The last frame repeats the previous flow (no successor).
  np.testing.assert_allclose(uv[-1].mean(axis=(0, 1)), uv[-2].mean(axis=(0, 1)), atol=0.2)
  dst_d = str(tmp_path / "out" / "down.mp4")
  flow.extract_video_flow(str(src_d), dst_d, short_side=None, params=flow.FAST_TVL1, max_frames=4)
  uv = flow.decode_flow(video_lib.decode_frames(dst_d, np.arange(4)))[:, 6:-6, 6:-6]
  assert video_lib.video_num_frames(dst_d) == 4
  assert np.all(uv[..., 1].mean(axis=(1, 2)) > 1.2) and np.all(np.abs(uv[..., 0].mean(axis=(1, 2))) < 0.4)
  assert not [f for f in os.listdir(tmp_path / "out") if "partial" in f]


def test_alignment_frame_i_is_flow_from_i_to_i_plus_1():
  # Still for frames 0-2, then motion to the right between frames 2 and 3, and 3 and 4.
  base = _moving_frames(3, 40, 40, 2, 0, seed=3)
  frames = np.concatenate([np.repeat(base[:1], 3, axis=0), base[1:], base[2:]])  # 0,0,0,1,2,2
  grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
  uv = flow.decode_flow(flow.video_flow(grays, flow.FAST_TVL1))[:, 6:-6, 6:-6, 0].mean(axis=(1, 2))
  assert len(uv) == 6
  assert abs(uv[0]) < 0.3 and abs(uv[1]) < 0.3 and abs(uv[4]) < 0.3
  assert uv[2] > 1.0 and uv[3] > 1.0  # frame 2 -> 3 and 3 -> 4 move
  assert abs(uv[5] - uv[4]) < 0.2


def test_folder_resume_and_script(tmp_path):
  videos = tmp_path / "videos"
  for i, name in enumerate(["a/one.mp4", "b/two.avi", "three.mp4"]):
    codec = "mpeg4" if name.endswith(".avi") else "libx264"
    video_lib.write_video(videos / name, _moving_frames(4, 32, 32, 1, 0, seed=i), fps=10, codec=codec)
  (videos / "notes.txt").write_text("not a video")
  (videos / "broken.mp4").write_bytes(b"\x00" * 100)
  out = tmp_path / "videos_flow"
  lines = []
  s = flow.extract_flow_folder(str(videos), str(out), short_side=32, workers=2, params=flow.FAST_TVL1,
                               log_fn=lines.append)
  assert s["total"] == 4 and s["done"] == 3 and s["skipped"] == 0
  assert [r for r, _ in s["failed"]] == ["broken.mp4"] and "broken.mp4" in "\n".join(lines)
  for rel in ["a/one.mp4", "b/two.mp4", "three.mp4"]:
    assert video_lib.video_num_frames(str(out / rel)) == 4
  # Resume: complete outputs are skipped, a truncated one is recomputed.
  data = (out / "three.mp4").read_bytes()
  (out / "three.mp4").write_bytes(data[: len(data) // 3])
  s2 = flow.extract_flow_folder(str(videos), str(out), short_side=32, workers=1, params=flow.FAST_TVL1,
                                log_fn=lines.append)
  assert s2["skipped"] == 2 and s2["done"] == 1
  assert video_lib.video_num_frames(str(out / "three.mp4")) == 4
  os.remove(videos / "broken.mp4")
  res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "extract_flow.py"), "--videos", str(videos),
                        "--out", str(out), "--short_side", "32", "--workers", "1", "--fast"],
                       capture_output=True, text=True, timeout=120)
  assert res.returncode == 0, res.stderr
  assert "3 skipped" in res.stderr


@pytest.fixture
def flow_folder(tmp_path):
  """(extract, out): `extract(**kwargs)` runs `extract_flow_folder` quietly from a folder of one 5-frame video to
  `out`, which already holds that video's flow made at bound 20."""
  videos = tmp_path / "videos"
  video_lib.write_video(videos / "right.mp4", _moving_frames(5, 48, 48, 1, 0, seed=4), fps=10, crf=10)
  out = tmp_path / "videos_flow"

  def extract(**kwargs):
    return flow.extract_flow_folder(str(videos), str(out), short_side=None, workers=1, params=flow.FAST_TVL1,
                                    log_fn=lambda _: None, **kwargs)

  extract(bound=20.0)
  return extract, out


def test_bound_and_folder_settings_are_recorded(flow_folder):
  extract, out = flow_folder
  wide = video_lib.decode_frames(str(out / "right.mp4"), np.arange(4))[:, 6:-6, 6:-6, 2].astype(np.float32)
  assert flow.read_flow_settings(str(out)) == flow.flow_settings(short_side=None, params=flow.FAST_TVL1, bound=20.0,
                                                                 crf=flow.DEFAULT_CRF, max_frames=None)
  # Another bound on the same folder would mix two encodings: refused unless overwrite.
  with pytest.raises(ValueError, match="flow_params.json"):
    extract(bound=4.0)
  s = extract(bound=4.0, overwrite=True)
  assert s["done"] == 1 and flow.read_flow_settings(str(out))["bound"] == 4.0
  tight = video_lib.decode_frames(str(out / "right.mp4"), np.arange(4))[:, 6:-6, 6:-6, 2].astype(np.float32)
  # u of ~1 px per frame: ~6 levels above 128 at +-20 px, ~5x more at +-4 px; both decode to the same flow.
  assert 3 < wide.mean() - 128 < 10 and tight.mean() - 128 > 4 * (wide.mean() - 128)
  np.testing.assert_allclose(flow.decode_flow(np.stack([128 + 0 * tight, 0 * tight + 128, tight], -1), 4.0)[..., 0]
                             .mean(), (wide.mean() - 127.5) * 40 / 255, atol=0.25)


def test_interrupted_remake_never_keeps_flow_of_old_settings(flow_folder, monkeypatch):
  extract, out = flow_folder

  def killed(*args, **kwargs):
    raise KeyboardInterrupt

  with monkeypatch.context() as m:
    m.setattr(flow, "extract_video_flow", killed)
    with pytest.raises(KeyboardInterrupt):  # the remake dies before it wrote anything
      extract(bound=4.0, overwrite=True)
  assert flow.read_flow_settings(str(out))["bound"] == 4.0
  # Resuming with the new settings recomputes the video instead of skipping its bound-20 flow.
  s = extract(bound=4.0)
  assert s["done"] == 1 and s["skipped"] == 0
