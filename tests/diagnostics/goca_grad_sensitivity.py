"""How much GOCA's first-step loss and gradient move under float32 rounding-sized changes (docs/scale_out.md).

Computes loss and gradient of a GOCA recipe's first step at initialisation on its first global batch, once with the
batch sharded over all devices of this process and once on one device (the same maths, another order of the
float32 reductions), and on one device again with `--noise` relative Gaussian noise on the inputs. It prints each
one's loss, gradient norm and the relative change of the whole gradient vector against the all-device one. A gradient
that moves by far more than the noise is chaotic: two device layouts (or process counts) cannot then agree step by
step beyond the first.

  JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES=8 python tests/diagnostics/goca_grad_sensitivity.py --config=configs/goca.py:demo \\
      --config.data.synthetic_preset=test --config.data.cache_dir=/tmp/vids ...
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "GOCA config file (configs/goca.py[:variant]).")
flags.DEFINE_float("noise", 1e-7, "Relative standard deviation of the input noise.")
flags.DEFINE_integer("repeats", 2, "Noisy batches (different noise draws).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import jax
  import numpy as np
  from flax import nnx

  from fedvssl_jax import datasets
  from fedvssl_jax.goca import runner as goca
  from fedvssl_jax.core import mesh as mesh_lib
  from fedvssl_jax.core import state as state_lib
  from input_pipeline import pipeline

  config = FLAGS.config
  if config.runner != "goca":
    print(f"error: --config runner is {config.runner!r}, not 'goca'", file=sys.stderr)
    return 2
  splits = datasets.load_splits(config.data)
  if "flow" in goca.model_streams(config):
    goca.ensure_flow(config, splits)
  rgb_keys, flow_keys = goca.view_keys(config)
  ds = pipeline.make_train_dataset(splits.train, goca.make_builder(config), batch_size=config.batch_size,
                                   seed=config.seed, num_workers=0)
  it = iter(ds)
  batch = {k: v for k, v in next(it).items() if k in rgb_keys + flow_keys}
  if hasattr(it, "close"):
    it.close()

  model = goca.build_model(config, nnx.Rngs(config.seed))
  model.train()
  graphdef, params, rest = state_lib.split_model(model)
  steps_per_epoch = max(1, len(splits.train) // config.batch_size)
  prior, _, _ = goca.step_variant(config, 0, steps_per_epoch, steps_per_epoch)
  loss_fn = goca.make_loss_fn(config, use_prior=prior, use_queue=False, push_queue=False)

  def loss(p, b):
    return loss_fn(nnx.merge(graphdef, p, rest, copy=True), b, None)[0]

  compiled = {}  # one compilation per device set: the noisy batches reuse the 1-device one

  def grad_on(devices, b):
    key = tuple(d.id for d in devices)
    if key not in compiled:
      mesh = mesh_lib.make_mesh(None, devices=devices)
      compiled[key] = jax.jit(jax.value_and_grad(loss),
                              in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)))
    value, g = jax.device_get(compiled[key](params, b))
    return float(value), np.concatenate([np.ravel(x).astype(np.float64) for x in jax.tree.leaves(g)])

  runs = [(f"{jax.device_count()} devices", jax.devices(), batch), ("1 device", jax.devices()[:1], batch)]
  rng = np.random.default_rng(0)
  for i in range(FLAGS.repeats):
    noisy = {k: (v * (1 + FLAGS.noise * rng.standard_normal(v.shape))).astype(v.dtype) for k, v in batch.items()}
    runs.append((f"1 device, input x (1 + {FLAGS.noise:g} N(0,1)) #{i + 1}", jax.devices()[:1], noisy))
  ref = None
  for name, devices, b in runs:
    value, g = grad_on(devices, b)
    ref = g if ref is None else ref
    change = np.linalg.norm(g - ref) / np.linalg.norm(ref)
    print(f"{name}: loss {value:.9f}, |grad| {np.linalg.norm(g):.6f}, |grad - grad(all devices)| / |grad| "
          f"{change:.3e}", flush=True)
  return 0


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
