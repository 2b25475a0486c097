"""The functional train state and the jitted train step shared by the trainers.

A model is split once with `nnx.split(model, nnx.Param, ...)` into a static `graphdef`, the trainable parameters and
everything else (BatchNorm statistics, RNG counters, fixed buffers). The step merges them inside `jax.jit`, so the hot
loop never walks the NNX object graph in Python.
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from fedvssl_jax.core import mesh as mesh_lib

# loss_fn(model, batch, rng) -> (scalar loss, {name: scalar})
LossFn = Callable[[nnx.Module, dict[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes. `rest` holds the non-trainable state (BN statistics, RNG counters)."""
  step: jax.Array
  params: nnx.State
  rest: nnx.State
  opt_state: optax.OptState


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
  """(graphdef, params, rest) of a model; `rest` is every non-`nnx.Param` variable."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return graphdef, params, rest


def merge_model(graphdef: nnx.GraphDef, state: TrainState) -> nnx.Module:
  return nnx.merge(graphdef, state.params, state.rest)


def create_train_state(model: nnx.Module, tx: optax.GradientTransformation,
                       mesh: Mesh) -> tuple[nnx.GraphDef, TrainState]:
  """Splits `model` (already in train mode) and places a fresh state, replicated, on `mesh`."""
  graphdef, params, rest = split_model(model)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=tx.init(params))
  return graphdef, put_replicated(state, mesh)


def put_replicated(tree: Any, mesh: Mesh) -> Any:
  """`jax.device_put(tree, replicated(mesh))`, also for typed PRNG key leaves (nnx.Rngs streams, e.g. a dropout
  layer's) when the mesh spans several processes: `device_put` refuses a key array for a sharding with devices of
  other processes, so such a leaf is placed as its uint32 key data and wrapped again (every process holds the same
  key, as it holds the same initial weights)."""
  sharding = mesh_lib.replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      data = jax.device_put(np.asarray(jax.random.key_data(x)), sharding)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return jax.device_put(x, sharding)

  return jax.tree_util.tree_map(put, tree)


def abstract_train_state(state: TrainState) -> TrainState:
  """Shape/dtype/sharding skeleton of `state`, the restore target for Orbax."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), state)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, loss_fn: LossFn,
                    mesh: Mesh, donate: bool = True) -> Callable[[TrainState, dict[str, jax.Array], jax.Array],
                                                                  tuple[TrainState, dict[str, jax.Array]]]:
  """Returns `step(state, batch, rng) -> (state, metrics)`, jitted with the batch sharded on `data`.

  `metrics` always holds `loss` and `grad_norm` (before clipping) besides what `loss_fn` returns.
  """

  def step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
    def compute(params, rest):
      # `rest` is an argument (not a closure) so that BatchNorm may update it at this trace level.
      model = nnx.merge(graphdef, params, rest, copy=True)
      loss, metrics = loss_fn(model, batch, rng)
      _, _, new_rest = split_model(model)
      return loss, (metrics, new_rest)

    (loss, (metrics, rest)), grads = jax.value_and_grad(compute, has_aux=True)(state.params, state.rest)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return state.replace(step=state.step + 1, params=params, rest=rest, opt_state=opt_state), metrics

  repl = mesh_lib.replicated(mesh)
  return jax.jit(step, in_shardings=(repl, mesh_lib.batch_sharding(mesh), repl), out_shardings=(repl, repl),
                 donate_argnums=(0,) if donate else ())


def make_eval_step(graphdef: nnx.GraphDef, apply_fn: Callable[[nnx.Module, dict[str, jax.Array]], Any],
                   mesh: Mesh) -> Callable[[TrainState, dict[str, jax.Array]], Any]:
  """Returns `eval_step(state, batch) -> apply_fn(model, batch)`, with `graphdef` taken in eval mode by the caller."""

  def step(state: TrainState, batch):
    model = nnx.merge(graphdef, state.params, state.rest)
    return apply_fn(model, batch)

  return jax.jit(step, in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)))


def eval_graphdef(graphdef: nnx.GraphDef, state: TrainState) -> nnx.GraphDef:
  """The same model with BatchNorm on running statistics and dropout off."""
  model = nnx.merge(graphdef, state.params, state.rest)
  model.eval()
  return nnx.split(model, nnx.Param, ...)[0]


WEIGHTS = nnx.Any(nnx.Param, nnx.BatchStat)


def module_weights(module: nnx.Module) -> dict:
  """Nested pure dict (host arrays) of a module's parameters and BatchNorm statistics — no RNG state."""
  return nnx.to_pure_dict(jax.device_get(nnx.state(module, WEIGHTS)))
