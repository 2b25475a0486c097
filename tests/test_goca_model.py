"""GOCA two-stream model, clip builder, and a short end-to-end training run (builder -> model -> loss -> LARC)."""

import functools

import cv2

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fedvssl_jax.goca import data as goca_data
from fedvssl_jax.goca import larc as larc_lib
from fedvssl_jax.goca import prototypes as protos_lib
from fedvssl_jax.goca.model import FixedPrototypes, GOCAModel
from fedvssl_jax.losses import goca as goca_loss_lib
from input_pipeline import flow as flow_lib

ARCH = "r3d_18"
BACKBONE = {"width_multiplier": 1 / 16}
SMALL = dict(num_prototypes=32, embed_dim=8, hidden_dim=16)


def _rngs(seed):
  # The counter-based "rbg" PRNG keeps eager init of the many small kernels cheap on CPU.
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _flat_keys(model, var_type=None):
  state = nnx.state(model) if var_type is None else nnx.state(model, var_type)
  return ["/".join(str(p) for p in path) for path, _ in nnx.to_flat_state(state)]


def test_param_tree_and_prototype_variables():
  c = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
  model = nnx.eval_shape(lambda: GOCAModel(ARCH, BACKBONE, prototypes=c, rngs=nnx.Rngs(0), **SMALL))
  keys = _flat_keys(model)
  assert any(k.startswith("backbone/rgb/") for k in keys) and any(k.startswith("backbone/flow/") for k in keys)
  assert all(k.startswith(("backbone/rgb/", "backbone/flow/", "head/", "prototypes")) for k in keys), keys[:5]
  assert isinstance(model.prototypes, FixedPrototypes) and not isinstance(model.prototypes, nnx.Param)
  assert "prototypes" not in _flat_keys(model, nnx.Param)
  assert model.rgb_backbone is model.backbone.rgb and model.flow_backbone is model.backbone.flow
  learn = nnx.eval_shape(lambda: GOCAModel(ARCH, BACKBONE, learn_prototypes=True, share_head=False,
                                           rngs=nnx.Rngs(0), **SMALL))
  pkeys = _flat_keys(learn, nnx.Param)
  assert "prototypes" in pkeys
  assert any(k.startswith("head/rgb/") for k in pkeys) and any(k.startswith("head/flow/") for k in pkeys)
  with pytest.raises(ValueError, match="prototypes have shape"):
    GOCAModel(ARCH, BACKBONE, prototypes=c[:5], rngs=nnx.Rngs(0), **SMALL)


@functools.lru_cache(maxsize=None)
def _fixed_prototypes():
  return protos_lib.make_prototypes(32, 8, steps=200, seed=0, log_every=200, log_fn=lambda _: None)


def test_forward_shapes_bn_per_group_and_features():
  c = _fixed_prototypes()
  model = GOCAModel(ARCH, BACKBONE, prototypes=c, rngs=_rngs(0), **SMALL)
  model.train()
  graphdef, state = nnx.split(model)
  rng = np.random.default_rng(0)
  b = 3
  # Two clip-length groups with very different statistics: per-group BN normalises each on its own.
  g4 = jnp.asarray(rng.normal(size=(b, 2, 4, 16, 16, 3)), jnp.float32)
  g2 = jnp.asarray(rng.normal(size=(b, 3, 2, 16, 16, 3)) * 5 + 3, jnp.float32)

  flat = jnp.concatenate([jnp.swapaxes(g4[:, :, :2], 0, 1).reshape((2 * b, 2, 16, 16, 3)),
                          jnp.swapaxes(g2, 0, 1).reshape((3 * b, 2, 16, 16, 3))])

  @jax.jit
  def run(state):
    m = nnx.merge(graphdef, state)
    out = m([g4, g2], [g4 * 0.5, g2])
    other = nnx.merge(graphdef, state)
    alone = other.backbone.rgb(jnp.swapaxes(g2, 0, 1).reshape((3 * b, 2, 16, 16, 3)))
    mixed = other.backbone.rgb(flat)
    return out, alone, mixed, nnx.state(m)

  @jax.jit
  def run_features(state):
    m = nnx.merge(graphdef, state)
    m.eval()
    x, y = g4[:, 0], g4[:, 1] * 0.5
    return m.features(x, None), m.features(None, y), m.features(x, y)

  out, alone, mixed, new_state = run(state)
  rgb_only, flow_only, both = run_features(state)
  v, k, d = 5, 32, model.feature_dim
  assert out["scores_rgb"].shape == (v, b, k) and out["scores_flow"].shape == (v, b, k)
  assert out["z_rgb"].shape == (v, b, 8) and out["h_flow"].shape == (v, b, d)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(out["z_rgb"]), axis=-1), 1.0, rtol=1e-5)
  # Scores are cosines with the (unit) prototypes.
  np.testing.assert_allclose(np.asarray(out["scores_rgb"]), np.asarray(out["z_rgb"]) @ c.T, atol=1e-5)
  # View-major, grouped: views 2..4 are the 2-frame group, and equal the backbone run on that group alone.
  np.testing.assert_allclose(np.asarray(out["h_rgb"][2:]), np.asarray(alone).reshape(3, b, d), rtol=1e-4,
                             atol=1e-5)
  assert both.shape == (b, d)
  np.testing.assert_allclose(np.asarray(both), (np.asarray(rgb_only) + np.asarray(flow_only)) / 2, rtol=1e-5,
                             atol=1e-6)
  assert not np.allclose(np.asarray(rgb_only), np.asarray(flow_only))
  # A shared batch over both groups would give different group-2 features (BN statistics would be mixed).
  assert not np.allclose(np.asarray(mixed[2 * b:]), np.asarray(alone), atol=1e-3)
  # BatchNorm running statistics were updated (twice per stream: once per group).
  old = nnx.to_pure_dict(state)["backbone"]["rgb"]["stem"]
  new = nnx.to_pure_dict(new_state)["backbone"]["rgb"]["stem"]
  bn_name = next(n for n in old if "bn" in n)
  assert not np.allclose(np.asarray(old[bn_name]["mean"]), np.asarray(new[bn_name]["mean"]))
  with pytest.raises(ValueError, match="different batch sizes"):
    model([g4, g2[:1]], [g4, g2[:1]])
  # In-place re-normalisation of the stored prototype rows (GOCA does it before every step).
  model.prototypes[...] = model.prototypes[...] * 3.0
  model.normalize_prototypes()
  np.testing.assert_allclose(np.linalg.norm(np.asarray(model.prototypes[...]), axis=1), 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Clip builder on synthetic moving textures (numpy frames + TV-L1 flow), served by an in-memory reader.


def _moving_video(rng, n, size, velocity):
  """n uint8 RGB frames of a smooth random texture (random tint) translating by `velocity` px per frame."""
  pad = 3 * n + 4
  coarse = rng.random(((size + 2 * pad) // 3, (size + 2 * pad) // 3)).astype(np.float32)
  big = cv2.resize(coarse, (size + 2 * pad, size + 2 * pad), interpolation=cv2.INTER_LINEAR)
  big = (big - big.min()) / (np.ptp(big) + 1e-6)
  tint = rng.integers(0, 255, size=3).astype(np.float32)
  frames = []
  for i in range(n):
    y, x = pad - i * velocity[1], pad - i * velocity[0]
    g = big[y:y + size, x:x + size, None] * 255
    frames.append((0.6 * g + 0.4 * tint).astype(np.uint8))
  return np.stack(frames)


class ArrayReader:
  """The ClipReader interface (`num_frames`, `read`, `read_flow`) over in-memory uint8 frames."""

  def __init__(self, rgb, flow):
    self.rgb, self.flow = rgb, flow
    self.num_frames = min(len(rgb), len(flow))

  def read(self, idx):
    return self.rgb[np.asarray(idx)]

  def read_flow(self, idx):
    return self.flow[np.asarray(idx)]


@functools.lru_cache(maxsize=None)
def _dataset(num_videos=16, frames=10, size=20):
  rng = np.random.default_rng(0)
  velocities = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (2, 0), (0, 2)]
  videos = []
  for i in range(num_videos):
    rgb = _moving_video(rng, frames, size, velocities[i % len(velocities)])
    grays = [f.mean(axis=-1).astype(np.uint8) for f in rgb]
    videos.append((rgb, flow_lib.video_flow(grays, flow_lib.FAST_TVL1), i % len(velocities)))
  return videos


def _builder():
  return goca_data.GOCAClipBuilder(clip_lens=(4, 2), num_clips=(2, 2), stride=1, min_start_distance=2,
                                   crop_size=16, short_side_range=(16, 20))


def test_clip_builder():
  rgb, flow, label = _dataset()[6]  # moves right at 2 px / frame
  builder = _builder()
  assert builder.min_frames == 4 and builder.num_views == 4
  assert builder.view_keys("flow") == ["flow_4", "flow_2"]
  out = builder.build(ArrayReader(rgb, flow), {"label": label}, np.random.default_rng(1))
  assert set(out) == {"rgb_4", "rgb_2", "flow_4", "flow_2", "label"}
  assert out["rgb_4"].shape == (2, 4, 16, 16, 3) and out["flow_2"].shape == (2, 2, 16, 16, 3)
  assert out["rgb_4"].dtype == np.float32 and int(out["label"]) == label
  # Flow clips are normalised flow images: the u channel (index 2) carries the motion; no colour jitter, so the
  # constant 128 channel stays constant. A flip negates u, so |u| is preserved.
  mean, std = np.asarray(goca_data.transforms.IMAGENET_MEAN), np.asarray(goca_data.transforms.IMAGENET_STD)
  f = out["flow_4"] * std + mean  # back to [0, 1]
  np.testing.assert_allclose(f[..., 0], 128 / 255, atol=1e-5)
  u = f[..., 2] * 40 - 20
  assert np.all(np.abs(u.mean(axis=(1, 2, 3))) > 1.0)
  # Same frame indices for RGB and flow, but independent spatial augmentation per stream / clip.
  rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
  a = builder.build(ArrayReader(rgb, flow), {"label": label}, rng_a)
  b_ = builder.build(ArrayReader(rgb, flow), {"label": label}, rng_b)
  np.testing.assert_array_equal(a["rgb_2"], b_["rgb_2"])  # deterministic given the rng
  rgb_only = goca_data.GOCAClipBuilder(clip_lens=(4, 2), num_clips=(2, 2), stride=1, crop_size=16,
                                       short_side_range=None, with_flow=False)
  assert "flow_4" not in rgb_only.build(ArrayReader(rgb, flow), {"label": 0}, np.random.default_rng(0))
  with pytest.raises(ValueError, match="distinct"):
    goca_data.GOCAClipBuilder(clip_lens=(4, 4), num_clips=(1, 1))


def test_short_training_run_lowers_loss_without_collapse():
  videos = _dataset()
  # One clip-length group keeps the compile small (the two-group path is covered above).
  builder = goca_data.GOCAClipBuilder(clip_lens=(4,), num_clips=(4,), stride=1, min_start_distance=2, crop_size=16,
                                      short_side_range=(16, 20))
  batch_size = 16

  def make_batch(seed):
    rng = np.random.default_rng(seed)
    items = [builder.build(ArrayReader(r, f), {"label": y}, rng) for r, f, y in videos[:batch_size]]
    return {k: np.stack([it[k] for it in items]) for k in items[0]}

  model = GOCAModel(ARCH, BACKBONE, prototypes=_fixed_prototypes(), rngs=_rngs(1), **SMALL)
  model.train()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  steps = 12
  sched = larc_lib.goca_schedule(base_lr=0.25, global_batch=batch_size, warmup_steps=2, total_steps=steps,
                                 start_warmup=0.25, final_lr=0.25)
  tx = larc_lib.goca_optimizer(sched, momentum=0.9, weight_decay=1e-4, trust=0.01)
  opt_state = tx.init(params)
  c_before = np.asarray(nnx.to_pure_dict(rest)["prototypes"])
  loss_kw = dict(assign_views=(0, 1), temperature=0.1, epsilon=0.05, epsilon2=0.03, num_iters=3, use_prior=True,
                 prior_sign=1)

  def loss_fn(params, rest, batch):
    m = nnx.merge(graphdef, params, rest, copy=True)  # fresh Variables at the grad trace level (BN mutates them)
    out = m([batch[k] for k in builder.view_keys("rgb")], [batch[k] for k in builder.view_keys("flow")])
    loss, metrics = goca_loss_lib.goca_loss(out["scores_rgb"], out["scores_flow"], **loss_kw)
    return loss, (metrics, nnx.state(m, nnx.Not(nnx.Param)))

  @jax.jit
  def train_step(params, rest, opt_state, batch):
    (_, (metrics, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_rest, opt_state, metrics

  history = []
  for step in range(steps):
    params, rest, opt_state, metrics = train_step(params, rest, opt_state, make_batch(step))
    history.append(float(metrics["loss"]))
  assert np.all(np.isfinite(history))
  # Fresh augmentations every step: compare the first and last few steps.
  assert np.mean(history[-3:]) < np.mean(history[:3]) - 0.2, history
  # No collapse: the Sinkhorn codes of the 2 x 16 assigned clips spread over many of the 32 prototypes (collapsed
  # embeddings give identical scores and a single code). (At this tiny scale the argmax of the *predictions*
  # concentrates on a few prototypes in the first steps, as in early SwAV training.)
  assert int(metrics["protos_used_rgb"]) >= 8 and int(metrics["protos_used_flow"]) >= 8, metrics
  # Fixed prototypes are untouched by the optimiser.
  np.testing.assert_array_equal(np.asarray(nnx.to_pure_dict(rest)["prototypes"]), c_before)


@pytest.mark.parametrize("arch", ["s3d", "r2plus1d_18"])
def test_goca_config_bn_epsilon_is_pytorch_default(arch):
  """GOCA's s3dg.py / my_r2plus1d_18.py use nn.BatchNorm3d() (eps 1e-5); our S3D's own default is 1e-3."""
  from fedvssl_jax.config_utils import load_recipe
  from fedvssl_jax.models import layers
  from fedvssl_jax.goca import runner as goca_trainer

  config = load_recipe("goca").get_config("demo")
  config.model.arch = arch
  if arch == "s3d":
    config.model.backbone_kwargs.pool_size = None
  config.model.backbone_kwargs.width_multiplier = 1 / 16
  protos = np.eye(config.model.num_prototypes, config.model.embed_dim, dtype=np.float32) + 0.01
  model = nnx.eval_shape(lambda: goca_trainer.build_model(config, nnx.Rngs(0), prototypes=protos))
  eps = {m.epsilon for _, m in nnx.iter_graph(model.backbone) if isinstance(m, layers.BatchNorm)}
  assert eps == {1e-5}


def test_rgb_residual_frames_apply_to_the_rgb_stream_only(tmp_path):
  """`config.model.rgb_residual_frames`: the RGB backbone sees frame differences (a static image added to every frame
  leaves its features unchanged), the flow backbone sees its input; the exported RGB backbone's model.json says so,
  so a later kNN / fine-tuning run rebuilds the same input."""
  import ml_collections

  from fedvssl_jax.goca import runner as goca_runner
  from fedvssl_jax.models import export

  config = ml_collections.ConfigDict(dict(model=dict(
      arch=ARCH, backbone_kwargs=dict(BACKBONE), rgb_residual_frames=True, **SMALL, share_head=True,
      learn_prototypes=False), goca=dict(modality="rgb_flow", merge="prior")))
  model = goca_runner.build_model(config, _rngs(0), prototypes=_fixed_prototypes())
  model.eval()
  assert model.backbone.rgb.residual_frames and not model.backbone.flow.residual_frames
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 4, 16, 16, 3)), jnp.float32)
  static = jnp.asarray(rng.normal(size=(2, 1, 16, 16, 3)), jnp.float32)
  np.testing.assert_allclose(model.backbone.rgb(x + static), model.backbone.rgb(x), rtol=1e-4, atol=1e-5)
  assert not np.allclose(model.backbone.flow(x + static), model.backbone.flow(x), atol=1e-3)
  paths = goca_runner.export_backbones(config, str(tmp_path), model)
  assert export.read_meta(paths["rgb"])["backbone_kwargs"]["residual_frames"] is True
  assert "residual_frames" not in export.read_meta(paths["flow"])["backbone_kwargs"]
  with pytest.raises(ValueError, match="stream_kwargs keys"):
    GOCAModel(ARCH, BACKBONE, rngs=_rngs(0), stream_kwargs={"depth": {}}, **SMALL)
