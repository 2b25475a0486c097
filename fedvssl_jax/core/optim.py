"""Optimisers and learning-rate schedules from `config.optim`.

The SGD chain matches mmcv's `OptimizerHook` + torch SGD as used by CtP / FedVSSL: clip the gradient by its global
L2 norm, add weight decay to every parameter (BN and biases included), then momentum and the learning rate. AdamW
(clip, then torch-style AdamW: betas (0.9, 0.999), eps 1e-8, decoupled decay of every parameter) is not in the
originals' recipes; the CtP demos use it because with SGD their head fell back to the zero predictor
(docs/pretext.md).

Config keys (`config.optim`):
  name: "sgd" | "adamw" (GOCA builds its LARC chain in `fedvssl_jax.goca.larc`).
  lr: peak learning rate.
  momentum: SGD momentum (0 disables it); unused by adamw.
  nesterov: bool; unused by adamw.
  weight_decay: sgd: L2 coefficient added to the gradient; adamw: decoupled decay (times the lr).
  grad_clip_norm: global-norm clip (<= 0 disables it).
  schedule: "constant" | "step" | "warmup_cosine".
  step_epochs: epochs at which the lr is multiplied by `step_factor` ("step").
  step_factor: e.g. 0.1.
  warmup_epochs, warmup_start_lr, final_lr: for "warmup_cosine".
  backbone_lr_ratio: sgd only; the parameters under `backbone` get lr / ratio (GOCA's ViCC-style fine-tuning,
    `--use_vicc_opt` with `--backbone_ratio 10`: helper/train_utils.py setup_optimization_finetune). Default 1.
"""

from __future__ import annotations

import jax
import ml_collections
import optax


def make_schedule(optim: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  """Returns a step -> learning rate function."""
  name = optim.get("schedule", "constant")
  lr = float(optim.lr)
  if name == "constant":
    return optax.constant_schedule(lr)
  if name == "step":
    factor = float(optim.get("step_factor", 0.1))
    boundaries = {int(e * steps_per_epoch): factor for e in optim.get("step_epochs", ())}
    return optax.piecewise_constant_schedule(lr, boundaries)
  if name == "warmup_cosine":
    warmup = int(float(optim.get("warmup_epochs", 0)) * steps_per_epoch)
    return optax.warmup_cosine_decay_schedule(
        init_value=float(optim.get("warmup_start_lr", 0.0)), peak_value=lr, warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1), end_value=float(optim.get("final_lr", 0.0)))
  raise ValueError(f"config.optim.schedule: unknown schedule {name!r}; known: constant, step, warmup_cosine")


OPTIMIZERS = ("sgd", "adamw")


def make_optimizer(optim: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """sgd: clip_by_global_norm -> + weight_decay * param -> SGD (momentum) with `schedule`.
  adamw: clip_by_global_norm -> AdamW with `schedule` and decoupled `weight_decay`."""
  name = optim.get("name", "sgd")
  if name not in OPTIMIZERS:
    raise ValueError(f"config.optim.name: unknown optimiser {name!r}; known: {', '.join(OPTIMIZERS)}")
  parts = []
  clip = float(optim.get("grad_clip_norm", 0.0) or 0.0)
  if clip > 0:
    parts.append(optax.clip_by_global_norm(clip))
  wd = float(optim.get("weight_decay", 0.0) or 0.0)
  if name == "adamw":
    parts.append(optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=wd))
    return optax.chain(*parts)
  if wd > 0:
    parts.append(optax.add_decayed_weights(wd))
  momentum = float(optim.get("momentum", 0.0) or 0.0)
  parts.append(optax.sgd(schedule, momentum=momentum or None, nesterov=bool(optim.get("nesterov", False))))
  ratio = float(optim.get("backbone_lr_ratio", 1.0))
  if ratio != 1.0:
    parts.append(scale_backbone_updates(1.0 / ratio))
  return optax.chain(*parts)


def _under_backbone(path) -> bool:
  return any(getattr(k, "key", getattr(k, "name", None)) == "backbone" for k in path)


def scale_backbone_updates(factor: float) -> optax.GradientTransformation:
  """Multiplies the updates of every parameter under a `backbone` key by `factor`. After SGD this is torch's
  per-group lr (lr * factor for the backbone group): torch's momentum buffer does not depend on the lr."""

  def update_fn(updates, state, params=None):
    del params
    return jax.tree_util.tree_map_with_path(lambda p, u: u * factor if _under_backbone(p) else u, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
