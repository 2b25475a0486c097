"""Fine-tuning (configs/finetune_*.py): backbones from our export, from a torchvision-named state dict and from a
FedVSSL round-*.npz load exactly into the trainer's classifier with a fresh head; a short run from the demo config;
one-line config errors."""

import importlib.util
import json
import os

import numpy as np
import pytest
from flax import nnx

from fedvssl_jax.config_utils import ConfigError
from fedvssl_jax.models import build_backbone, export, torch_names
from fedvssl_jax.models.heads import FC_INIT_STD
from fedvssl_jax.evaluation import supervised

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"width_multiplier": 0.0625}


def _load(path, name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _config(arg=None, dataset="ucf101"):
  return _load(f"configs/finetune_{dataset}.py", f"finetune_{dataset}").get_config(arg)


def _random_flat(seed, **kwargs):
  """Random params and BN statistics (positive variances) of a tiny R3D-18, as our flat dict."""
  rng = np.random.default_rng(seed)
  flat = {k: rng.standard_normal(v.shape).astype(np.float32)
          for k, v in export.backbone_template("r3d_18", **kwargs).items()}
  for k in flat:
    if k.endswith("/var"):
      flat[k] = np.abs(flat[k]) + 0.5
  return flat


def _export(source, tmp_path):
  """(exported directory, the source's backbone arrays as our flat dict, the source's fc or None, kwargs)."""
  out = tmp_path / f"exported_{source}"
  if source == "ours":
    flat = _random_flat(0, **TINY)
    export.save_backbone(out, "r3d_18", TINY, flat)
    return out, flat, None, TINY
  if source == "torchvision":
    flat = _random_flat(1, **TINY)
    rng = np.random.default_rng(2)
    fc = {"kernel": rng.standard_normal((32, 5)).astype(np.float32), "bias": np.ones(5, np.float32)}
    state = torch_names.flat_to_torch_state(flat, "r3d_18", "torchvision", fc_flat=fc)
    assert "stem.0.weight" in state and "fc.weight" in state  # torchvision's names
    src = tmp_path / "r3d_18_torchvision.safetensors"
    torch_names.save_state_dict_file(state, str(src))
    script = _load("scripts/import_torch_weights.py", "import_torch_weights")
    assert script.main(["--arch", "r3d_18", "--src", str(src), "--out", str(out),
                        "--backbone_kwargs", json.dumps(TINY)]) == 0
    return out, flat, fc, TINY
  kwargs = dict(TINY, bn_epsilon=1e-3)
  flat = _random_flat(3, **kwargs)
  script = _load("scripts/import_fedvssl_checkpoint.py", "import_fedvssl_checkpoint")
  state = torch_names.flat_to_torch_state(flat, "r3d_18", "ctp")
  rng = np.random.default_rng(4)
  head = [rng.standard_normal(s).astype(np.float32) for s in ((32, 32, 2, 1, 1), (32,), (64, 800), (64,), (64, 64),
                                                              (64,))]
  src = tmp_path / "round-540.npz"
  np.savez(src, *([state[n] for n in script.ctp_r3d18_backbone_names()] + head))  # unnamed arrays, CtP order
  assert script.main(["--src", str(src), "--out", str(out), "--backbone_kwargs", json.dumps(TINY)]) == 0
  return out, flat, None, kwargs


@pytest.mark.parametrize("source", ["ours", "torchvision", "fedvssl"])
def test_build_model_loads_the_backbone_exactly_with_a_fresh_head(source, tmp_path):
  ckpt, flat, fc, kwargs = _export(source, tmp_path)
  config = _config()
  config.init.backbone_checkpoint = str(ckpt)
  model, arch, used_kwargs = supervised.build_model(config, 101, nnx.Rngs(0))
  assert arch == "r3d_18" and used_kwargs == dict(kwargs, output="pooled")  # the checkpoint's architecture
  got = export.flatten_state(model.backbone)
  assert sorted(got) == sorted(flat)
  for k in flat:
    np.testing.assert_array_equal(got[k], flat[k], err_msg=k)
  # The head is new: fc 32 -> 101 (not the imported 32 -> 5), N(0, 0.001) kernel, zero bias.
  kernel, bias = np.asarray(model.head.fc.kernel[...]), np.asarray(model.head.fc.bias[...])
  assert kernel.shape == (32, 101) and not bias.any()
  assert 0.5 * FC_INIT_STD < kernel.std() < 1.5 * FC_INIT_STD
  if fc is not None:
    assert export.load_fc(ckpt)["kernel"].shape == (32, 5)  # kept in the export, not used by fine-tuning


def test_wrong_checkpoint_paths_are_one_line_errors(tmp_path):
  config = _config()
  config.init.backbone_checkpoint = str(tmp_path / "nowhere")
  with pytest.raises(ConfigError) as e:
    supervised.build_model(config, 101, nnx.Rngs(0))
  assert "\n" not in str(e.value) and "config.init.backbone_checkpoint" in str(e.value) and "nowhere" in str(e.value)
  rnd = tmp_path / "round-1.npz"
  np.savez(rnd, np.zeros((2, 3)), np.zeros(3))
  config.init.backbone_checkpoint = str(rnd)
  with pytest.raises(ConfigError, match="import_fedvssl_checkpoint.py") as e:
    supervised.build_model(config, 101, nnx.Rngs(0))
  assert "\n" not in str(e.value)
  named = tmp_path / "r3d.npz"
  np.savez(named, **{"stem.0.weight": np.zeros(3)})
  config.init.backbone_checkpoint = str(named)
  with pytest.raises(ConfigError, match="import_torch_weights.py"):
    supervised.build_model(config, 101, nnx.Rngs(0))


def test_missing_data_root_is_a_one_line_error(tmp_path):
  for dataset in ("ucf101", "hmdb51"):
    config = _config(dataset=dataset)
    assert config.data.source == dataset and config.data.root == ""
    assert config.model.num_classes == {"ucf101": 101, "hmdb51": 51}[dataset]
    with pytest.raises(ConfigError) as e:
      supervised.train_and_evaluate(config, str(tmp_path))
    assert "\n" not in str(e.value) and "config.data.root" in str(e.value)
  with pytest.raises(ValueError, match="split=4"):
    _config("split=4")


def test_recipe_and_variants():
  config = _config("split=2,init=/ckpt")
  assert config.runner == "supervised" and config.model.arch == "r3d_18" and config.model.dropout == 0.5
  o = config.optim
  assert (o.name, o.lr, o.momentum, o.weight_decay, tuple(o.step_epochs), o.step_factor) == (
      "sgd", 0.01, 0.9, 5e-4, (60, 120), 0.1)
  assert config.num_epochs == 150 and config.test.num_clips == 10 and config.data.split == 2
  assert config.init.backbone_checkpoint == "/ckpt"
  assert _config(dataset="hmdb51").model.num_classes == 51


def test_short_finetuning_run_from_the_demo_config(synthetic_videos, tmp_path):
  """The demo fine-tunes the checkpoint and a random init of its architecture with the same recipe (compare_scratch):
  results.json holds both test figures; the pretrained run starts at the checkpoint, the scratch run does not."""
  from fedvssl_jax import runners

  ckpt, flat, _, _ = _export("ours", tmp_path)
  config = _load("configs/finetune_ucf101.py", "finetune_ucf101").get_config(f"demo,init={ckpt}")
  assert config.compare_scratch and config.init.backbone_checkpoint == str(ckpt)
  config.mesh = [("data", 1)]
  config.data.update(cache_dir=str(synthetic_videos), synthetic_preset="test", num_workers=0)
  config.train.update(clip_len=4, crop_size=32, short_side_sizes=(32, 40))
  config.test.update(clip_len=4, crop_size=32, short_side=32, batch_size=4)
  config.update(batch_size=4, num_steps=3, checkpoint_every=3, log_every=1)
  workdir = tmp_path / "finetune"
  runners.run(config, str(workdir))
  both = json.loads((workdir / "results.json").read_text())
  assert set(both["finetune"]) == {"pretrained", "scratch"}
  for name in ("pretrained", "scratch"):
    assert both["finetune"][name]["num_videos"] == 8 and set(both["finetune"][name]) >= {"top1", "top5", "mean_class"}
  results = json.loads((workdir / "pretrained" / "results.json").read_text())
  assert results["steps"] == 3 and results["test"] == both["finetune"]["pretrained"]
  _, tuned, fc = export.load_state(results["export"])
  assert fc["kernel"].shape == (32, 4)  # the synthetic test set's 4 classes
  # The backbone was trained from the checkpoint: its weights moved, but stayed far closer to the checkpoint than a
  # random init is (BN statistics left out: the random checkpoint's are nothing like the videos' own).
  weights = [k for k in flat if not k.endswith(("/mean", "/var"))]
  assert any(not np.array_equal(tuned[k], flat[k]) for k in weights)
  fresh = export.flatten_state(build_backbone("r3d_18", rngs=nnx.Rngs(1), **TINY))
  to_tuned, to_fresh = (np.sqrt(sum(np.sum((w[k] - flat[k]) ** 2) for k in weights)) for w in (tuned, fresh))
  assert to_tuned < 0.01 * to_fresh
  scratch = json.loads((workdir / "scratch" / "results.json").read_text())
  assert scratch["test"] == both["finetune"]["scratch"]
  meta, from_scratch, _ = export.load_state(scratch["export"])
  assert meta["arch"] == "r3d_18" and meta["backbone_kwargs"]["width_multiplier"] == TINY["width_multiplier"]
  to_scratch = np.sqrt(sum(np.sum((from_scratch[k] - flat[k]) ** 2) for k in weights))
  assert to_scratch > 0.5 * to_fresh  # a random init, not the checkpoint


def test_compare_scratch_needs_a_checkpoint(tmp_path):
  config = _config("demo")
  assert config.compare_scratch and not _config().compare_scratch and _config("compare_scratch=1").compare_scratch
  assert not _config("demo,compare_scratch=0").compare_scratch
  with pytest.raises(ConfigError, match="config.compare_scratch=True needs config.init.backbone_checkpoint") as e:
    supervised.train_and_evaluate(config, str(tmp_path))
  assert "\n" not in str(e.value)
