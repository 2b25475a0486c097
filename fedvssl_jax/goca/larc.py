"""GOCA's optimiser: apex LARC around SGD with momentum, a sqrt-batch warmup + cosine schedule, frozen prototypes.

apex `LARC(SGD(lr, momentum=0.9, weight_decay=wd), trust_coefficient=0.001, clip=False)` does, per parameter tensor w
with gradient g (and takes weight decay out of the wrapped SGD):

  if ||w|| != 0 and ||g|| != 0:
    local_lr = trust * ||w|| / (||g|| + wd * ||w|| + eps)
    if clip: local_lr = min(local_lr / lr, 1)
    g <- (g + wd * w) * local_lr
  (otherwise g is left untouched and no weight decay is applied)
  buf <- momentum * buf + g;  w <- w - lr * buf

`optax.lars` differs (it uses ||g + wd w|| and its own masking), hence this transform. See the reference notes
`/work/shared/reference/goca.md` section 5.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

ScalarOrSchedule = Union[float, Callable[[jax.Array], jax.Array]]


class LarcState(NamedTuple):
  """Step counter (read only when `clip=True` and the learning rate is a schedule)."""
  count: jax.Array


def larc(trust_coefficient: float = 0.001, clip: bool = False, weight_decay: float = 1e-4, eps: float = 1e-8,
         learning_rate: Optional[ScalarOrSchedule] = None) -> optax.GradientTransformation:
  """apex LARC gradient rescaling (with its coupled weight decay), per parameter array.

  Args:
    trust_coefficient: eta in local_lr = eta ||w|| / (||g|| + wd ||w|| + eps).
    clip: apex's clipping mode, local_lr <- min(local_lr / lr, 1), so that the effective step lr * local_lr never
      exceeds lr. It needs the learning rate the following SGD step will use: pass the same `learning_rate`
      (float or optax schedule, evaluated at this transform's own step counter, which advances in lock-step with
      `optax.sgd`'s). GOCA uses clip=False ("scale" mode).
    weight_decay: L2 weight decay folded into the gradient before the rescaling (do not also use it in SGD).
    eps: apex's 1e-8.
    learning_rate: required when clip=True, ignored otherwise.

  Returns:
    An optax GradientTransformation whose `update` requires `params`.
  """
  if clip and learning_rate is None:
    raise ValueError("larc: clip=True needs learning_rate (the SGD learning rate or schedule)")

  def init_fn(params):
    del params
    return LarcState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("larc: update needs params (pass params=... to tx.update)")
    if clip:
      lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
      lr = jnp.asarray(lr, jnp.float32)
    else:
      lr = None

    def one(g, w):
      if g is None:
        return None
      g32 = g.astype(jnp.float32)
      w32 = w.astype(jnp.float32)
      w_norm = jnp.sqrt(jnp.sum(jnp.square(w32)))
      g_norm = jnp.sqrt(jnp.sum(jnp.square(g32)))
      local = trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps)
      if clip:
        local = jnp.minimum(local / lr, 1.0)
      adapted = (g32 + weight_decay * w32) * local
      ok = jnp.logical_and(w_norm != 0, g_norm != 0)
      return jnp.where(ok, adapted, g32).astype(g.dtype)

    new = jax.tree.map(one, updates, params, is_leaf=lambda x: x is None)
    return new, LarcState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def goca_schedule(base_lr: float, global_batch: int, warmup_steps: int, total_steps: int,
                  start_warmup: float = 0.3, final_lr: float = 0.0048) -> Callable[[jax.Array], jax.Array]:
  """GOCA / SwAV per-iteration learning rate.

  peak = base_lr * sqrt(global_batch) (GOCA: 0.15 * sqrt(640) ~ 3.79). Linear from `start_warmup` (an absolute lr,
  GOCA's default 0.3; not batch-scaled) to peak over `warmup_steps` (SwAV's `np.linspace(start, peak, n)`, so step
  warmup_steps - 1 is exactly the peak), then cosine from peak to `final_lr` (GOCA default 0.0048, script 0.0006)
  over the remaining `total_steps - warmup_steps` steps; constant `final_lr` afterwards.

  Returns:
    An optax schedule: step (int array) -> float32 learning rate.
  """
  if total_steps <= 0 or warmup_steps < 0 or warmup_steps > total_steps:
    raise ValueError(f"goca_schedule: need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps}), "
                     "total_steps > 0")
  if global_batch <= 0:
    raise ValueError(f"goca_schedule: global_batch must be > 0, got {global_batch}")
  peak = float(base_lr) * float(global_batch) ** 0.5
  decay_steps = max(total_steps - warmup_steps, 1)

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    if warmup_steps > 1:
      warm = start_warmup + (peak - start_warmup) * jnp.minimum(step / (warmup_steps - 1), 1.0)
    else:
      warm = jnp.float32(peak)
    t = jnp.clip(step - warmup_steps, 0.0, decay_steps)
    cos = final_lr + 0.5 * (peak - final_lr) * (1.0 + jnp.cos(jnp.pi * t / decay_steps))
    return jnp.where(step < warmup_steps, warm, cos).astype(jnp.float32)

  return schedule


def path_mask(params: Any, pattern: str = "prototypes") -> Any:
  """Pytree of bools with params' structure: True where the leaf's key path contains `pattern`."""
  return jax.tree_util.tree_map_with_path(lambda path, _: pattern in jax.tree_util.keystr(path), params)


def goca_optimizer(schedule: ScalarOrSchedule, momentum: float = 0.9, weight_decay: float = 1e-4,
                   trust: float = 0.001, frozen_mask: Any = None, clip: bool = False) -> optax.GradientTransformation:
  """LARC(trust, wd) then SGD(schedule, momentum, no weight decay); `frozen_mask` leaves get no update at all.

  LARC is applied to every trainable array, BatchNorm scales and biases included (as in GOCA).

  Args:
    schedule: learning rate or optax schedule (e.g. `goca_schedule(...)`).
    momentum: SGD momentum (PyTorch form buf = m buf + g, identical to `optax.trace`).
    weight_decay: LARC-coupled weight decay (1e-4).
    trust: LARC trust coefficient (0.001).
    frozen_mask: None, a pytree of bools matching the params (True = frozen), or a callable params -> such a tree
      (e.g. `path_mask` for learnable-but-frozen prototypes). Frozen leaves get zero updates and no weight decay.
      Fixed GOCA prototypes are a non-`nnx.Param` variable and never reach the optimiser, so no mask is needed then.
    clip: apex LARC clip mode (see `larc`).
  """
  train = optax.chain(
      larc(trust_coefficient=trust, clip=clip, weight_decay=weight_decay, learning_rate=schedule if clip else None),
      optax.sgd(schedule, momentum=momentum if momentum else None),
  )
  if frozen_mask is None:
    return train

  def labels(params):
    mask = frozen_mask(params) if callable(frozen_mask) else frozen_mask
    return jax.tree.map(lambda f: "frozen" if f else "train", mask)

  return optax.multi_transform({"train": train, "frozen": optax.set_to_zero()}, labels)
