"""Frame-index samplers: bounds, strides, jitter, VCOP spacing, Speed reversal, GOCA starts, uniform offsets."""

import numpy as np
import pytest

from input_pipeline import samplers

CTP_STRIDES = (1, 2, 3, 4, 5)


def _rng(seed=0):
  return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------ random_stride_indices


def test_random_stride_no_jitter_uses_a_listed_stride_and_valid_start():
  rng = _rng()
  n, clip_len = 100, 16
  seen_strides, seen_starts = set(), {}
  for _ in range(400):
    idx = samplers.random_stride_indices(n, clip_len, CTP_STRIDES, rng, temporal_jitter=False)
    assert idx.dtype == np.int64 and idx.shape == (clip_len,)
    d = np.diff(idx)
    assert np.all(d == d[0]), idx
    s = int(d[0])
    assert s in CTP_STRIDES
    seen_strides.add(s)
    start = int(idx[0])
    assert 0 <= start <= n - (clip_len - 1) * s - 1
    seen_starts.setdefault(s, set()).add(start)
  assert seen_strides == set(CTP_STRIDES)
  # The largest legal start is reachable (U{0 .. n-(L-1)s-1} is inclusive) for the stride with fewest starts.
  assert max(seen_starts[5]) == n - 15 * 5 - 1 and min(seen_starts[5]) == 0


def test_random_stride_jitter_range():
  rng = _rng(1)
  n, clip_len, s = 200, 16, 3
  spreads = set()
  for _ in range(300):
    idx = samplers.random_stride_indices(n, clip_len, [s], rng, temporal_jitter=True)
    assert idx.min() >= 0 and idx.max() <= n - 1
    base = idx - s * np.arange(clip_len)  # = start + jitter_i, jitter_i in [0, s-1]
    assert base.max() - base.min() <= s - 1
    spreads.add(int(base.max() - base.min()))
  assert max(spreads) == s - 1  # jitter reaches s-1


def test_random_stride_jitter_clamped_to_last_frame():
  rng = _rng(2)
  # Stride 2 exactly fits 31 frames (start 0); the last frame's jitter would reach index 31 -> clamped to 30.
  last = set()
  for _ in range(50):
    idx = samplers.random_stride_indices(31, 16, [2], rng, temporal_jitter=True)
    assert idx.max() <= 30
    last.add(int(idx[-1]))
  assert last == {30}


def test_random_stride_shrinks_strides_that_do_not_fit():
  rng = _rng(3)
  for _ in range(100):
    idx = samplers.random_stride_indices(40, 16, CTP_STRIDES, rng, temporal_jitter=False)
    assert int(np.diff(idx)[0]) in (1, 2)  # 15 * 3 + 1 = 46 > 40
  # None of the strides fits: shrink to the largest that does ((30 - 1) // 15 = 1).
  idx = samplers.random_stride_indices(30, 16, (3, 4), rng, temporal_jitter=False)
  assert np.all(np.diff(idx) == 1) and idx.max() <= 29


def test_random_stride_short_video_fallback_and_errors():
  idx = samplers.random_stride_indices(10, 16, CTP_STRIDES, _rng(), temporal_jitter=True)
  np.testing.assert_array_equal(idx, np.minimum(np.arange(16), 9))
  with pytest.raises(ValueError, match="num_frames >= 1"):
    samplers.random_stride_indices(0, 16, CTP_STRIDES, _rng())
  with pytest.raises(ValueError, match="strides"):
    samplers.random_stride_indices(100, 16, [0], _rng())


# ------------------------------------------------------------------------------------------ consecutive_indices


def test_consecutive_indices_fixed_stride_uniform_start():
  rng = _rng(4)
  starts = set()
  for _ in range(500):
    idx = samplers.consecutive_indices(50, 16, 2, rng)
    np.testing.assert_array_equal(np.diff(idx), 2)
    starts.add(int(idx[0]))
  assert starts == set(range(0, 50 - 30))  # start ~ U{0 .. n - (L-1)*s - 1}
  idx = samplers.consecutive_indices(20, 16, 2, rng)  # fallback: from 0, clamped
  np.testing.assert_array_equal(idx, np.minimum(np.arange(0, 32, 2), 19))


# ------------------------------------------------------------------------------------------ vcop_tuple_indices


def test_vcop_spacing_and_start_range():
  rng = _rng(5)
  starts = set()
  for _ in range(300):
    idx = samplers.vcop_tuple_indices(100, 16, 3, 8, rng)
    assert idx.shape == (3, 16) and idx.dtype == np.int64
    np.testing.assert_array_equal(np.diff(idx, axis=1), 1)  # consecutive frames in a clip
    np.testing.assert_array_equal(idx[1:, 0] - idx[:-1, -1] - 1, 8)  # 8 frames between clips
    starts.add(int(idx[0, 0]))
    assert idx.max() <= 99
  assert min(starts) == 0 and max(starts) == 100 - 48 - 16


def test_vcop_interval_range_and_shrink():
  rng = _rng(6)
  ivs = set()
  for _ in range(200):
    idx = samplers.vcop_tuple_indices(200, 16, 3, (4, 8), rng)
    ivs.update((idx[1:, 0] - idx[:-1, -1] - 1).tolist())
  assert ivs == set(range(4, 9))
  # avg = (56 - 48) // 2 = 4 < 8: the interval shrinks to 4 and the tuple exactly fills the video.
  idx = samplers.vcop_tuple_indices(56, 16, 3, 8, rng)
  np.testing.assert_array_equal(idx[1:, 0] - idx[:-1, -1] - 1, 4)
  assert idx[0, 0] == 0 and idx[-1, -1] == 55


def test_vcop_centred_fallback():
  # avg = (40 - 48) // 2 < 0: centred offsets, tick = (40 - 16 + 1) / 3.
  idx = samplers.vcop_tuple_indices(40, 16, 3, 8, _rng())
  tick = 25 / 3
  np.testing.assert_array_equal(idx[:, 0], [int(tick / 2 + tick * k) for k in range(3)])
  np.testing.assert_array_equal(np.diff(idx, axis=1), 1)
  idx = samplers.vcop_tuple_indices(10, 16, 3, 8, _rng())  # not even one clip fits: zeros, clamped
  np.testing.assert_array_equal(idx, np.tile(np.minimum(np.arange(16), 9), (3, 1)))
  with pytest.raises(ValueError, match="tuple_len"):
    samplers.vcop_tuple_indices(100, 16, 1, 8, _rng())


# ------------------------------------------------------------------------------------------ speed_indices


@pytest.mark.parametrize("stride", samplers.SPEED_STRIDES)
def test_speed_indices(stride):
  rng = _rng(7)
  n, clip_len = 100, 16
  for _ in range(100):
    idx = samplers.speed_indices(n, clip_len, stride, rng)
    assert idx.shape == (clip_len,) and idx.min() >= 0 and idx.max() <= n - 1
    if stride == 0:
      assert np.all(idx == idx[0])  # a static clip
    else:
      np.testing.assert_array_equal(np.diff(idx), stride)  # negative stride = reversed order
      lo = int(idx.min())
      assert lo <= n - ((clip_len - 1) * abs(stride) + 1)
  assert samplers.SPEED_STRIDES == (-4, -2, -1, 0, 1, 2, 4)


def test_speed_reversed_is_forward_backwards():
  a = samplers.speed_indices(100, 16, 2, _rng(9))
  b = samplers.speed_indices(100, 16, -2, _rng(9))
  np.testing.assert_array_equal(a[::-1], b)


# ------------------------------------------------------------------------------------------ goca_multicrop_indices


def test_goca_views_lengths_strides_and_start_distance():
  rng = _rng(10)
  for _ in range(50):
    views = samplers.goca_multicrop_indices(300, (32, 16), (2, 4), stride=2, min_start_distance=16, rng=rng)
    assert [len(v) for v in views] == [32, 32, 16, 16, 16, 16]
    for v in views:
      assert v.dtype == np.int64
      np.testing.assert_array_equal(np.diff(v), 2)
      assert v.min() >= 0 and v.max() <= 299
    starts = np.array([v[0] for v in views])
    gaps = np.abs(starts[:, None] - starts[None, :])[~np.eye(6, dtype=bool)]
    assert gaps.min() >= 16, starts


def test_goca_stride_adapted_from_first_clip_and_errors():
  rng = _rng(11)
  views = samplers.goca_multicrop_indices(40, rng=rng)  # 32 * 2 > 40 -> stride 40 // 32 = 1
  assert len(views) == 6
  for v in views:
    np.testing.assert_array_equal(np.diff(v), 1)
    assert v.max() <= 39
  views = samplers.goca_multicrop_indices(100, rng=rng)  # tight: distance shrinks, still valid
  assert len(views) == 6 and all(v.max() <= 99 for v in views)
  with pytest.raises(ValueError, match="clip_lens\\[0\\]"):
    samplers.goca_multicrop_indices(31, rng=rng)
  with pytest.raises(ValueError, match="rng"):
    samplers.goca_multicrop_indices(100)


# ------------------------------------------------------------------------------------------ uniform_test_indices


def test_uniform_test_indices_hand_computed():
  idx = samplers.uniform_test_indices(100, 16, 2, 10)
  # tick = (100 - 32 + 1) / 10 = 6.9; offsets int(3.45 + 6.9 k)
  expected_offsets = [3, 10, 17, 24, 31, 37, 44, 51, 58, 65]
  assert idx.shape == (10, 16) and idx.dtype == np.int64
  np.testing.assert_array_equal(idx[:, 0], expected_offsets)
  np.testing.assert_array_equal(idx, np.array(expected_offsets)[:, None] + 2 * np.arange(16)[None])


def test_uniform_test_indices_short_video():
  idx = samplers.uniform_test_indices(20, 16, 2, 10)  # 20 - 32 + 1 <= 0: all clips start at 0, clamped
  np.testing.assert_array_equal(idx, np.tile(np.minimum(np.arange(0, 32, 2), 19), (10, 1)))
  idx = samplers.uniform_test_indices(40, 16, 2, 1)  # tick = 9: offset int(4.5) = 4
  np.testing.assert_array_equal(idx[0], 4 + 2 * np.arange(16))


def _goca_get_clips_uniformly(stride, seq_len, clip_ln, nclip, choice):
  """GOCA helper/ds_utils.py get_clips_uniformly + select_frameidx_withstride, `random.choice` replaced by `choice`."""
  import math
  if clip_ln * stride > seq_len:
    stride = int(seq_len / clip_ln)
  span = (clip_ln - 1) * stride
  clip_rest = seq_len - span
  step = math.ceil(clip_rest / (nclip - 1))
  starts, exceeded = [0], False
  for _ in range(nclip - 1):
    start = starts[-1] + step
    if start + span >= seq_len:
      start = choice(range(clip_rest)) if exceeded else seq_len - span - 1
      exceeded = True
    starts.append(start)
  return [[s + i * stride for i in range(clip_ln)] for s in sorted(starts)]


@pytest.mark.parametrize("n,clip_len,stride,num_clips", [(64, 8, 2, 5), (300, 32, 2, 5), (40, 16, 2, 5),
                                                         (100, 16, 1, 10), (33, 32, 2, 5)])
def test_goca_test_indices_match_goca(n, clip_len, stride, num_clips):
  rng = np.random.default_rng(7)
  got = samplers.goca_test_indices(n, clip_len, stride, num_clips, rng)
  ref_rng = np.random.default_rng(7)
  ref = _goca_get_clips_uniformly(stride, n, clip_len, num_clips, lambda r: int(ref_rng.integers(0, len(r))))
  np.testing.assert_array_equal(got, np.asarray(ref))
  assert got[0, 0] == 0 and got.max() < n


def test_goca_test_indices_differs_from_ctp():
  goca = samplers.goca_test_indices(64, 8, 2, 5)
  ctp = samplers.uniform_test_indices(64, 8, 2, 5)
  assert goca[0, 0] == 0 and ctp[0, 0] > 0
