"""GOCA's evaluation recipes as config variants: ViCC-style fine-tuning (backbone lr / 10, milestones 60 / 80) and
the linear evaluation (SGD lr 0.3, cosine, wd 1e-6)."""

import importlib.util
import os

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fedvssl_jax.core import optim

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name, arg):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_backbone_lr_ratio_is_torch_param_groups():
  """torch SGD(momentum 0.9, weight_decay wd) with the backbone group at lr / 10: buf = m buf + (g + wd w),
  w -= lr_group * buf, step for step."""
  cfg = ml_collections.ConfigDict(dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-2, grad_clip_norm=0.0,
                                       backbone_lr_ratio=10.0))
  tx = optim.make_optimizer(cfg, optax.constant_schedule(0.1))
  params = {"backbone": {"w": jnp.asarray([1.0, -2.0])}, "head": {"w": jnp.asarray([0.5, 3.0])}}
  state = tx.init(params)
  ref = {k: np.asarray(v["w"], np.float64) for k, v in params.items()}
  buf = {k: np.zeros(2) for k in ref}
  rng = np.random.default_rng(0)
  for _ in range(3):
    grads = {k: {"w": jnp.asarray(rng.normal(size=2), jnp.float32)} for k in params}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    for k in ref:
      buf[k] = 0.9 * buf[k] + np.asarray(grads[k]["w"]) + 1e-2 * ref[k]
      ref[k] = ref[k] - (0.01 if k == "backbone" else 0.1) * buf[k]
  for k in ref:
    np.testing.assert_allclose(np.asarray(params[k]["w"]), ref[k], rtol=1e-5)


@pytest.mark.parametrize("name", ["finetune_ucf101", "finetune_hmdb51"])
def test_finetune_recipe_goca(name):
  config = _config(name, "recipe=goca")
  assert config.optim.backbone_lr_ratio == 10.0 and tuple(config.optim.step_epochs) == (60, 80)
  assert config.optim.schedule == "step" and config.optim.momentum == 0.9 and not config.optim.nesterov
  assert _config(name, "").optim.backbone_lr_ratio == 1.0
  with pytest.raises(ValueError, match="recipe"):
    _config(name, "recipe=vicc")


def test_linear_probe_recipe_goca():
  config = _config("linear_probe", "recipe=goca")
  assert (config.probe.optimizer, config.probe.lr, config.probe.weight_decay, config.probe.epochs) == (
      "sgd", 0.3, 1e-6, 100)
  assert config.probe.standardize
  assert _config("linear_probe", "").probe.optimizer == "adam"
