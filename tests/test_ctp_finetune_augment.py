"""CtP's fine-tuning augmentation (three independent colour ops, (w, h) scales, 171x128 test resize), the default of
configs/finetune_*.py; the torchvision-style ColorJitter path behind `train.augment="colorjitter"`."""

import numpy as np
import pytest

from input_pipeline import transforms


def _clip(seed=0, shape=(4, 16, 20, 3), lo=60, hi=190):
  return np.random.default_rng(seed).integers(lo, hi, size=shape, dtype=np.uint8)


def test_brightness_is_one_additive_shift_within_32():
  clip = _clip()
  shifts = set()
  for seed in range(20):
    out = transforms.ctp_color_augment(clip, np.random.default_rng(seed), (32.0, 0.0, 0.0, 0.0, 1.0))
    d = out.astype(int) - clip.astype(int)
    assert d.max() - d.min() <= 1 and abs(d.mean()) <= 32.5  # one shift for every pixel (rounding aside)
    shifts.add(int(round(d.mean())))
  assert len(shifts) > 5  # drawn per clip


def test_contrast_scales_by_exp_of_at_most_0_2():
  clip = _clip(lo=100, hi=180)
  for seed in range(10):
    out = transforms.ctp_color_augment(clip, np.random.default_rng(seed), (0.0, 0.2, 0.0, 0.0, 1.0))
    ratio = out.astype(np.float64).sum() / clip.astype(np.float64).sum()
    assert np.exp(-0.2) - 0.01 <= ratio <= np.exp(0.2) + 0.01 and not np.isclose(ratio, 1.0, atol=1e-3)


def test_hue_turns_at_most_24_degrees_and_saturation_scales():
  red = np.zeros((2, 4, 4, 3), np.uint8)
  red[..., 0] = 200
  red[..., 1] = 50
  red[..., 2] = 50
  for seed in range(10):
    out = transforms.ctp_color_augment(red, np.random.default_rng(seed), (0.0, 0.0, 12.0, 0.0, 1.0))
    hsv_in, hsv_out = (transforms.cv2.cvtColor(x[0].astype(np.float32) / 255.0, transforms.cv2.COLOR_RGB2HSV)
                       for x in (red, out))
    turn = (hsv_out[0, 0, 0] - hsv_in[0, 0, 0] + 180.0) % 360.0 - 180.0
    assert abs(turn) <= 24.0 + 1.0 and abs(hsv_out[0, 0, 1] - hsv_in[0, 0, 1]) < 0.02
  out = transforms.ctp_color_augment(red, np.random.default_rng(0), (0.0, 0.0, 0.0, 0.1, 1.0))
  s_in, s_out = (transforms.cv2.cvtColor(x[0].astype(np.float32) / 255.0, transforms.cv2.COLOR_RGB2HSV)[0, 0, 1]
                 for x in (red, out))
  assert np.exp(-0.1) - 0.02 <= s_out / s_in <= np.exp(0.1) + 0.02


def test_each_op_applies_with_its_own_probability():
  clip = _clip()
  assert np.array_equal(transforms.ctp_color_augment(clip, np.random.default_rng(0), (32, 0.2, 12, 0.1, 0.0)), clip)
  changed = [not np.array_equal(transforms.ctp_color_augment(clip, np.random.default_rng(s)), clip)
             for s in range(400)]
  # P(at least one of three ops at p=0.2) = 1 - 0.8^3 = 0.488
  assert 0.40 < np.mean(changed) < 0.58


def test_scales_wh_resize_to_a_listed_pair_then_crop():
  clip = _clip(shape=(3, 60, 100, 3))
  # One pair: the crop is a window of resize((40, 30)) (the height 30 is the crop's, so only x moves).
  resized = transforms.normalize(transforms.resize(clip, (40, 30)))
  out = transforms.train_clip_augment(clip, np.random.default_rng(0), scales_wh=((40, 30),), crop_size=30,
                                      flip_p=0.0, ctp_color=(0, 0, 0, 0, 0.0))
  assert out.shape == (3, 30, 30, 3)
  assert any(np.allclose(out, resized[:, :, x:x + 30]) for x in range(11))
  # the aspect ratio is not kept: a (40, 30) scale of a 60x100 clip is what resize((40, 30)) gives
  views = transforms.test_clip_views(clip, short_side=0, crop_size=30, three_crop=False, resize_wh=(40, 30))
  expected = transforms.normalize(transforms.center_crop(transforms.resize(clip, (40, 30)), 30))
  np.testing.assert_allclose(views[0], expected)


def test_finetune_configs_default_to_ctp_augmentation():
  from configs import finetune_hmdb51, finetune_ucf101, supervised
  from fedvssl_jax.config_utils import ConfigError
  from fedvssl_jax.evaluation import supervised as supervised_lib

  for module in (finetune_ucf101, finetune_hmdb51):
    config = module.get_config()
    assert config.train.augment == "ctp" and tuple(config.test.resize_wh) == (171, 128)
    assert tuple(map(tuple, config.train.scales_wh)) == transforms.CTP_SCALES_WH
    assert tuple(config.train.ctp_color) == transforms.CTP_COLOR
    train, test = supervised_lib.make_builders(config)
    assert train.scales_wh == transforms.CTP_SCALES_WH and train.jitter is None and test.resize_wh == (171, 128)
    config.train.augment = "colorjitter"  # today's path, by name
    train, _ = supervised_lib.make_builders(config)
    assert train.scales_wh is None and train.ctp_color is None and train.jitter is not None
    config.train.augment = "ctpp"
    with pytest.raises(ConfigError, match="config.train.augment"):
      supervised_lib.make_builders(config)
  assert supervised.get_config().train.augment == "colorjitter"
  assert finetune_ucf101.get_config("demo").train.augment == "colorjitter"
