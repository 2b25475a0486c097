"""Numerical parity with torchvision's r3d_18 / r2plus1d_18 (float32, tiny inputs); skipped without torch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
tv_video = pytest.importorskip("torchvision.models.video")

from fedvssl_jax.models import ClassifierHead, export, torch_names  # noqa: E402

NUM_CLASSES = 7


@pytest.fixture(autouse=True)
def _highest_precision():
  with jax.default_matmul_precision("highest"):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield


def _randomised_torchvision(arch: str, seed: int):
  """torchvision model with random weights and non-trivial BN affine params and running statistics."""
  torch.manual_seed(seed)
  model = getattr(tv_video, arch)(weights=None, num_classes=NUM_CLASSES)
  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm3d):
        c = m.num_features
        m.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=g))
        m.bias.copy_(0.1 * torch.randn(c, generator=g))
        m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
        m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    model.fc.weight.copy_(0.05 * torch.randn(model.fc.weight.shape, generator=g))
  return model


def _torch_features(model, x):
  """Pooled features before the fc (torchvision's forward without the last layer)."""
  x = model.stem(x)
  for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
    x = layer(x)
  return model.avgpool(x).flatten(1)


def _rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _state_np(model):
  return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18"])
def test_torchvision_parity_eval_and_train(arch):
  tmodel = _randomised_torchvision(arch, seed=3)
  state = _state_np(tmodel)
  template = export.backbone_template(arch)
  backbone_flat, fc_flat = torch_names.torch_state_to_flat(state, arch, "torchvision", template=template)
  assert fc_flat is not None and fc_flat["kernel"].shape == (512, NUM_CLASSES)

  # Round trip import -> export -> import is bitwise exact (num_batches_tracked written as 0).
  back = torch_names.flat_to_torch_state(backbone_flat, arch, "torchvision", fc_flat=fc_flat)
  assert set(back) == set(state)
  for k, v in state.items():
    if k.endswith("num_batches_tracked"):
      assert int(back[k]) == 0
    else:
      assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), k
  again, fc_again = torch_names.torch_state_to_flat(back, arch, "torchvision", template=template)
  assert all(np.array_equal(again[k], backbone_flat[k]) for k in backbone_flat)
  assert all(np.array_equal(fc_again[k], fc_flat[k]) for k in fc_flat)

  model = export.backbone_from_flat(arch, backbone_flat)
  head = ClassifierHead(model.feature_dim, NUM_CLASSES, dropout_rate=0.0, rngs=nnx.Rngs(0))
  head.fc.kernel[...] = jnp.asarray(fc_flat["kernel"])
  head.fc.bias[...] = jnp.asarray(fc_flat["bias"])

  x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(5))
  x_j = jnp.asarray(x.numpy().transpose(0, 2, 3, 4, 1))

  # Eval mode: pooled features.
  tmodel.eval()
  with torch.no_grad():
    ref_feat = _torch_features(tmodel, x).numpy()
  model.eval()
  gdef, st = nnx.split(model)
  feats = jax.jit(lambda s, v: nnx.merge(gdef, s)(v))(st, x_j)
  assert feats.dtype == jnp.float32 and feats.shape == ref_feat.shape
  assert _rel_err(feats, ref_feat) < 1e-4

  # Train mode: logits with batch-statistics BN, and the running statistics PyTorch updates (unbiased variance).
  tmodel.train()
  with torch.no_grad():
    ref_logits = tmodel(x).numpy()
  model.train()
  head.eval()  # dropout off (rate 0 anyway)
  gdef, st = nnx.split((model, head))

  @jax.jit
  def train_forward(s, v):
    bb, hd = nnx.merge(gdef, s)
    return hd(bb(v)), nnx.state(bb)

  logits, new_bb_state = train_forward(st, x_j)
  assert _rel_err(logits, ref_logits) < 1e-4
  new_flat = export.flatten_state(new_bb_state)
  ref_state = _state_np(tmodel)
  for key in ("stem/bn/mean", "stem/bn_s/var", "layer4/1/bn2/var", "layer4/0/downsample_bn/mean"):
    if key in new_flat:
      ref = ref_state[torch_names.torch_name(key, "torchvision")]
      assert _rel_err(new_flat[key], ref) < 1e-4, key
