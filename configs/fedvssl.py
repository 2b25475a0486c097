"""Federated self-supervised pretraining (FedVSSL) with Flower: CtP by default, VCOP / Speed / GOCA by variant.

  python -m fedvssl_jax.main --config=configs/fedvssl.py:demo --workdir=DIR          # Flower simulation, CPU
  python -m fedvssl_jax.main --config=configs/fedvssl.py:demo,task=vcop --workdir=DIR
  python -m fedvssl_jax.main --config=configs/fedvssl.py --workdir=DIR --config.data.root=/data/kinetics400 \
      --config.federated.partitions.dir=/data/kinetics400/annotations/noniid

Source: Rehman et al., "Federated Self-supervised Learning for Video Understanding" (ECCV 2022, arXiv 2207.01975)
and its code, yasar-rehman/FEDVSSL (../shared/reference/fedvssl.md). The pretext task's own recipe
(configs/ctp.py, vcop.py, speed.py, goca.py) is the starting point; FedVSSL changes its optimiser and adds the
federated block. Clients overwrite only the backbone and keep their heads (strategy=fedvssl); strategy=fedavg loads
the whole global model.
Variants: demo (see `demo` below), task=ctp|vcop|speed|goca, strategy=fedvssl|fedavg|flower_baseline, alpha=..,
beta=0|1. `configs/goca.py:demo,federated` is the same as `configs/fedvssl.py:demo,task=goca`.
"""

import os

from fedvssl_jax.config_utils import federated_config, load_recipe, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, task="ctp", strategy="fedvssl", alpha=0.9, beta=1)
  # The task's recipe (its demo variant for a demo), e.g. configs/ctp.py.
  task_recipe = load_recipe(arg.task, os.path.dirname(os.path.abspath(__file__)))
  config = task_recipe.get_config("demo" if arg.demo else None)
  config.runner = "federated"

  # FedVSSL's federated setting (fedvssl.md): 100 non-IID Kinetics-400 clients (FedVSSL's sliding-window split,
  # or its client_dist{k}.json files in `partitions.dir`), 5 sampled per round, 1 local epoch, 540 rounds;
  # aggregation alpha = 0.9 (share of the loss-based average), beta = 1 (0.5 moving average with the last global
  # model). The block's other keys (timeouts, resources, ...) are in `fedvssl_jax.config_utils.federated_config`.
  config.federated = federated_config(arg.demo, arg.strategy, arg.alpha, arg.beta)
  if not arg.demo:
    config.federated.update(dict(num_clients=100, fraction_train=0.05, local_epochs=1, num_rounds=540))
  if arg.task == "goca":
    config.federated.trainer = "goca"  # GOCA keeps its own optimiser (LARC SGD, warm-up, cosine over local epochs)
    return config
  # FedVSSL's local optimiser: a fresh SGD every round at a constant lr, batch 4 per client (one GPU each), no
  # momentum, the task's weight decay and clip 40; lr 0.01 (CtP, Speed) or 0.001 (VCOP).
  config.optim.schedule = "constant"
  if arg.demo:
    demo(config, arg.task)
  else:
    config.batch_size = 4
    config.optim.update(dict(lr=0.001 if arg.task == "vcop" else 0.01, momentum=0.0))
  return config


def demo(config, task: str) -> None:
  """`:demo`: on top of the task's demo and the federated block's demo (3 IID clients of the synthetic set, 3
  rounds of 2 local epochs, one CPU and no GPU per client: `federated_config(demo=True)`), what FedVSSL's demo
  changes and why."""
  config.batch_size = 8  # each client holds a third of the 300 synthetic videos
  if config.optim.name == "sgd":
    config.optim.update(dict(lr=0.05, momentum=0.9))  # a few dozen local steps: the task demo's lr, with momentum
  # else the task's own demo optimiser and lr (CtP: AdamW at 5e-4, configs/ctp.py)
  if task == "ctp":
    # CtP's loss leaves its plateau after 60-120 steps (docs/pretext.md), so each round runs 72 local steps:
    # 2 clients of 150 videos, 4 local epochs of 18 batches.
    config.federated.update(dict(num_clients=2, num_rounds=5, local_epochs=4))
