"""RoIAlign against torchvision.ops.roi_align, under jit, and its gradient against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedvssl_jax.ops import roi_align


def _random_case(seed, n=3, h=14, w=11, c=4, k=48):
  """Feature maps and RoIs covering edges, partly-outside, tiny, large boxes and several batch indices."""
  rng = np.random.default_rng(seed)
  feats = rng.normal(size=(n, h, w, c)).astype(np.float32)
  scale = 8.0
  img_w, img_h = w * scale, h * scale
  b = rng.integers(0, n, size=k)
  xy = rng.uniform(-0.3 * img_w, 1.1 * img_w, size=(k, 2)) * np.array([1.0, img_h / img_w])
  wh = rng.uniform(0.5, 1.2 * img_w, size=(k, 2))
  wh[:8] = rng.uniform(0.0, 3.0, size=(8, 2))                         # tiny (sub-pixel at stride 8)
  boxes = np.concatenate([xy, xy + wh], axis=1)
  boxes[8] = [0, 0, img_w, img_h]                                      # the whole image
  boxes[9] = [img_w - 4, img_h - 4, img_w + 40, img_h + 40]            # bottom-right corner, mostly outside
  boxes[10] = [-50, -50, 3, 3]                                         # top-left corner, mostly outside
  boxes[11] = [-200, -200, -150, -150]                                 # entirely outside: zeros
  boxes[12] = [-20, 10, 2.5 * img_w, 30]                               # larger than the image
  boxes[13] = [img_w - 1, 5, img_w - 1, 60]                            # zero width at the edge
  rois = np.concatenate([b[:, None].astype(np.float32), boxes.astype(np.float32)], axis=1)
  return feats, rois


def _torch_roi_align(feats, rois, out, scale, sr, aligned):
  torch = pytest.importorskip("torch")
  tv_ops = pytest.importorskip("torchvision.ops")
  f = torch.from_numpy(feats).permute(0, 3, 1, 2).contiguous()
  r = torch.from_numpy(rois)
  y = tv_ops.roi_align(f, r, out, spatial_scale=scale, sampling_ratio=sr, aligned=aligned)
  return y.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_matches_torchvision(aligned, sampling_ratio):
  feats, rois = _random_case(seed=int(aligned) * 10 + (sampling_ratio > 0))
  for out in [(5, 5), (3, 4)]:
    want = _torch_roi_align(feats, rois, out, 1 / 8, sampling_ratio, aligned)
    got = np.asarray(roi_align(jnp.asarray(feats), jnp.asarray(rois), out, 1 / 8, sampling_ratio, aligned))
    assert got.shape == (rois.shape[0],) + out + (feats.shape[-1],)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert np.all(got[11] == 0.0)  # the RoI entirely outside the map pools nothing


@pytest.mark.parametrize("aligned", [True, False])
def test_jit_matches_torchvision(aligned):
  """Under jit (traced RoIs) the adaptive grid uses the static bound; in-image RoIs are exact."""
  feats, rois = _random_case(seed=7)
  inside = rois.copy()
  img_h, img_w = feats.shape[1] * 8, feats.shape[2] * 8
  inside[:, 1::2] = np.clip(inside[:, 1::2], 0, img_w)
  inside[:, 2::2] = np.clip(inside[:, 2::2], 0, img_h)
  fn = jax.jit(lambda f, r: roi_align(f, r, 5, 1 / 8, -1, aligned))
  np.testing.assert_allclose(np.asarray(fn(feats, inside)), _torch_roi_align(feats, inside, (5, 5), 1 / 8, -1, aligned),
                             atol=1e-5, rtol=1e-5)
  fn2 = jax.jit(lambda f, r: roi_align(f, r, 5, 1 / 8, 2, aligned))
  np.testing.assert_allclose(np.asarray(fn2(feats, rois)), _torch_roi_align(feats, rois, (5, 5), 1 / 8, 2, aligned),
                             atol=1e-5, rtol=1e-5)
  # A generous explicit bound reproduces torchvision for every RoI, even the ones larger than the map.
  fn3 = jax.jit(lambda f, r: roi_align(f, r, 5, 1 / 8, -1, aligned, max_adaptive_grid=8))
  np.testing.assert_allclose(np.asarray(fn3(feats, rois)), _torch_roi_align(feats, rois, (5, 5), 1 / 8, -1, aligned),
                             atol=1e-5, rtol=1e-5)


def test_hand_computed_value():
  """A 1x1 output over a known linear ramp equals the ramp at the RoI centre (bilinear is exact on ramps)."""
  h, w = 6, 7
  ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
  feats = (2.0 * xs + 3.0 * ys)[None, :, :, None]
  rois = np.array([[0, 1.0, 2.0, 4.0, 3.0]], np.float32)   # aligned: x in [0.5, 3.5], y in [1.5, 2.5]
  got = float(roi_align(jnp.asarray(feats), jnp.asarray(rois), 1, 1.0, 2, aligned=True)[0, 0, 0, 0])
  assert got == pytest.approx(2.0 * 2.0 + 3.0 * 2.0, abs=1e-5)
  got_na = float(roi_align(jnp.asarray(feats), jnp.asarray(rois), 1, 1.0, 2, aligned=False)[0, 0, 0, 0])
  assert got_na == pytest.approx(2.0 * 2.5 + 3.0 * 2.5, abs=1e-5)


def test_gradient_matches_finite_differences():
  feats, rois = _random_case(seed=3, n=2, h=6, w=5, c=2, k=16)
  rois[:, 0] = np.minimum(rois[:, 0], 1)
  cot = np.random.default_rng(1).normal(size=(rois.shape[0], 3, 3, 2))
  with jax.enable_x64(True):
    f64 = jnp.asarray(feats, jnp.float64)
    r64 = jnp.asarray(rois, jnp.float64)
    c64 = jnp.asarray(cot, jnp.float64)

    def objective(f):
      return jnp.sum(roi_align(f, r64, 3, 1 / 8, 2, aligned=True) * c64)

    grad = np.asarray(jax.grad(objective)(f64))
    assert grad.dtype == np.float64
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(25):
      idx = tuple(int(rng.integers(s)) for s in feats.shape)
      e = np.zeros(feats.shape)
      e[idx] = eps
      numeric = (float(objective(f64 + e)) - float(objective(f64 - e))) / (2 * eps)
      assert grad[idx] == pytest.approx(numeric, abs=1e-7)
    # The gradient is also linear in the cotangent: the op is linear in the features.
    assert float(jnp.sum(grad * f64)) == pytest.approx(float(objective(f64)), rel=1e-10)


def test_gradient_matches_torch():
  torch = pytest.importorskip("torch")
  tv_ops = pytest.importorskip("torchvision.ops")
  feats, rois = _random_case(seed=5, n=2, h=8, w=9, c=3, k=16)
  rois[:, 0] = np.minimum(rois[:, 0], 1)
  cot = np.random.default_rng(2).normal(size=(rois.shape[0], 5, 5, 3)).astype(np.float32)
  grad = jax.grad(lambda f: jnp.sum(roi_align(f, jnp.asarray(rois), 5, 1 / 8, 2, True) * cot))(jnp.asarray(feats))
  f = torch.from_numpy(feats).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
  y = tv_ops.roi_align(f, torch.from_numpy(rois), 5, 1 / 8, 2, True)
  (y * torch.from_numpy(cot).permute(0, 3, 1, 2)).sum().backward()
  np.testing.assert_allclose(np.asarray(grad), f.grad.permute(0, 2, 3, 1).numpy(), atol=1e-5, rtol=1e-5)


def test_bad_input():
  with pytest.raises(ValueError, match="rois must be"):
    roi_align(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 4)), 2)
  with pytest.raises(ValueError, match="features must be"):
    roi_align(jnp.zeros((4, 4, 2)), jnp.zeros((3, 5)), 2)
