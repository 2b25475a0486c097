"""Clip-consistent augmentations: same parameters on every frame, flow flip negation, colour-jitter semantics."""

import numpy as np
import pytest

from input_pipeline import transforms as T


def _rng(seed=0):
  return np.random.default_rng(seed)


def _still_clip(t=6, h=40, w=52, seed=0):
  """A clip of `t` identical random frames."""
  frame = _rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
  return np.repeat(frame[None], t, axis=0)


@pytest.mark.parametrize("seed", range(6))
def test_train_augment_keeps_identical_frames_identical(seed):
  clip = _still_clip()
  out = T.train_clip_augment(clip, _rng(seed), short_side_sizes=(32, 40, 48), crop_size=28, flip_p=0.5,
                             jitter=(0.4, 0.4, 0.4, 0.1, 1.0), grayscale_p=0.5)
  assert out.shape == (6, 28, 28, 3) and out.dtype == np.float32
  for t in range(1, 6):
    np.testing.assert_array_equal(out[t], out[0])


def test_random_crop_is_the_same_window_on_every_frame():
  base = _rng(1).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
  clip = np.stack([base, 255 - base, base // 2])  # different frames
  out, (y0, x0) = T.random_crop(clip, (12, 20), _rng(2), return_params=True)
  assert out.shape == (3, 12, 20, 3)
  np.testing.assert_array_equal(out[0], base[y0:y0 + 12, x0:x0 + 20])
  np.testing.assert_array_equal(out[1], 255 - base[y0:y0 + 12, x0:x0 + 20])
  np.testing.assert_array_equal(out[2], base[y0:y0 + 12, x0:x0 + 20] // 2)
  offsets = {T.random_crop(clip, 12, _rng(s), return_params=True)[1] for s in range(40)}
  assert len(offsets) > 10  # actually random
  with pytest.raises(ValueError, match="larger than the frames"):
    T.random_crop(clip, 64, _rng())


def test_flip_applies_to_whole_clip():
  clip = _rng(3).integers(0, 256, size=(4, 8, 10, 3), dtype=np.uint8)
  np.testing.assert_array_equal(T.hflip(clip), clip[:, :, ::-1])
  np.testing.assert_array_equal(T.random_hflip(clip, 1.0, _rng()), clip[:, :, ::-1])
  np.testing.assert_array_equal(T.random_hflip(clip, 0.0, _rng()), clip)


def test_flow_hflip_negates_u():
  rng = _rng(4)
  f = rng.uniform(-20, 20, size=(3, 6, 8, 2))  # (u, v) in pixels
  enc = lambda x: np.round((x + 20) * 255 / 40).astype(np.uint8)  # noqa: E731
  clip = np.stack([np.full(f.shape[:3], 128, np.uint8), enc(f[..., 1]), enc(f[..., 0])], -1)  # (128, v, u)
  out = T.flow_hflip(clip)
  np.testing.assert_array_equal(out[..., 0], 128)
  np.testing.assert_array_equal(out[..., 1], clip[:, :, ::-1, 1])  # v only mirrored
  np.testing.assert_array_equal(out[..., 2], 255 - clip[:, :, ::-1, 2])  # u mirrored and negated
  u_back = out[..., 2].astype(np.float64) * 40 / 255 - 20
  np.testing.assert_allclose(u_back, -f[:, :, ::-1, 0], atol=40 / 255)


def test_flow_gets_no_colour_ops_but_a_negating_flip():
  clip = np.zeros((4, 20, 20, 3), np.uint8)
  clip[...] = (128, 100, 60)
  kw = dict(crop_size=16, jitter=(0.4, 0.4, 0.4, 0.1, 1.0), grayscale_p=1.0, is_flow=True)
  out = T.train_clip_augment(clip, _rng(), flip_p=0.0, **kw)
  np.testing.assert_allclose(out, T.normalize(clip[:, :16, :16]), atol=1e-6)
  out = T.train_clip_augment(clip, _rng(), flip_p=1.0, **kw)
  flipped = clip[:, :16, :16].copy()
  flipped[..., 2] = 255 - 60
  np.testing.assert_allclose(out, T.normalize(flipped), atol=1e-6)


def test_resize_and_short_side():
  clip = _rng().integers(0, 256, size=(2, 256, 340, 3), dtype=np.uint8)
  assert T.resize_short_side(clip, 128).shape == (2, 128, 170, 3)
  assert T.resize(clip, (171, 128)).shape == (2, 128, 171, 3)
  portrait = clip.transpose(0, 2, 1, 3)
  assert T.resize_short_side(portrait, 112).shape == (2, 148, 112, 3)
  shorts = {min(T.random_short_side_resize(clip[:, :64, :80], (16, 24), _rng(s)).shape[1:3]) for s in range(20)}
  assert shorts == {16, 24}
  shorts = {min(T.random_short_side_resize(clip[:, :64, :80], rng=_rng(s), range_=(20, 22)).shape[1:3])
            for s in range(30)}
  assert shorts == {20, 21, 22}


def test_center_and_three_crops():
  clip = np.arange(2 * 10 * 16 * 1, dtype=np.float32).reshape(2, 10, 16, 1)
  c = T.center_crop(clip, 10)
  np.testing.assert_array_equal(c, clip[:, :, 3:13])
  three = T.three_crops(clip, 10)  # landscape: left / centre / right
  assert three.shape == (3, 2, 10, 10, 1)
  np.testing.assert_array_equal(three[0], clip[:, :, 0:10])
  np.testing.assert_array_equal(three[1], clip[:, :, 3:13])
  np.testing.assert_array_equal(three[2], clip[:, :, 6:16])
  portrait = clip.transpose(0, 2, 1, 3)  # 16 x 10: top / centre / bottom
  three = T.three_crops(portrait, 10)
  np.testing.assert_array_equal(three[0], portrait[:, 0:10])
  np.testing.assert_array_equal(three[2], portrait[:, 6:16])


def test_normalize():
  clip = np.zeros((1, 1, 2, 3), np.uint8)
  clip[0, 0, 1] = 255
  out = T.normalize(clip)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out[0, 0, 0], -np.array(T.IMAGENET_MEAN) / np.array(T.IMAGENET_STD), rtol=1e-6)
  np.testing.assert_allclose(out[0, 0, 1], (1 - np.array(T.IMAGENET_MEAN)) / np.array(T.IMAGENET_STD), rtol=1e-6)


def test_test_clip_views_shapes():
  clip = _rng().integers(0, 256, size=(4, 48, 64, 3), dtype=np.uint8)
  assert T.test_clip_views(clip, short_side=32, crop_size=32).shape == (3, 4, 32, 32, 3)
  one = T.test_clip_views(clip, short_side=40, crop_size=32, three_crop=False)
  assert one.shape == (1, 4, 32, 32, 3)
  np.testing.assert_allclose(one[0], T.normalize(T.center_crop(T.resize_short_side(clip, 40), 32)))


def test_color_jitter_semantics():
  clip = _rng(5).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
  # Brightness only: one factor for every pixel of every frame, within [1 - b, 1 + b].
  out = T.color_jitter(clip, 0.5, 0, 0, 0, _rng(6)).astype(np.float64)
  mask = (clip > 20) & (out < 250)
  ratio = out[mask] / clip[mask]
  assert ratio.max() - ratio.min() < 0.05 and 0.5 <= ratio.mean() <= 1.5
  # Saturation and hue leave gray pixels unchanged.
  gray = np.repeat(_rng(7).integers(0, 256, size=(2, 4, 4, 1), dtype=np.uint8), 3, axis=-1)
  np.testing.assert_array_equal(T.color_jitter(gray, 0, 0, 0.9, 0.3, _rng(8)), gray)
  # p = 0 leaves the clip unchanged.
  np.testing.assert_array_equal(T.color_jitter(clip, 0.5, 0.5, 0.5, 0.2, _rng(9), p=0.0), clip)
  # Grayscale: equal channels.
  g = T.random_grayscale(clip, 1.0, _rng())
  assert np.all(g[..., 0] == g[..., 1]) and np.all(g[..., 1] == g[..., 2])


def test_color_ops_match_torchvision():
  torch = pytest.importorskip("torch")
  F = pytest.importorskip("torchvision.transforms.functional")
  clip = _rng(10).integers(0, 256, size=(2, 6, 7, 3), dtype=np.uint8)
  x = torch.from_numpy(clip.astype(np.float32) / 255).permute(0, 3, 1, 2)  # [T, C, H, W] in [0, 1]

  def tv(y):
    return np.round(y.permute(0, 2, 3, 1).numpy() * 255)

  xf = clip.astype(np.float32)
  np.testing.assert_allclose(T.adjust_hue(xf, 0.2), tv(F.adjust_hue(x, 0.2)), atol=1.5)
  np.testing.assert_allclose(T.adjust_hue(xf, -0.4), tv(F.adjust_hue(x, -0.4)), atol=1.5)
  np.testing.assert_allclose(T.adjust_brightness(xf, 1.3), tv(F.adjust_brightness(x, 1.3)), atol=1.0)
  np.testing.assert_allclose(T.adjust_contrast(xf, 0.6), tv(F.adjust_contrast(x, 0.6)), atol=1.0)
  np.testing.assert_allclose(T.adjust_saturation(xf, 1.7), tv(F.adjust_saturation(x, 1.7)), atol=1.0)
  del torch
