"""Batched JAX Dual TV-L1 (input_pipeline/tvl1.py): its parts against OpenCV's, accuracy against ground truth and
against OpenCV's flow on pairs with known motion, batching / sharding invariance, errors."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from input_pipeline import flow as flow_lib
from input_pipeline import flow_pairs
from input_pipeline import tvl1

cv2 = pytest.importorskip("cv2")
needs_optflow = pytest.mark.skipif(not hasattr(cv2, "optflow"), reason="cv2.optflow (opencv-contrib) is missing")

SIZE = 64
MARGIN = 4


@pytest.fixture(scope="session")
def motion_pairs():
  """One 64x64 pair per motion: (frames0 [4, H, W] uint8, frames1, true flows [4, H, W, 2])."""
  pairs = [flow_pairs.motion_pair(m, SIZE, SIZE, seed=0) for m in flow_pairs.MOTIONS]
  return tuple(np.stack([p[i] for p in pairs]) for i in range(3))


@pytest.fixture(scope="session")
def jax_flows(motion_pairs):
  """JAX flow of the 4 pairs at OpenCV's defaults, sharded over a 2-device mesh (2 pairs per device)."""
  from fedvssl_jax.core import mesh as mesh_lib

  a, b, _ = motion_pairs
  mesh = mesh_lib.make_mesh([("data", 2)])
  out = tvl1.tvl1_batch(a.astype(np.float32), b.astype(np.float32), mesh=mesh)
  assert len(out.sharding.device_set) == 2
  return np.asarray(out)


def test_median_filter_matches_opencv():
  x = np.random.default_rng(0).normal(size=(2, 13, 17)).astype(np.float32)
  for k in (3, 5):
    want = np.stack([cv2.medianBlur(img, k) for img in x])
    np.testing.assert_array_equal(np.asarray(tvl1.median_filter(jnp.asarray(x), k)), want)


def test_warp_bicubic_matches_opencv_remap():
  rng = np.random.default_rng(1)
  img = rng.uniform(0, 255, (1, 20, 24)).astype(np.float32)
  u1 = rng.uniform(-4, 4, (1, 20, 24)).astype(np.float32)  # some taps fall outside the image
  u2 = rng.uniform(-4, 4, (1, 20, 24)).astype(np.float32)
  ys, xs = np.mgrid[0:20, 0:24].astype(np.float32)
  want = cv2.remap(img[0], xs + u1[0], ys + u2[0], cv2.INTER_CUBIC)
  got = np.asarray(tvl1.warp_bicubic(jnp.asarray(img[..., None]), jnp.asarray(u1), jnp.asarray(u2)))[0, ..., 0]
  np.testing.assert_allclose(got, want, atol=2e-3)


def test_pyramid_resize_matches_opencv():
  img = np.random.default_rng(2).uniform(0, 255, (37, 50)).astype(np.float32)
  down = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
  (h, w), (sh, sw) = tvl1.pyramid_sizes(37, 50, flow_lib.DEFAULT_TVL1)[:2]
  assert (sh, sw) == down.shape
  got = np.asarray(tvl1._resize(jnp.asarray(img[None]), (sh, sw), (1.25, 1.25)))[0]
  np.testing.assert_allclose(got, down, atol=1e-3)
  up = cv2.resize(down, (w, h), interpolation=cv2.INTER_LINEAR)
  got = np.asarray(tvl1._resize(jnp.asarray(down[None]), (h, w), (sh / h, sw / w)))[0]
  np.testing.assert_allclose(got, up, atol=1e-3)
  # OpenCV drops scales under 16 px: 64 -> 51 -> 41 -> 33 -> 26 keeps all 5, 24 px keeps 24, 19.
  assert [s[0] for s in tvl1.pyramid_sizes(64, 64, flow_lib.DEFAULT_TVL1)] == [64, 51, 41, 33, 26]
  assert [s[0] for s in tvl1.pyramid_sizes(24, 24, flow_lib.DEFAULT_TVL1)] == [24, 19]


@needs_optflow
def test_accuracy_against_truth_and_opencv(motion_pairs, jax_flows):
  """Mean end-point error vs the true flow is within 1.1x OpenCV's for each motion, and the flows are close to
  OpenCV's (mean end-point difference 0.03-0.06 px per motion at 64 px when written)."""
  a, b, truth = motion_pairs
  opencv = np.stack([flow_lib.tvl1_flow(x, y) for x, y in zip(a, b)])
  for i, motion in enumerate(flow_pairs.MOTIONS):
    epe_jax = flow_pairs.endpoint_error(jax_flows[i], truth[i], MARGIN)
    epe_cv = flow_pairs.endpoint_error(opencv[i], truth[i], MARGIN)
    diff = flow_pairs.endpoint_error(jax_flows[i], opencv[i])
    print(f"{motion}: EPE jax {epe_jax:.4f} opencv {epe_cv:.4f}, mean |jax - opencv| {diff:.4f} px")
    mean_motion = float(np.linalg.norm(truth[i], axis=-1).mean())
    assert epe_jax <= 1.1 * epe_cv, (motion, epe_jax, epe_cv)
    assert epe_jax < 0.25 * mean_motion, (motion, epe_jax, mean_motion)  # the flow is recovered at all
    assert diff < 0.1, (motion, diff)


def test_pair_alone_equals_pair_in_batch(motion_pairs, jax_flows):
  """A pair's flow does not depend on the other pairs of its batch (each stops on its own epsilon test), nor on the
  sharding."""
  a, b, _ = motion_pairs
  alone = np.asarray(tvl1.tvl1_batch(a[1:2].astype(np.float32), b[1:2].astype(np.float32)))
  np.testing.assert_allclose(alone[0], jax_flows[1], atol=1e-5)


def test_errors():
  x = np.zeros((1, 16, 16), np.float32)
  with pytest.raises(ValueError, match="gamma"):
    tvl1.tvl1_batch(x, x, dataclasses.replace(flow_lib.DEFAULT_TVL1, gamma=0.1))
  with pytest.raises(ValueError, match=r"\[N, H, W\]"):
    tvl1.tvl1_batch(x, x[0])
  with pytest.raises(ValueError, match="median_filtering"):
    tvl1.tvl1_batch(x, x, dataclasses.replace(flow_lib.DEFAULT_TVL1, median_filtering=4))
  with pytest.raises(ValueError, match="unknown motion"):
    flow_pairs.motion_pair("shear", 8, 8)


def _moving_video(n, h, w, dx, seed):
  """n uint8 RGB frames of a textured pair sequence translating by dx px per frame."""
  big = flow_pairs.motion_pair("translation", h, w + n * dx, seed=seed)[0]
  return np.stack([np.repeat(big[:, (n - i) * dx:(n - i) * dx + w, None], 3, axis=-1) for i in range(n)])


@needs_optflow
def test_video_flow_backends_agree():
  """Both backends give the same encoded flow video up to a few grey levels (FAST_TVL1, 32 px frames)."""
  frames = _moving_video(5, 32, 32, 1, seed=3)
  grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
  a = flow_lib.video_flow(grays, flow_lib.FAST_TVL1, backend="opencv")
  b = flow_lib.video_flow(grays, flow_lib.FAST_TVL1, backend="jax", batch_size=3)  # 4 pairs: one padded batch
  assert a.shape == b.shape == (5, 32, 32, 3) and b.dtype == np.uint8
  np.testing.assert_array_equal(b[-1], b[-2])
  diff = np.abs(a.astype(np.int32) - b.astype(np.int32))[:, 4:-4, 4:-4]
  assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4, (diff.mean(), np.percentile(diff, 99))
  # the motion is recovered: u ~ +1 px is level round((1 + 20) * 255 / 40) = 134
  assert abs(float(np.median(b[:-1, 4:-4, 4:-4, 2])) - 134) <= 2


@needs_optflow
def test_folder_made_by_one_backend_resumes_with_the_other(tmp_path):
  from input_pipeline import video as video_lib

  videos = tmp_path / "videos"
  for i in range(2):
    video_lib.write_video(videos / f"v{i}.mp4", _moving_video(4, 32, 32, 1, seed=i), fps=10)
  out = tmp_path / "videos_flow"
  kw = dict(short_side=None, params=flow_lib.FAST_TVL1, log_fn=lambda _: None)
  s = flow_lib.extract_flow_folder(str(videos), str(out), workers=1, backend="opencv", **kw)
  assert s["done"] == 2
  record = (out / flow_lib.PARAMS_FILE).read_text()
  os.remove(out / "v1.mp4")
  lines = []
  s = flow_lib.extract_flow_folder(str(videos), str(out), backend="jax", batch_size=4,
                                   **dict(kw, log_fn=lines.append))
  assert s["skipped"] == 1 and s["done"] == 1 and not s["failed"], s
  assert "jax backend" in lines[0]
  assert (out / flow_lib.PARAMS_FILE).read_text() == record  # same settings: files are interchangeable
  assert video_lib.video_num_frames(str(out / "v1.mp4")) == 4
  with pytest.raises(ValueError, match="backend 'cuda'"):
    flow_lib.extract_flow_folder(str(videos), str(out), backend="cuda", **kw)
  assert flow_lib.resolve_backend("auto") == ("jax" if jax.default_backend() != "cpu" else flow_lib.CPU_BACKEND)


def test_default_batch_size():
  if jax.default_backend() == "cpu":
    assert flow_lib.default_batch_size(256, 340) == 1
    assert flow_lib.default_batch_size(48, 48) == 38
    assert flow_lib.default_batch_size(8, 8) == flow_lib.JAX_MAX_BATCH_CPU
  else:
    assert flow_lib.default_batch_size(256, 340) == flow_lib.JAX_BATCH_ACCELERATOR
