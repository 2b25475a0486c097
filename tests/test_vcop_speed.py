"""VCOP and Speed: data builders on a fake reader whose frames encode their index, heads, losses and the registry."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fedvssl_jax.losses.classification import accuracy, cross_entropy, topk_accuracy
from fedvssl_jax.pretext import PRETEXT_TASKS, SpeedHead, SpeedModel, VCOPHead, VCOPModel
from fedvssl_jax.pretext.speed import SPEED_STRIDES
from fedvssl_jax.pretext.vcop import pair_indices, permutations

# Identity normalisation: video values are the uint8 pixel values.
IDENTITY = dict(mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))


class IndexReader:
  """Frame i is a constant image with value i (channel 0), so decoded pixels give back the frame index."""

  def __init__(self, num_frames, h=36, w=48):
    self.num_frames = num_frames
    self.h, self.w = h, w
    self.calls = []

  def read(self, indices):
    indices = np.asarray(indices)
    self.calls.append(indices.copy())
    frames = np.zeros((len(indices), self.h, self.w, 3), np.uint8)
    frames[..., 0] = indices[:, None, None]
    frames[..., 1] = 7
    return frames


def _frame_ids(video):
  """[..., H, W, 3] normalised-identity video -> frame index per frame (checks frames are constant)."""
  v = np.round(video[..., 0]).astype(np.int64)
  assert np.all(v == v[..., :1, :1])
  return v[..., 0, 0]


# ----------------------------------------------------------------------------------------------------------------------
# VCOP
# ----------------------------------------------------------------------------------------------------------------------

def test_permutations_and_pairs():
  perms = permutations(3)
  np.testing.assert_array_equal(perms, [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
  assert pair_indices(3) == ((0, 1), (0, 2), (1, 2))


def test_vcop_builder_known_permutations():
  reader = IndexReader(num_frames=100)
  builder = PRETEXT_TASKS.get("vcop").make_builder(dict(clip_len=16, interval=8, resize_wh=(64, 48), crop_size=40,
                                                        **IDENTITY))
  seen = set()
  for seed in range(40):
    ex = builder.build(reader, None, np.random.default_rng(seed))
    assert ex["video"].shape == (3, 16, 40, 40, 3) and ex["video"].dtype == np.float32
    label = int(ex["label"])
    assert ex["label"].dtype == np.int32 and 0 <= label < 6
    seen.add(label)
    idx = reader.calls[-1].reshape(3, 16)
    # Temporal clips: 16 consecutive frames, 8 frames between clips.
    np.testing.assert_array_equal(np.diff(idx, axis=1), 1)
    np.testing.assert_array_equal(idx[1:, 0] - idx[:-1, -1], 9)
    perm = list(itertools.permutations(range(3)))[label]
    np.testing.assert_array_equal(_frame_ids(ex["video"]), idx[list(perm)])
  assert seen == set(range(6))


def test_vcop_builder_defaults_resize_and_portrait():
  reader = IndexReader(num_frames=70, h=240, w=320)
  ex = PRETEXT_TASKS.get("vcop").make_builder({}).build(reader, None, np.random.default_rng(0))
  assert ex["video"].shape == (3, 16, 112, 112, 3)
  portrait = IndexReader(num_frames=70, h=64, w=48)
  b = PRETEXT_TASKS.get("vcop").make_builder(dict(resize_wh=(60, 50), crop_size=44, **IDENTITY))
  ex = b.build(portrait, None, np.random.default_rng(0))
  assert ex["video"].shape == (3, 16, 44, 44, 3)


class MeanBackbone(nnx.Module):
  """Stand-in backbone: per-clip mean colour and a clip-id channel, pooled output [N, 4]."""

  feature_dim = 4
  out_channels = 4

  def __call__(self, x):
    m = x.mean(axis=(1, 2, 3))
    return jnp.concatenate([m, m[:, :1] * 2.0], axis=-1)


def _set_random(module, seed):
  rng = np.random.default_rng(seed)
  for _, var in nnx.iter_graph(module):
    if isinstance(var, nnx.Param):
      var.set_value(jnp.asarray(rng.normal(size=var[...].shape) * 0.3, jnp.float32))


def _eval_model(model_cls, head, seed):
  """`model_cls(MeanBackbone(), head)` in eval mode, with random head parameters drawn from `seed`."""
  _set_random(head, seed)
  model = model_cls(MeanBackbone(), head)
  model.eval()
  return model


def _check_classification_loss(task, model, video, labels, logits):
  """`task.loss_fn` against the numpy cross-entropy and accuracy of `logits` (the expected model output)."""
  labels_np = np.asarray(labels)
  loss, metrics = task.loss_fn(model, {"video": video, "label": labels}, None)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  assert float(loss) == pytest.approx(-np.mean(logp[np.arange(len(labels_np)), labels_np]), rel=1e-5)
  assert float(metrics["accuracy"]) == pytest.approx(np.mean(logits.argmax(-1) == labels_np))
  assert set(metrics) == {"loss", "loss_cls", "accuracy"}
  assert float(metrics["loss_cls"]) == float(loss)
  # The predicted classes as labels: accuracy 1 (the labels above may hit none).
  _, hit = task.loss_fn(model, {"video": video, "label": jnp.asarray(logits.argmax(-1), jnp.int32)}, None)
  assert float(hit["accuracy"]) == 1.0


def test_vcop_head_manual_and_model_reshape():
  head = VCOPHead(4, tuple_len=3, hidden_channels=5, dropout=0.5, rngs=nnx.Rngs(0))
  model = _eval_model(VCOPModel, head, 0)
  rng = np.random.default_rng(1)
  video = rng.normal(size=(2, 3, 2, 4, 4, 3)).astype(np.float32)
  logits = np.asarray(model(jnp.asarray(video)))
  assert logits.shape == (2, 6)
  m = video.mean(axis=(2, 3, 4))
  f = np.concatenate([m, 2 * m[..., :1]], -1)                       # [B, 3, 4]
  w1, b1 = np.asarray(head.fc1.kernel[...]), np.asarray(head.fc1.bias[...])
  w2, b2 = np.asarray(head.fc2.kernel[...]), np.asarray(head.fc2.bias[...])
  hs = [np.maximum(np.concatenate([f[:, i], f[:, j]], -1) @ w1 + b1, 0) for i, j in [(0, 1), (0, 2), (1, 2)]]
  want = np.concatenate(hs, -1) @ w2 + b2
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
  # Train mode: dropout needs an rng, and changes the output.
  model.train()
  with pytest.raises(ValueError, match="dropout rng"):
    model(jnp.asarray(video))
  dropped = np.asarray(model(jnp.asarray(video), jax.random.key(0)))
  assert not np.allclose(dropped, want)


def test_vcop_head_init():
  head = VCOPHead(512, rngs=nnx.Rngs(0))
  assert head.fc1.kernel[...].shape == (1024, 512) and head.fc2.kernel[...].shape == (1536, 6)
  n_params = sum(int(np.prod(v[...].shape)) for _, v in nnx.iter_graph(head) if isinstance(v, nnx.Param))
  assert n_params == 534022                                         # the CtP VCOP head
  assert abs(float(jnp.std(head.fc1.kernel[...])) - math.sqrt(2 / 512)) < 3e-3   # kaiming fan_out
  assert abs(float(jnp.std(head.fc2.kernel[...])) - 0.001) < 2e-4


def test_vcop_loss_fn_hand_computation():
  model = _eval_model(VCOPModel, VCOPHead(4, hidden_channels=5, rngs=nnx.Rngs(0)), 2)
  video = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3, 2, 4, 4, 3)), jnp.float32)
  logits = np.asarray(model(video), np.float64)
  _check_classification_loss(PRETEXT_TASKS.get("vcop"), model, video, jnp.array([0, 5, 2, 3], jnp.int32), logits)


# ----------------------------------------------------------------------------------------------------------------------
# Speed
# ----------------------------------------------------------------------------------------------------------------------

def test_speed_builder_known_strides():
  reader = IndexReader(num_frames=200)
  builder = PRETEXT_TASKS.get("speed").make_builder(dict(
      short_side_sizes=(40,), crop_size=32, brightness=(0.0, 32), contrast=(0.0, 0.2), hue_saturation=(0.0, 12, 0.1),
      **IDENTITY))
  seen = set()
  for seed in range(60):
    ex = builder.build(reader, None, np.random.default_rng(seed))
    assert ex["video"].shape == (16, 32, 32, 3) and ex["label"].dtype == np.int32
    label = int(ex["label"])
    seen.add(label)
    ids = _frame_ids(ex["video"])
    np.testing.assert_array_equal(ids, reader.calls[-1])
    np.testing.assert_array_equal(np.diff(ids), SPEED_STRIDES[label])   # constant signed stride (no clamping)
  assert seen == set(range(7))


def test_speed_builder_defaults():
  reader = IndexReader(num_frames=30, h=120, w=160)
  ex = PRETEXT_TASKS.get("speed").make_builder(None).build(reader, None, np.random.default_rng(0))
  assert ex["video"].shape == (16, 112, 112, 3) and ex["video"].dtype == np.float32


def test_speed_head_manual_and_loss():
  head = SpeedHead(4, num_classes=7, rngs=nnx.Rngs(0))
  model = _eval_model(SpeedModel, head, 4)
  video = jnp.asarray(np.random.default_rng(5).normal(size=(3, 2, 4, 4, 3)), jnp.float32)
  m = np.asarray(video).mean(axis=(1, 2, 3))
  f = np.concatenate([m, 2 * m[:, :1]], -1)
  logits = f @ np.asarray(head.fc.kernel[...]) + np.asarray(head.fc.bias[...])
  _check_classification_loss(PRETEXT_TASKS.get("speed"), model, video, jnp.array([6, 0, 3], jnp.int32), logits)
  fresh = SpeedHead(512, rngs=nnx.Rngs(0))
  n_params = sum(int(np.prod(v[...].shape)) for _, v in nnx.iter_graph(fresh) if isinstance(v, nnx.Param))
  assert n_params == 3591


# ----------------------------------------------------------------------------------------------------------------------
# Losses and registry
# ----------------------------------------------------------------------------------------------------------------------

def test_classification_losses_hand_values():
  logits = jnp.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
  labels = jnp.array([0, 1])
  l0 = -(2.0 - np.log(np.exp(2) + np.exp(1) + 1))
  l1 = -(0.0 - np.log(2 + np.exp(3)))
  assert float(cross_entropy(logits, labels)) == pytest.approx((l0 + l1) / 2, rel=1e-6)
  assert float(accuracy(logits, labels)) == 0.5
  assert float(topk_accuracy(logits, labels, k=2)) == 0.5
  assert float(topk_accuracy(logits, labels, k=3)) == 1.0
  assert float(topk_accuracy(logits, jnp.array([1, 2]), k=1)) == 0.5
  with pytest.raises(ValueError, match="labels"):
    cross_entropy(logits, jnp.array([0, 1, 2]))


def test_registry():
  assert PRETEXT_TASKS.names() == ["ctp", "speed", "vcop"]
  with pytest.raises(KeyError, match="known: ctp, speed, vcop"):
    PRETEXT_TASKS.get("jigsaw")
  with pytest.raises(KeyError, match="arch"):
    PRETEXT_TASKS.get("speed").make_model({"backbone_kwargs": {}}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="output"):
    PRETEXT_TASKS.get("ctp").make_model({"arch": "r3d_18", "backbone_kwargs": {"output": "pooled"}},
                                        rngs=nnx.Rngs(0))
