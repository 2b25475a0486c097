"""CtP: PatchMask invariants, key-frame helpers, target coding, loss, head (shape, flatten order, torch parity),
and the data builder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fedvssl_jax.losses.ctp import ctp_loss, decode_ctp_targets, encode_ctp_targets, smooth_l1
from fedvssl_jax.ops import roi_align
from fedvssl_jax.pretext import PRETEXT_TASKS
from fedvssl_jax.pretext import base
from fedvssl_jax.pretext.ctp import CtPBuilder, CtPHead, flatten_chw, make_rois
from fedvssl_jax.pretext.ctp_patch_mask import (PatchMaskParams, apply_patch_mask, base_alpha_mask, make_anchors,
                                                patch_mask, paste_order, rectangle_movement)


def _noise_clip(seed, t=16, h=64, w=80):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


class FakeReader:
  """A video whose frame i is random texture (seeded) plus a ramp; `read` records the requested indices."""

  def __init__(self, num_frames=40, h=48, w=64, seed=0):
    self.num_frames = num_frames
    rng = np.random.default_rng(seed)
    self.frames = rng.integers(0, 256, size=(num_frames, h, w, 3), dtype=np.uint8)
    self.calls = []

  def read(self, indices):
    indices = np.asarray(indices)
    self.calls.append(indices.copy())
    return self.frames[indices]


# ----------------------------------------------------------------------------------------------------------------------
# Key frames and interpolation
# ----------------------------------------------------------------------------------------------------------------------

def test_sample_key_frames_rules():
  rng = np.random.default_rng(0)
  counts = np.zeros(3)
  for _ in range(400):
    keys = base.sample_key_frames(16, (0.5, 0.3, 0.2), rng)
    assert keys[0] == 0 and keys[-1] == 15
    assert np.all(np.diff(keys) > 0)
    counts[min(len(keys) - 2, 2)] += 1
    if len(keys) == 3:
      assert 8 - 2 <= keys[1] <= 8 + 1          # tick int(16/2) with jitter randint(-2, 2)
  freq = counts / counts.sum()
  np.testing.assert_allclose(freq, [0.5, 0.3, 0.2], atol=0.08)
  np.testing.assert_array_equal(base.sample_key_frames(16, (1.0,), rng), [0, 15])


def test_interpolate_key_frames_examples():
  values = np.array([0.0, 5.0])
  inds = np.array([0, 10])
  np.testing.assert_allclose(base.interpolate_key_frames(values, inds, "uniform"), np.arange(11) * 0.5)
  np.testing.assert_allclose(base.interpolate_key_frames(values, inds, "accelerate"),
                             [0., .05, .2, .45, .8, 1.25, 1.8, 2.45, 3.2, 4.05, 5.])
  dec = base.interpolate_key_frames(values, inds, "decelerate")
  np.testing.assert_allclose(dec, 5.0 - base.interpolate_key_frames(values, inds, "accelerate")[::-1])
  multi = base.interpolate_key_frames(np.array([[0.0, 1.0], [4.0, 1.0], [4.0, 3.0]]), np.array([0, 4, 6]), "uniform")
  np.testing.assert_allclose(multi[:, 0], [0, 1, 2, 3, 4, 4, 4])
  np.testing.assert_allclose(multi[:, 1], [1, 1, 1, 1, 1, 2, 3])


# ----------------------------------------------------------------------------------------------------------------------
# PatchMask
# ----------------------------------------------------------------------------------------------------------------------

def test_anchors():
  anchors = make_anchors()
  assert anchors.shape == (42, 2)
  np.testing.assert_allclose(anchors[:, 0] * anchors[:, 1], np.tile([16, 24, 28, 32, 48, 64], 7) ** 2, rtol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_patch_mask_invariants(seed):
  clip = _noise_clip(seed, h=64, w=80)
  out, gt, params = patch_mask(clip, np.random.default_rng(seed), return_params=True)
  t, h, w = clip.shape[:3]
  assert out.dtype == np.uint8 and out.shape == clip.shape
  assert gt.dtype == np.float32 and gt.shape == (3, t, 4)
  np.testing.assert_array_equal(gt, np.round(gt))                    # integer boxes
  assert np.all(gt[..., 0] >= 0) and np.all(gt[..., 2] <= w)          # inside the image
  assert np.all(gt[..., 1] >= 0) and np.all(gt[..., 3] <= h)
  assert np.all(gt[..., 2] > gt[..., 0]) and np.all(gt[..., 3] > gt[..., 1])
  # Visibility: frame 0 and each source frame always visible.
  assert params.visible.shape == (3, t)
  assert np.all(params.visible[:, 0])
  assert np.all(params.visible[np.arange(3), params.source_frames])
  # Patches / alphas match the box sizes of every frame; alphas in [0, 1].
  for i in range(3):
    for f in range(t):
      bw, bh = int(gt[i, f, 2] - gt[i, f, 0]), int(gt[i, f, 3] - gt[i, f, 1])
      assert params.patches[i][f].shape == (bh, bw, 3)
      assert params.alphas[i][f].shape == (bh, bw)
      assert params.alphas[i][f].min() >= 0 and params.alphas[i][f].max() <= 1.0 + 1e-6
  # Pixels change only inside visible boxes.
  changed = np.any(out != clip, axis=-1)
  allowed = np.zeros_like(changed)
  for i in range(3):
    for f in range(t):
      if params.visible[i, f]:
        x1, y1, x2, y2 = gt[i, f].astype(int)
        allowed[f, y1:y2, x1:x2] = True
  assert not np.any(changed & ~allowed)
  assert changed.any()


def test_patch_mask_determinism_and_motion_limits():
  clip = _noise_clip(3)
  a, ga = patch_mask(clip, np.random.default_rng(42))
  b, gb = patch_mask(clip, np.random.default_rng(42))
  c, gc = patch_mask(clip, np.random.default_rng(43))
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(ga, gb)
  assert not np.array_equal(ga, gc)
  # Statistics over many draws: frame-0 sizes follow the jittered anchors, visibility rate ~ label_prob.
  rng = np.random.default_rng(0)
  vis = []
  big = _noise_clip(1, t=16, h=112, w=112)
  for _ in range(30):
    _, gt, p = patch_mask(big, rng, return_params=True)
    size0 = gt[:, 0, 2:] - gt[:, 0, :2]
    assert np.all(size0 <= 64 * np.sqrt(2) * np.exp(0.18) + 2)
    vis.append(p.visible[:, 1:])
  rate = np.mean(vis)
  assert 0.7 < rate < 0.92


def test_rectangle_movement_limits():
  """Without clipping (huge image) centres move at most 3 px per frame overall and sizes at most e^(.025 t)."""
  rng = np.random.default_rng(0)
  boxes = np.array([[500, 500, 540, 520], [300, 200, 316, 264], [100, 700, 148, 748]], np.float64)
  for _ in range(50):
    traj = rectangle_movement(boxes, (1000, 1000), 3.0, 0.025, 16, (0.5, 0.3, 0.2), rng)
    assert traj.shape == (3, 16, 4)
    np.testing.assert_allclose(traj[:, 0], boxes, atol=1e-9)
    ctr = (traj[..., :2] + traj[..., 2:]) / 2
    size = traj[..., 2:] - traj[..., :2]
    assert np.all(np.abs(ctr - ctr[:, :1]) <= 3.0 * 15 + 1e-6)
    assert np.all(np.abs(np.log(size / size[:, :1])) <= 0.025 * 15 + 1e-6)
  still = rectangle_movement(boxes, (1000, 1000), 0.0, 0.0, 16, (0.5, 0.3, 0.2), rng)
  np.testing.assert_allclose(still, np.repeat(boxes[:, None], 16, axis=1))


def test_patch_mask_label_prob_zero_pastes_only_frame0_and_source():
  clip = _noise_clip(5)
  _, _, p = patch_mask(clip, np.random.default_rng(1), return_params=True, label_prob=0.0)
  for i in range(3):
    expect = np.zeros(clip.shape[0], bool)
    expect[0] = True
    expect[p.source_frames[i]] = True
    np.testing.assert_array_equal(p.visible[i], expect)


def test_noise_patches_are_visible_where_clip_patches_are_not():
  """On a flat clip a patch cut from the clip changes (almost) nothing; `patch_source="noise"` pastes colour blocks along the
  same trajectories (the trajectories are drawn before the patches, so a seed gives the same boxes)."""
  flat = np.full((8, 48, 48, 3), 120, np.uint8)
  out_clip, gt_clip = patch_mask(flat, np.random.default_rng(7))
  out_noise, gt_noise, p = patch_mask(flat, np.random.default_rng(7), return_params=True, patch_source="noise",
                                      noise_block=3)
  np.testing.assert_array_equal(gt_clip, gt_noise)
  assert np.abs(out_clip.astype(int) - flat).max() <= 1    # only the blend's uint8 truncation
  assert np.abs(out_noise.astype(int) - flat).max() > 60
  for i in range(3):
    c = p.source_frames[i]
    patch = p.patches[i][c]                          # the source-frame patch is the texture itself (no resize)
    h, w = patch.shape[:2]
    cells = patch[::3, ::3]
    np.testing.assert_array_equal(patch, np.repeat(np.repeat(cells, 3, 0), 3, 1)[:h, :w])
    if h * w >= 36:
      assert patch.std() > 40                         # U{0..255} blocks, not the clip's flat 120
  with pytest.raises(ValueError, match="patch_source"):
    patch_mask(flat, np.random.default_rng(0), patch_source="video")
  with pytest.raises(ValueError, match="noise_block"):
    patch_mask(flat, np.random.default_rng(0), patch_source="noise", noise_block=0)
  with pytest.raises(ValueError, match="patch_mask.patch_source"):
    CtPBuilder(dict(patch_mask=dict(patch_source="nosie")))
  with pytest.raises(ValueError, match="patch_mask.noise_block"):  # at config time, not in a data worker
    CtPBuilder(dict(patch_mask=dict(patch_source="noise", noise_block=0)))


def test_apply_patch_mask_blend_and_order():
  clip = np.full((2, 10, 10, 3), 100, np.uint8)
  trajs = np.array([[[0, 0, 6, 6], [0, 0, 6, 6]],      # big
                    [[2, 2, 4, 4], [2, 2, 4, 4]]])     # small, must end on top
  patches = [[np.full((6, 6, 3), 200, np.uint8)] * 2, [np.full((2, 2, 3), 10, np.uint8)] * 2]
  alphas = [[np.full((6, 6), 0.5, np.float32)] * 2, [np.ones((2, 2), np.float32)] * 2]
  params = PatchMaskParams(trajs=trajs, source_frames=np.array([0, 0]), visible=np.array([[True, True], [True, False]]),
                           patches=patches, alphas=alphas, shapes=["rectangle", "rectangle"])
  np.testing.assert_array_equal(paste_order(trajs), [0, 1])
  out = apply_patch_mask(clip, params)
  assert out[0, 0, 0, 0] == 150 and out[0, 7, 7, 0] == 100
  assert out[0, 2, 2, 0] == 10                          # small patch pasted last, fully opaque
  assert out[1, 2, 2, 0] == 150                         # invisible on frame 1
  # uint8 truncation of the float blend: 100 * 0.7 + 201 * 0.3 = 130.3 -> 130.
  alphas2 = [[np.full((6, 6), 0.3, np.float32)] * 2, alphas[1]]
  patches2 = [[np.full((6, 6, 3), 201, np.uint8)] * 2, patches[1]]
  out2 = apply_patch_mask(clip, PatchMaskParams(trajs, np.array([0, 0]), params.visible, patches2, alphas2,
                                                params.shapes))
  assert out2[0, 0, 0, 0] == 130


def test_alpha_shapes():
  rect = base_alpha_mask(9, 7, "rectangle", None)
  assert np.all(rect == 1.0)
  ell = base_alpha_mask(9, 9, "ellipse", None)
  assert ell[4, 4] == 1.0 and ell[0, 0] == 0.0 and ell[4, 0] == 1.0
  rho = base_alpha_mask(9, 9, "rhombus", None)
  assert rho[4, 4] == 1.0 and rho[1, 1] == 0.0 and rho[4, 0] == 1.0
  soft = base_alpha_mask(20, 20, "rectangle", 0.3)
  assert soft[9, 9] == 1.0 and soft[0, 9] < 1.0 and soft[9, 0] < soft[9, 4]
  with pytest.raises(ValueError, match="unknown alpha shape"):
    base_alpha_mask(4, 4, "star", None)


# ----------------------------------------------------------------------------------------------------------------------
# Targets and loss
# ----------------------------------------------------------------------------------------------------------------------

def test_encode_hand_values_and_round_trip():
  gt = np.array([[[[10, 20, 30, 60], [12, 18, 34, 62], [10, 20, 10.5, 60]]]], np.float32)   # [1, 1, 3, 4]
  d = np.asarray(encode_ctp_targets(gt))
  np.testing.assert_allclose(d[0, 0, 0], [0, 0, 0, 0], atol=1e-6)
  # frame 1: centre (23, 40) vs (20, 40); size (22, 44) vs (20, 40).
  np.testing.assert_allclose(d[0, 0, 1], [3 / 0.8, 0 / 0.8, np.log(22 / 20) / 0.04, np.log(44 / 40) / 0.04],
                             rtol=1e-5)
  # frame 2: width 0.5 is clamped to 1.
  np.testing.assert_allclose(d[0, 0, 2, 2], np.log(1 / 20) / 0.04, rtol=1e-5)
  rng = np.random.default_rng(0)
  xy = rng.uniform(0, 50, size=(2, 3, 16, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(1, 40, size=(2, 3, 16, 2))], -1).astype(np.float32)
  back = decode_ctp_targets(encode_ctp_targets(boxes), boxes[:, :, 0])
  np.testing.assert_allclose(np.asarray(back), boxes, atol=1e-3)


def test_ctp_loss_hand_computation():
  pred = np.zeros((1, 1, 2, 4), np.float32)
  target = np.array([[[[0.5, -2.0, 0.0, 1.0], [0.0, 0.0, 3.0, -0.2]]]], np.float32)
  # smooth L1: .125, 1.5, 0, .5 | 0, 0, 2.5, .02
  total, terms = ctp_loss(jnp.asarray(pred), jnp.asarray(target))
  assert float(terms["loss_ctr"]) == pytest.approx((0.125 + 1.5) / 2, rel=1e-6)
  assert float(terms["loss_size"]) == pytest.approx((0.5 + 2.5 + 0.02) / 2, rel=1e-6)
  assert float(total) == pytest.approx((0.125 + 1.5 + 0.5 + 2.5 + 0.02) / 2, rel=1e-6)
  w = np.array([[[1.0, 0.0]]], np.float32)
  total_w, _ = ctp_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(w))
  assert float(total_w) == pytest.approx(0.125 + 1.5 + 0.5, rel=1e-6)
  total_0, _ = ctp_loss(jnp.asarray(pred), jnp.asarray(target), jnp.zeros((1, 1, 2)))
  assert float(total_0) == 0.0   # divided by max(1, 0)
  np.testing.assert_allclose(np.asarray(smooth_l1(jnp.array([0.0, 0.0]), jnp.array([0.9, 1.1]))), [0.405, 0.6],
                             rtol=1e-6)
  with pytest.raises(ValueError):
    ctp_loss(jnp.zeros((1, 1, 2, 4)), jnp.zeros((1, 1, 3, 4)))


# ----------------------------------------------------------------------------------------------------------------------
# Head
# ----------------------------------------------------------------------------------------------------------------------

def test_flatten_chw_order():
  x = jnp.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)            # [K, H, W, C]
  flat = np.asarray(flatten_chw(x))
  k, h, w, c = 1, 2, 3, 4
  assert flat[k, c * 12 + h * 4 + w] == int(x[k, h, w, c])
  np.testing.assert_array_equal(make_rois(jnp.ones((2, 3, 4)))[:, 0], [0, 0, 0, 1, 1, 1])


def _small_head(t_feat=2, c=6, hidden=8, frames=4, seed=0):
  head = CtPHead(c, t_feat, frames, hidden_channels=hidden, rngs=nnx.Rngs(seed))
  rng = np.random.default_rng(seed)
  # Non-trivial weights so that every stage matters.
  for var, scale in [(head.temporal_conv.kernel, 1.0), (head.temporal_conv.bias, 0.1), (head.fc1.kernel, 0.05),
                     (head.fc1.bias, 0.1), (head.fc2.kernel, 0.1), (head.fc2.bias, 0.1)]:
    var.set_value(jnp.asarray(rng.normal(size=var[...].shape) * scale, jnp.float32))
  return head


def _boxes(rng, b, n, img=64):
  xy = rng.uniform(0, img * 0.6, size=(b, n, 2))
  return np.concatenate([xy, xy + rng.uniform(4, img * 0.4, size=(b, n, 2))], -1).astype(np.float32)


def test_head_shape_and_manual_forward():
  head = _small_head()
  rng = np.random.default_rng(1)
  feats = rng.normal(size=(2, 2, 8, 8, 6)).astype(np.float32)
  boxes = _boxes(rng, 2, 3)
  out = np.asarray(head(jnp.asarray(feats), jnp.asarray(boxes)))
  assert out.shape == (2, 3, 4, 4)
  # Manual: the (2,1,1) temporal conv == Dense over [t0 channels, t1 channels].
  k = np.asarray(head.temporal_conv.kernel[...])                 # [2, 1, 1, C, hidden]
  g = np.maximum(np.einsum("bthwc,tcd->bhwd", feats, k[:, 0, 0]) + np.asarray(head.temporal_conv.bias[...]), 0)
  rois = np.concatenate([np.repeat(np.arange(2), 3)[:, None], boxes.reshape(6, 4)], 1).astype(np.float32)
  pooled = np.asarray(roi_align(jnp.asarray(g), jnp.asarray(rois), 5, 1 / 8, 2, True))   # [6, 5, 5, hidden]
  flat = np.stack([pooled[i].transpose(2, 0, 1).reshape(-1) for i in range(6)])       # PyTorch (C, H, W) order
  h = np.maximum(flat @ np.asarray(head.fc1.kernel[...]) + np.asarray(head.fc1.bias[...]), 0)
  want = (h @ np.asarray(head.fc2.kernel[...]) + np.asarray(head.fc2.bias[...])).reshape(2, 3, 4, 4)
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
  # Init: fcs N(0, 0.001), zero biases.
  fresh = CtPHead(32, 2, 16, rngs=nnx.Rngs(0))
  assert fresh.fc1.kernel[...].shape == (32 * 25, 32)
  assert abs(float(jnp.std(fresh.fc1.kernel[...])) - 0.001) < 2e-4
  assert float(jnp.abs(fresh.fc2.bias[...]).max()) == 0.0
  std_conv = float(jnp.std(fresh.temporal_conv.kernel[...]))
  assert abs(std_conv - np.sqrt(2.0 / (32 * 2))) < 0.03   # kaiming normal, fan_out = C_out * kT


def test_head_matches_torch():
  torch = pytest.importorskip("torch")
  tv_ops = pytest.importorskip("torchvision.ops")
  head = _small_head(seed=3)
  rng = np.random.default_rng(3)
  feats = rng.normal(size=(2, 2, 8, 8, 6)).astype(np.float32)
  boxes = _boxes(rng, 2, 3)
  out = np.asarray(head(jnp.asarray(feats), jnp.asarray(boxes)))
  with torch.no_grad():
    conv = torch.nn.Conv3d(6, 8, (2, 1, 1), bias=True)
    conv.weight.copy_(torch.from_numpy(np.asarray(head.temporal_conv.kernel[...]).transpose(4, 3, 0, 1, 2).copy()))
    conv.bias.copy_(torch.tensor(np.asarray(head.temporal_conv.bias[...])))
    fc1 = torch.nn.Linear(8 * 25, 8)
    fc1.weight.copy_(torch.from_numpy(np.asarray(head.fc1.kernel[...]).T.copy()))
    fc1.bias.copy_(torch.tensor(np.asarray(head.fc1.bias[...])))
    fc2 = torch.nn.Linear(8, 16)
    fc2.weight.copy_(torch.from_numpy(np.asarray(head.fc2.kernel[...]).T.copy()))
    fc2.bias.copy_(torch.tensor(np.asarray(head.fc2.bias[...])))
    x = torch.from_numpy(feats).permute(0, 4, 1, 2, 3)               # NCTHW
    g = torch.relu(conv(x).squeeze(2))
    rois = torch.cat([torch.arange(2).repeat_interleave(3).float()[:, None], torch.from_numpy(boxes).view(6, 4)], 1)
    r = tv_ops.roi_align(g, rois, 5, 1 / 8, 2, True)
    want = fc2(torch.relu(fc1(r.reshape(6, -1)))).view(2, 3, 4, 4).numpy()
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


def test_fan_in_fc_init_starts_off_the_saddle():
  """CtP's N(0, 0.001) fcs give each fc a gradient scaled by the other's tiny weights; "fan_in" (He-normal fc1, zero
  fc2) predicts zero at init, as CtP's nearly does, but gives fc2 a full-size gradient from the first step."""
  rng = np.random.default_rng(0)
  feats = jnp.asarray(np.maximum(rng.normal(size=(2, 1, 8, 8, 16)), 0), jnp.float32)
  boxes = jnp.asarray(_boxes(rng, 2, 3, img=64))
  target = jnp.asarray(rng.normal(size=(2, 3, 4, 4)), jnp.float32)

  def fc2_grad_norm(head):
    graphdef, state = nnx.split(head)
    grads = jax.grad(lambda s: jnp.sum((nnx.merge(graphdef, s)(feats, boxes) - target) ** 2))(state)
    return float(jnp.linalg.norm(grads["fc2"]["kernel"][...]))

  ctp = CtPHead(16, 1, 4, hidden_channels=16, rngs=nnx.Rngs(0))
  fan_in = CtPHead(16, 1, 4, hidden_channels=16, fc_init="fan_in", rngs=nnx.Rngs(0))
  assert float(jnp.abs(fan_in(feats, boxes)).max()) == 0.0
  assert float(jnp.abs(fan_in.fc2.kernel[...]).max()) == 0.0
  assert abs(float(jnp.std(fan_in.fc1.kernel[...])) - np.sqrt(2.0 / (16 * 25))) < 0.01
  assert fc2_grad_norm(fan_in) > 20 * fc2_grad_norm(ctp)
  with pytest.raises(ValueError, match="fc_init"):
    CtPHead(16, 1, 4, fc_init="lecun", rngs=nnx.Rngs(0))
  # The model config's fc_init reaches the head.
  model = PRETEXT_TASKS.get("ctp").make_model(
      {"arch": "r3d_18", "backbone_kwargs": {"width_multiplier": 1 / 16}, "clip_len": 4, "fc_init": "fan_in"},
      rngs=nnx.Rngs(0))
  assert float(jnp.abs(model.head.fc2.kernel[...]).max()) == 0.0


def test_head_rejects_wrong_feature_shape():
  head = _small_head()
  with pytest.raises(ValueError, match="in_temporal_size"):
    head(jnp.zeros((1, 3, 8, 8, 6)), jnp.zeros((1, 3, 4)))


# ----------------------------------------------------------------------------------------------------------------------
# Data builder and task
# ----------------------------------------------------------------------------------------------------------------------

def _plain_cfg(**over):
  cfg = dict(clip_len=8, strides=(1, 2), short_side_sizes=None, crop_size=40, flip_prob=1.0,
             hue_saturation=(0.0, 12, 0.1), dynamic_brightness=(0.0, 30), dynamic_contrast=(0.0, 0.12),
             mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
  cfg.update(over)
  return cfg


def test_builder_output_and_flip_consistency():
  reader = FakeReader(num_frames=30, h=40, w=40)
  builder = PRETEXT_TASKS.get("ctp").make_builder(_plain_cfg())
  assert isinstance(builder, CtPBuilder) and builder.min_frames >= 1
  for seed in range(4):
    ex = builder.build(reader, {"path": "fake"}, np.random.default_rng(seed))
    assert ex["video"].shape == (8, 40, 40, 3) and ex["video"].dtype == np.float32
    assert ex["gt_trajs"].shape == (3, 8, 4) and ex["gt_weights"].shape == (3, 8)
    np.testing.assert_array_equal(ex["gt_weights"], 1.0)
    # Crop == frame and flip always: the unpatched clip is the mirrored frames; identity normalisation.
    clip = np.round(ex["video"]).astype(np.int64)
    ref = reader.frames[reader.calls[-1]][:, :, ::-1].astype(np.int64)
    changed = np.any(clip != ref, axis=-1)
    inside = np.zeros_like(changed)
    for i in range(3):
      for t in range(8):
        x1, y1, x2, y2 = ex["gt_trajs"][i, t].astype(int)
        inside[t, y1:y2, x1:x2] = True
    assert changed.any()
    assert not np.any(changed & ~inside), "patches must be pasted where gt_trajs say (after the flip)"


def test_builder_defaults_and_normalisation():
  reader = FakeReader(num_frames=90, h=128, w=171)
  builder = CtPBuilder(None)
  ex = builder.build(reader, None, np.random.default_rng(0))
  assert ex["video"].shape == (16, 112, 112, 3)
  assert ex["gt_trajs"].shape == (3, 16, 4) and ex["gt_trajs"].max() <= 112
  assert -2.2 < ex["video"].min() and ex["video"].max() < 2.7
  idx = reader.calls[-1]
  assert len(idx) == 16 and np.all(np.diff(idx) >= 0)
  with pytest.raises(KeyError, match="patch_mask"):
    CtPBuilder({"patch_mask": {"bogus": 1}})


def _per_frame_values(values, out):
  """The one value per frame of `values` [T, H, W, 3] over the pixels of `out` not clipped to 0 / 255."""
  per_frame = []
  for t in range(len(out)):
    v = values[t][(out[t] > 0) & (out[t] < 255)]
    assert v.size and np.allclose(v, v[0], atol=1e-3), f"frame {t} is not changed uniformly"
    per_frame.append(float(v[0]))
  return np.array(per_frame)


def test_colour_ops():
  rng = np.random.default_rng(0)
  clip = rng.uniform(0, 255, size=(8, 6, 6, 3)).astype(np.float32)
  out = base.dynamic_brightness(clip, np.random.default_rng(1), 1.0, 30)
  diff = (out - clip)[np.logical_and(out > 0, out < 255)]
  assert diff.size and np.abs(diff).max() <= 30 + 1e-4
  # Dynamic: one shift per frame (unclipped pixels), not the same for every frame.
  shifts = _per_frame_values(out - clip, out)
  assert np.all(shifts != 0) and np.ptp(shifts) > 1.0
  assert np.array_equal(base.dynamic_contrast(clip, rng, 0.0, 0.12), clip)
  out = base.dynamic_contrast(clip, np.random.default_rng(1), 1.0, 0.12)
  factors = _per_frame_values(out / clip, out)
  assert np.all(np.abs(np.log(factors)) <= 0.12 + 1e-4) and np.ptp(factors) > 0.01
  hs = base.random_hue_saturation(clip, np.random.default_rng(2), 1.0, 12, 0.1)
  assert hs.shape == clip.shape and hs.dtype == np.float32 and not np.array_equal(hs, clip)
  gray = np.full((2, 4, 4, 3), 77.0, np.float32)
  np.testing.assert_allclose(base.random_hue_saturation(gray, np.random.default_rng(3), 1.0, 12, 0.1), gray, atol=1)


def test_aligned_box_iou_and_trajectory_iou():
  """CtP forward_test: mmcv bbox_overlaps(aligned=True) of the decoded predictions against the true boxes."""
  from fedvssl_jax.losses import ctp as ctp_losses

  a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 6, 6]], np.float32)
  b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
  np.testing.assert_allclose(np.asarray(ctp_losses.aligned_box_iou(a, b)), [1.0, 50 / 150, 0.0, 1 / 100], rtol=1e-6)
  torchvision = pytest.importorskip("torchvision")
  import torch
  rng = np.random.default_rng(0)
  p1 = rng.uniform(0, 20, size=(16, 2))
  p2 = rng.uniform(0, 20, size=(16, 2))
  boxes_a = np.concatenate([p1, p1 + rng.uniform(1, 10, size=(16, 2))], 1).astype(np.float32)
  boxes_b = np.concatenate([p2, p2 + rng.uniform(1, 10, size=(16, 2))], 1).astype(np.float32)
  ref = torchvision.ops.box_iou(torch.tensor(boxes_a), torch.tensor(boxes_b)).diagonal().numpy()
  np.testing.assert_allclose(np.asarray(ctp_losses.aligned_box_iou(boxes_a, boxes_b)), ref, rtol=1e-5, atol=1e-6)


def test_trajectory_iou_of_exact_and_shifted_predictions():
  from fedvssl_jax.losses.ctp import DEFAULT_TARGET_MEANS, DEFAULT_TARGET_STDS
  from fedvssl_jax.pretext.ctp import trajectory_iou

  class Oracle:  # predicts the encoded true trajectory (plus a shift of the centre, in pixels)
    target_means, target_stds = DEFAULT_TARGET_MEANS, DEFAULT_TARGET_STDS

    def __init__(self, shift):
      self.shift = shift

    def __call__(self, video, gt_trajs):
      d = encode_ctp_targets(gt_trajs)
      return d + jnp.asarray([self.shift / DEFAULT_TARGET_STDS[0], 0, 0, 0])

  t = np.arange(4, dtype=np.float32)
  traj = np.stack([np.stack([2 + t, 3 + 0 * t, 12 + t, 13 + 0 * t], -1)] * 2)[None]  # [1, 2, 4, 4], 10x10 boxes
  iou = np.asarray(trajectory_iou(Oracle(0.0), None, traj))
  assert iou.shape == (1, 2, 4)
  np.testing.assert_allclose(iou, 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(trajectory_iou(Oracle(5.0), None, traj)), 50 / 150, rtol=1e-4)
