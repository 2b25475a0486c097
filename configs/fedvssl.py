"""Federated self-supervised pretraining (FedVSSL) with Flower: CtP by default, VCOP / Speed / GOCA by variant.

  python -m fedvssl_jax.main --config=configs/fedvssl.py:demo --workdir=DIR          # Flower simulation, CPU
  python -m fedvssl_jax.main --config=configs/fedvssl.py:demo,task=vcop --workdir=DIR
  python -m fedvssl_jax.main --config=configs/fedvssl.py --workdir=DIR --config.data.root=/data/kinetics400 \
      --config.federated.partitions.dir=/data/kinetics400/annotations/noniid

Paper setting (FedVSSL, arXiv 2207.01975; fedvssl.md): R3D-18 + CtP, 100 non-IID Kinetics-400 clients, 5 sampled per
round, 1 local epoch, 540 rounds; local SGD lr 0.01 without momentum, wd 1e-4, clip 40, batch 4, constant lr, a fresh
optimiser every round; aggregation alpha = 0.9 (loss-based share), beta = 1 (0.5 moving average). Clients overwrite
only the backbone and keep their heads (strategy=fedvssl); strategy=fedavg loads the whole global model.
Variants: demo, task=ctp|vcop|speed|goca, strategy=fedvssl|fedavg|flower_baseline, alpha=.., beta=0|1.
`configs/goca.py:demo,federated` is the same as `configs/fedvssl.py:demo,task=goca`.
"""

from fedvssl_jax.config_utils import federated_config, parse_arg, pretext_config


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, task="ctp", strategy="fedvssl", alpha=0.9, beta=1)
  if arg.task == "goca":
    from fedvssl_jax.config_utils import goca_config

    config = goca_config(arg.demo)
    config.federated = federated_config(arg.demo, arg.strategy, arg.alpha, arg.beta)
    config.federated.trainer = "goca"
  else:
    config = pretext_config(arg.task, arg.demo)
    config.federated = federated_config(arg.demo, arg.strategy, arg.alpha, arg.beta)
    config.optim.schedule = "constant"  # a fresh optimiser every round
    if arg.demo:
      config.batch_size = 8
      if config.optim.name == "sgd":
        config.optim.update(dict(lr=0.05, momentum=0.9))
      # else the task's own demo optimiser and lr (CtP: AdamW, config_utils._ctp_recipe)
      if arg.task == "ctp":
        # CtP's loss leaves its plateau after 60-120 steps (docs/pretext.md), so each round runs 72 local steps:
        # 2 clients of 150 videos, 4 local epochs of 18 batches.
        config.federated.update(dict(num_clients=2, num_rounds=5, local_epochs=4))
    else:
      config.batch_size = 4  # per client, as FedVSSL's K400 runs (one GPU per client)
      config.optim.update(dict(lr=0.001 if arg.task == "vcop" else 0.01, momentum=0.0))
  config.runner = "federated"
  return config
