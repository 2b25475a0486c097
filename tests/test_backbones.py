"""Backbone shapes, parameter counts, width scaling, dtypes, BatchNorm modes and pooling rules (no torch needed)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fedvssl_jax.models import (BACKBONES, ClassifierHead, abstract_backbone, build_backbone, export, layers,
                                resnet3d)

CTP_STRIDES = dict(spatial_downsample=(False, True, True, False), temporal_downsample=(False, True, True, True))
RESNETS = ("r3d_18", "r2plus1d_18", "r2plus1d_18_ctp")


def _abstract_out(name, shape, **kwargs):
  gdef, state = nnx.split(abstract_backbone(name, **kwargs))
  return jax.eval_shape(lambda s, x: nnx.merge(gdef, s)(x), state, jax.ShapeDtypeStruct(shape, jnp.float32))


def _num_params(module):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_registry_names_and_errors():
  assert set(BACKBONES.names()) == {"r3d_18", "r2plus1d_18", "r2plus1d_18_ctp", "s3d"}
  with pytest.raises(KeyError, match="unknown backbone 'r50'"):
    build_backbone("r50", rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match="spatial_downsample"):
    abstract_backbone("s3d", spatial_downsample=(False, True, True, True))
  with pytest.raises(ValueError, match="output"):
    abstract_backbone("r3d_18", output="logits")


@pytest.mark.parametrize("name", RESNETS)
def test_resnet_shapes(name):
  x = (1, 16, 112, 112, 3)
  fmap = _abstract_out(name, x, output="feature_map", **CTP_STRIDES)
  assert fmap.shape == (1, 2, 14, 14, 512)  # CtP pretraining: 512x2x14x14 (NCTHW)
  if name == "r3d_18":  # the other outputs do not depend on the conv type; keep the test cheap
    assert _abstract_out(name, x, output="feature_map").shape == (1, 2, 7, 7, 512)  # fine-tune strides
    pooled = _abstract_out(name, (2, 16, 112, 112, 3))
    assert pooled.shape == (2, 512) and pooled.dtype == jnp.float32
  if name == "r2plus1d_18":  # GOCA's R(2+1)D feature: adaptive pool to 1x2x2 -> 2048-d
    gp = _abstract_out(name, (2, 16, 112, 112, 3), pool_size=(1, 2, 2))
    assert gp.shape == (2, 2048) and gp.dtype == jnp.float32
  m = abstract_backbone(name, pool_size=(1, 2, 2))
  assert (m.feature_dim, m.out_channels) == (2048, 512)


def test_s3d_shapes():
  fmap = _abstract_out("s3d", (2, 16, 128, 128, 3), output="feature_map")
  assert fmap.shape == (2, 2, 4, 4, 1024)  # the pooled output is exercised by test_bfloat16_compute
  assert abstract_backbone("s3d").feature_dim == 1024
  assert abstract_backbone("s3d", pool_size=(1, 2, 2)).feature_dim == 4096


@pytest.mark.parametrize("name,expected", [("r3d_18", 33_166_272), ("r2plus1d_18", 31_300_125),
                                           ("r2plus1d_18_ctp", 33_165_639), ("s3d", 7_910_048)])
def test_parameter_counts(name, expected):
  # Published counts (backbone without fc); s3d: our no-gating S3D (see models/s3d.py).
  assert _num_params(abstract_backbone(name)) == expected


def test_midplanes_rules():
  tv = export.backbone_template("r2plus1d_18")
  ctp = export.backbone_template("r2plus1d_18_ctp")
  # mid-planes = Cout of conv_s; table of pretext_tasks.md §1.2.
  for layer, (m1, m2_ctp, m2_tv) in {"layer2": (230, 288, 230), "layer3": (460, 576, 460),
                                     "layer4": (921, 1152, 921)}.items():
    assert tv[f"{layer}/0/conv1/conv_s/kernel"].shape[-1] == m1 == ctp[f"{layer}/0/conv1/conv_s/kernel"].shape[-1]
    assert tv[f"{layer}/0/conv2/conv_s/kernel"].shape[-1] == m2_tv
    assert ctp[f"{layer}/0/conv2/conv_s/kernel"].shape[-1] == m2_ctp
  assert tv["layer1/0/conv1/conv_s/kernel"].shape == (1, 3, 3, 64, 144)
  assert ctp["stem/conv_s/kernel"].shape == (1, 7, 7, 3, 45)
  assert tv["stem/conv_t/kernel"].shape == (3, 1, 1, 45, 64)
  # Scaled channels: layer2 of width 1/8 has Cin 8, Cout 16.
  tv8 = export.backbone_template("r2plus1d_18", width_multiplier=1 / 8)
  ctp8 = export.backbone_template("r2plus1d_18_ctp", width_multiplier=1 / 8)
  assert tv8["layer2/0/conv2/conv_s/kernel"].shape[-1] == resnet3d.torchvision_midplanes(8, 16) == 28
  assert ctp8["layer2/0/conv2/conv_s/kernel"].shape[-1] == resnet3d.ctp_midplanes(16, 16) == 36


def test_bn_epsilon_defaults():
  assert abstract_backbone("r3d_18").stem.bn.epsilon == 1e-5
  assert abstract_backbone("r2plus1d_18").stem.bn_s.epsilon == 1e-5
  assert abstract_backbone("r2plus1d_18_ctp").layer1[0].bn1.epsilon == 1e-3
  assert abstract_backbone("r2plus1d_18_ctp", bn_epsilon=1e-5).layer1[0].bn1.epsilon == 1e-5


@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18_ctp", "s3d"])
def test_width_multiplier_shrinks(name):
  full, small = abstract_backbone(name), abstract_backbone(name, width_multiplier=1 / 8)
  assert _num_params(small) < _num_params(full) / 30
  assert small.out_channels == full.out_channels // 8
  tiny = abstract_backbone(name, width_multiplier=1 / 1000)  # every layer keeps >= 1 channel
  assert all(min(x.shape) >= 1 for x in jax.tree.leaves(nnx.state(tiny)))


def test_init_statistics():
  m = build_backbone("r3d_18", rngs=nnx.Rngs(0), width_multiplier=1 / 4)
  k = np.asarray(m.layer3[0].conv1.conv.kernel[...])  # (3,3,3,32,64)
  std = math.sqrt(2.0 / (64 * 27))  # kaiming normal, fan_out, relu
  assert abs(k.std() / std - 1) < 0.05 and abs(k.mean()) < 0.1 * std
  assert np.all(np.asarray(m.stem.bn.scale[...]) == 1) and np.all(np.asarray(m.stem.bn.bias[...]) == 0)
  head = ClassifierHead(16, 5, rngs=nnx.Rngs(1))
  assert np.asarray(head.fc.kernel[...]).std() < 0.003 and np.all(np.asarray(head.fc.bias[...]) == 0)


@pytest.mark.parametrize("name", ["s3d"])  # the ResNets' bfloat16 path: test_bfloat16_close_to_float32
def test_bfloat16_compute(name):
  m = build_backbone(name, rngs=nnx.Rngs(0), width_multiplier=1 / 16, dtype=jnp.bfloat16)
  m.eval()
  gdef, state = nnx.split(m)
  x = jax.random.normal(jax.random.key(0), (2, 8, 32, 32, 3))
  feats = jax.jit(lambda s, v: nnx.merge(gdef, s)(v))(state, x)
  assert feats.dtype == jnp.float32 and feats.shape == (2, m.feature_dim)
  assert bool(jnp.all(jnp.isfinite(feats))) and float(jnp.abs(feats).max()) > 0
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(m)))
  fm = build_backbone(name, rngs=nnx.Rngs(0), width_multiplier=1 / 16, dtype="bfloat16", output="feature_map")
  gdef_fm, st_fm = nnx.split(fm)
  out = jax.eval_shape(lambda s, v: nnx.merge(gdef_fm, s)(v), st_fm, x)
  assert out.dtype == jnp.bfloat16 and out.shape[-1] == fm.out_channels


def test_bfloat16_close_to_float32():
  x = jax.random.normal(jax.random.key(1), (2, 4, 32, 32, 3))
  m32 = build_backbone("r2plus1d_18_ctp", rngs=nnx.Rngs(0), width_multiplier=1 / 16)
  flat = export.flatten_state(m32)
  m16 = export.backbone_from_flat("r2plus1d_18_ctp", flat, width_multiplier=1 / 16, dtype=jnp.bfloat16)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(m16)))
  outs = []
  for m in (m32, m16):
    m.eval()
    gdef, st = nnx.split(m)
    outs.append(np.asarray(jax.jit(lambda s, v, g=gdef: nnx.merge(g, s)(v))(st, x)))
  rel = np.abs(outs[0] - outs[1]).max() / np.abs(outs[0]).max()
  assert 0 < rel < 0.05


def test_jit_train_step_updates_bn_and_params():
  m = build_backbone("r3d_18", rngs=nnx.Rngs(0), width_multiplier=1 / 16, **CTP_STRIDES)
  head = ClassifierHead(m.feature_dim, 3, dropout_rate=0.5, rngs=nnx.Rngs(params=1, dropout=2))
  m.train(), head.train()
  gdef, params, rest = nnx.split((m, head), nnx.Param, ...)
  tx = optax.sgd(0.1)
  opt_state = tx.init(params)
  x = jax.random.normal(jax.random.key(0), (4, 4, 32, 32, 3)) + 0.5
  y = jnp.array([0, 1, 2, 0])

  @jax.jit
  def step(params, rest, opt_state, x, y):
    def loss_fn(p, r):
      bb, hd = nnx.merge(gdef, p, r, copy=True)  # flax 0.12.8: needed to mutate BatchStats under jax.grad
      logits = hd(bb(x))
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, nnx.state((bb, hd), nnx.Not(nnx.Param))

    (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_rest, opt_state, loss

  new_params, new_rest, _, loss = step(params, rest, opt_state, x, y)
  assert np.isfinite(float(loss))
  bs_old = export.flatten_state(nnx.to_pure_dict(rest))
  bs_new = export.flatten_state(nnx.to_pure_dict(new_rest))
  changed = [k for k in bs_old if k.endswith(("/mean", "/var")) and not np.allclose(bs_old[k], bs_new[k])]
  n_stats = sum(k.endswith(("/mean", "/var")) for k in bs_old)
  assert len(changed) == n_stats  # every BatchNorm updated its running mean and var
  assert all(bs_new[k].dtype == np.float32 for k in bs_new if k.endswith(("/mean", "/var")))
  p_old = export.flatten_state(nnx.to_pure_dict(params))
  p_new = export.flatten_state(nnx.to_pure_dict(new_params))
  assert not np.allclose(p_old["0/layer4/1/conv2/conv/kernel"], p_new["0/layer4/1/conv2/conv/kernel"])

  # Eval mode uses the running statistics and leaves them untouched.
  m.eval()
  gdef_e, st_e = nnx.split(m)

  @jax.jit
  def eval_fwd(s, v):
    mm = nnx.merge(gdef_e, s)
    return mm(v), nnx.state(mm)

  _, st_after = eval_fwd(st_e, x)
  before = export.flatten_state(st_e)
  after = export.flatten_state(st_after)
  assert all(np.array_equal(before[k], after[k]) for k in before)


def test_batchnorm_pytorch_semantics():
  bn = layers.BatchNorm(3, momentum=0.9, epsilon=1e-5)
  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 5, 3)) * 2.0 + 1.0
  y = bn(x)
  xf = np.asarray(x).reshape(-1, 3)
  mean, var = xf.mean(0), xf.var(0)
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 3), (xf - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(bn.mean[...]), 0.1 * mean, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(bn.var[...]), 0.9 + 0.1 * xf.var(0, ddof=1), rtol=1e-5)  # unbiased
  bn.eval()
  np.testing.assert_allclose(np.asarray(bn(x)), (np.asarray(x) - np.asarray(bn.mean[...]))
                             / np.sqrt(np.asarray(bn.var[...]) + 1e-5), rtol=1e-4, atol=1e-5)


def _np_adaptive_avg(x, out):  # x [N,T,H,W,C], PyTorch's bin rule
  n, *sizes, c = x.shape
  res = np.zeros((n, *out, c))
  for idx in np.ndindex(*out):
    sl = tuple(slice((i * s) // o, -((-(i + 1) * s) // o)) for i, s, o in zip(idx, sizes, out))
    res[(slice(None), *idx)] = x[(slice(None), *sl)].mean(axis=(1, 2, 3))
  return res


def test_adaptive_pool_and_flatten_order():
  x = np.random.default_rng(0).normal(size=(2, 3, 7, 5, 4)).astype(np.float32)
  got = np.asarray(layers.pool_features(jnp.asarray(x), (1, 2, 2)))
  ref = _np_adaptive_avg(x, (1, 2, 2)).transpose(0, 4, 1, 2, 3).reshape(2, -1)  # NCTHW flatten
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(layers.pool_features(jnp.asarray(x), None)), x.mean((1, 2, 3)), rtol=1e-5)
  np.testing.assert_allclose(np.asarray(layers.adaptive_avg_pool3d(jnp.asarray(x), (2, 3, 2))),
                             _np_adaptive_avg(x, (2, 3, 2)), rtol=1e-5, atol=1e-6)


def test_max_pool_and_conv_padding_are_pytorch_style():
  x = -jnp.abs(jax.random.normal(jax.random.key(0), (1, 4, 6, 6, 2))) - 1.0  # all negative: zero padding would win
  y = layers.max_pool3d(x, (1, 3, 3), (1, 2, 2), (0, 1, 1))
  assert y.shape == (1, 4, 3, 3, 2) and bool(jnp.all(y < 0))
  np.testing.assert_allclose(np.asarray(y[0, 0, 0, 0]), np.asarray(x[0, 0, :2, :2].max((0, 1))))
  conv = layers.conv3d(1, 1, (1, 7, 7), (1, 2, 2), (0, 3, 3), rngs=nnx.Rngs(0))
  conv.kernel[...] = jnp.ones_like(conv.kernel[...])
  ones = jnp.ones((1, 1, 8, 8, 1))
  out = np.asarray(conv(ones))[0, 0, :, :, 0]
  assert out.shape == (4, 4)
  # PyTorch pads 3 on both sides: output 0 sees inputs 0..3 (4x4 ones), output 3 sees 3..7 (5x5); XLA 'SAME'
  # would pad (2, 3) and give 25 at (0, 0).
  assert out[0, 0] == 16 and out[-1, -1] == 25


def test_residual_frames_feed_the_stem_frame_differences():
  """`residual_frames=True`: the backbone equals the plain one (same weights) on x[:, 1:] - x[:, :-1], so a static
  background or a global brightness offset does not change its output; a 1-frame clip is a one-line error."""
  kw = dict(width_multiplier=0.125, output="pooled")
  plain = build_backbone("r3d_18", rngs=nnx.Rngs(3), **kw)
  residual = build_backbone("r3d_18", rngs=nnx.Rngs(3), residual_frames=True, **kw)
  plain.eval(), residual.eval()
  x = jax.random.normal(jax.random.key(0), (2, 5, 32, 32, 3))
  np.testing.assert_allclose(np.asarray(residual(x)), np.asarray(plain(x[:, 1:] - x[:, :-1])), rtol=1e-5, atol=1e-6)
  background = jax.random.normal(jax.random.key(1), (2, 1, 32, 32, 3))  # the same in every frame
  np.testing.assert_allclose(np.asarray(residual(x + background)), np.asarray(residual(x)), rtol=1e-4, atol=1e-5)
  assert not np.allclose(np.asarray(plain(x + background)), np.asarray(plain(x)), atol=1e-3)
  with pytest.raises(ValueError, match="residual_frames=True.*>= 2 frames"):
    residual(x[:, :1])
