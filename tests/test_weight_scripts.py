"""The weight import / export / feature-extraction scripts and the exported-backbone directory."""

import importlib.util
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fedvssl_jax.models import ClassifierHead, build_backbone, export, torch_names

ROOT = Path(__file__).resolve().parents[1]
TINY = {"width_multiplier": 0.125}


def _script(name):
  spec = importlib.util.spec_from_file_location(f"_script_{name}", ROOT / "scripts" / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def _random_model(arch, seed, **kwargs):
  """A tiny model with random BN affine params and running statistics, plus a random classifier."""
  model = build_backbone(arch, rngs=nnx.Rngs(seed), **kwargs)
  rng = np.random.default_rng(seed)
  flat = export.flatten_state(model)
  for k, v in flat.items():
    if k.endswith(("/scale", "/bias", "/mean")):
      flat[k] = rng.normal(size=v.shape).astype(np.float32) * 0.2 + (1.0 if k.endswith("/scale") else 0.0)
    elif k.endswith("/var"):
      flat[k] = rng.uniform(0.5, 1.5, size=v.shape).astype(np.float32)
  head = ClassifierHead(model.feature_dim, 5, rngs=nnx.Rngs(seed + 1))
  fc = {"kernel": np.asarray(head.fc.kernel[...]) + 0.01, "bias": rng.normal(size=(5,)).astype(np.float32)}
  return flat, fc


def _assert_flat_equal(a, b):
  assert set(a) == set(b)
  for k in a:
    assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
  """r2plus1d_18 at width 1/8, exported with torchvision names to .npz and imported with the script."""
  tmp = tmp_path_factory.mktemp("weights")
  flat, fc = _random_model("r2plus1d_18", 0, **TINY)
  state = torch_names.flat_to_torch_state(flat, "r2plus1d_18", "torchvision", fc_flat=fc)
  np.savez(tmp / "tiny.npz", **state)
  ckpt = tmp / "ckpt"
  _script("import_torch_weights").main(["--arch", "r2plus1d_18", "--src", str(tmp / "tiny.npz"), "--out", str(ckpt),
                                        "--backbone_kwargs", json.dumps(TINY)])
  return tmp, ckpt, flat, fc, state


def test_import_export_round_trip_is_exact(tiny_export, capsys):
  tmp, ckpt, flat, fc, state = tiny_export
  meta = json.loads((ckpt / "model.json").read_text())
  assert meta["arch"] == "r2plus1d_18" and meta["backbone_kwargs"] == TINY and meta["fc"]["num_classes"] == 5
  _, loaded, loaded_fc = export.load_state(ckpt)
  _assert_flat_equal(loaded, flat)
  _assert_flat_equal(loaded_fc, fc)
  _assert_flat_equal(export.load_fc(ckpt), fc)

  out = tmp / "back.safetensors"
  _script("export_torch_weights").main(["--checkpoint", str(ckpt), "--out", str(out)])
  back = torch_names.load_state_dict_file(str(out))
  _assert_flat_equal(back, state)  # includes num_batches_tracked == 0 and fc.weight / fc.bias
  assert "residual frames" not in capsys.readouterr().err
  # A backbone trained on residual frames (a copy of the export) gives the same weights, with a note that PyTorch must
  # feed differences.
  residual = tmp / "residual_ckpt"
  shutil.copytree(ckpt, residual, dirs_exist_ok=True)
  (residual / "model.json").write_text(json.dumps(dict(meta, backbone_kwargs=dict(TINY, residual_frames=True))))
  _script("export_torch_weights").main(["--checkpoint", str(residual), "--out", str(tmp / "res.safetensors")])
  assert "trained on residual frames" in capsys.readouterr().err
  _assert_flat_equal(torch_names.load_state_dict_file(str(tmp / "res.safetensors")), state)

  ckpt2 = tmp / "ckpt2"
  _script("import_torch_weights").main(["--arch", "r2plus1d_18", "--src", str(out), "--out", str(ckpt2),
                                        "--backbone_kwargs", json.dumps(TINY)])
  _, again, again_fc = export.load_state(ckpt2)
  _assert_flat_equal(again, flat)
  _assert_flat_equal(again_fc, fc)


def test_extract_features_matches_in_process_model(tiny_export):
  tmp, ckpt, flat, _, _ = tiny_export
  clips = np.random.default_rng(1).normal(size=(3, 3, 4, 32, 32)).astype(np.float32)  # NCTHW
  np.save(tmp / "clips.npy", clips)
  _script("extract_features").main(["--checkpoint", str(ckpt), "--clips", str(tmp / "clips.npy"), "--out",
                                    str(tmp / "feats.npy"), "--layout", "ncthw", "--batch_size", "2"])
  feats = np.load(tmp / "feats.npy")
  model = export.backbone_from_flat("r2plus1d_18", flat, **TINY)
  model.eval()
  gdef, st = nnx.split(model)
  ref = jax.jit(lambda s, x: nnx.merge(gdef, s)(x))(st, jnp.asarray(clips.transpose(0, 2, 3, 4, 1)))
  assert feats.dtype == np.float32 and feats.shape == (3, model.feature_dim)
  np.testing.assert_allclose(feats, np.asarray(ref), rtol=1e-5, atol=1e-6)


def test_ctp_names_prefixes_and_errors(tmp_path):
  flat, fc = _random_model("r2plus1d_18_ctp", 2, **TINY)
  state = torch_names.flat_to_torch_state(flat, "r2plus1d_18_ctp", "ctp", fc_flat=fc)
  assert "backbone.layer2.0.conv2.conv_s.weight" in state and "cls_head.fc_cls.weight" in state
  assert "backbone.layer2.0.downsample.conv.weight" in state and "backbone.stem.bn_t.running_var" in state
  # DataParallel's `module.` prefix is stripped too; a pretext head is rejected unless non-strict.
  wrapped = {f"module.{k}": v for k, v in state.items()}
  wrapped["module.ctp_head.fc1.weight"] = np.zeros((2, 2), np.float32)
  np.savez(tmp_path / "ctp.npz", **wrapped)
  args = ["--arch", "r2plus1d_18_ctp", "--src", str(tmp_path / "ctp.npz"), "--out", str(tmp_path / "c"),
          "--backbone_kwargs", json.dumps(TINY)]
  imp = _script("import_torch_weights")
  with pytest.raises(ValueError, match="ctp_head.fc1.weight"):
    imp.main(args)
  imp.main(args + ["--non_strict"])
  model, meta = export.load_backbone(tmp_path / "c")
  assert meta["arch"] == "r2plus1d_18_ctp" and model.layer1[0].bn1.epsilon == 1e-3
  _assert_flat_equal(export.flatten_state(model), flat)

  template = export.backbone_template("r2plus1d_18_ctp", **TINY)
  missing = dict(state)
  del missing["backbone.layer3.1.bn2.running_mean"]
  with pytest.raises(ValueError, match=r"layer3\.1\.bn2\.running_mean"):
    torch_names.torch_state_to_flat(missing, "r2plus1d_18_ctp", "ctp", template=template)
  # torchvision's mid-planes do not fit CtP's R(2+1)D: a shape error that names the tensor.
  tv_flat, _ = _random_model("r2plus1d_18", 3, **TINY)
  tv_as_ctp = torch_names.flat_to_torch_state(tv_flat, "r2plus1d_18", "ctp")
  with pytest.raises(ValueError, match=r"shape mismatch for 'backbone\.layer2\.0\.conv2\.conv_s\.weight'"):
    torch_names.torch_state_to_flat(tv_as_ctp, "r2plus1d_18_ctp", "ctp", template=template)


def test_s3d_generic_names_and_bad_directories(tmp_path):
  flat, _ = _random_model("s3d", 4, width_multiplier=1 / 16)
  state = torch_names.flat_to_torch_state(flat, "s3d", "ctp", backbone_prefix="")
  assert "Mixed_3b.branch1.1.conv_s.weight" in state
  back, fc = torch_names.torch_state_to_flat(state, "s3d", "ctp",
                                             template=export.backbone_template("s3d", width_multiplier=1 / 16))
  assert fc is None
  _assert_flat_equal(back, flat)
  with pytest.raises(ValueError, match="torchvision naming convention"):
    torch_names.flat_to_torch_state(flat, "s3d", "torchvision")

  with pytest.raises(FileNotFoundError, match="does not exist"):
    export.load_backbone(tmp_path / "nope")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="model.json"):
    export.load_backbone(tmp_path / "empty")
  bad = tmp_path / "bad"
  bad.mkdir()
  (bad / "model.json").write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    export.load_backbone(bad)
  (bad / "model.json").write_text(json.dumps({"arch": "s3d", "backbone_kwargs": {}}))
  with pytest.raises(FileNotFoundError, match="state"):
    export.load_backbone(bad)
  with pytest.raises(ValueError, match="backbone state for 's3d'"):
    export.save_backbone(tmp_path / "wrong", "s3d", {}, flat)  # width 1/16 weights, full-width kwargs


def test_pth_against_torchvision_r3d_18(tmp_path):
  torch = pytest.importorskip("torch")
  tv_video = pytest.importorskip("torchvision.models.video")
  torch.manual_seed(0)
  tmodel = tv_video.r3d_18(weights=None, num_classes=4)
  with torch.no_grad():
    for m in tmodel.modules():
      if isinstance(m, torch.nn.BatchNorm3d):
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 1.5)
  torch.save(tmodel.state_dict(), tmp_path / "r3d.pth")
  ckpt = tmp_path / "r3d"
  _script("import_torch_weights").main(["--arch", "r3d_18", "--src", str(tmp_path / "r3d.pth"), "--out", str(ckpt)])
  x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
  np.save(tmp_path / "clips.npy", x.numpy())
  with jax.default_matmul_precision("highest"):
    _script("extract_features").main(["--checkpoint", str(ckpt), "--clips", str(tmp_path / "clips.npy"), "--out",
                                      str(tmp_path / "f.npy"), "--layout", "ncthw"])
  tmodel.eval()
  with torch.no_grad():
    h = tmodel.stem(x)
    for layer in (tmodel.layer1, tmodel.layer2, tmodel.layer3, tmodel.layer4):
      h = layer(h)
    ref = tmodel.avgpool(h).flatten(1).numpy()
  feats = np.load(tmp_path / "f.npy")
  assert feats.shape == ref.shape == (2, 512)
  assert np.abs(feats - ref).max() / np.abs(ref).max() < 1e-4
  np.testing.assert_array_equal(export.load_fc(ckpt)["kernel"], tmodel.fc.weight.detach().numpy().T)
