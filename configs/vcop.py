"""VCOP (video clip order prediction) pretraining, one of FedVSSL's pretext tasks.

  python -m fedvssl_jax.main --config=configs/vcop.py --workdir=DIR --config.data.root=/data/kinetics400
  python -m fedvssl_jax.main --config=configs/vcop.py:demo --workdir=DIR

Recipe (microsoft/CtP `configs/vcop/*`): R3D-18, 3 clips of 16 consecutive frames 8 apart, resize to 171x128, one
random 112 crop, shuffled by one of 6 permutations; pairwise head; SGD lr 0.001, momentum 0.9, wd 1e-4, clip 40,
batch 32, 90 epochs, x0.1 at 30 and 60.
"""

from fedvssl_jax.config_utils import parse_arg, pretext_config


def get_config(arg=None):
  arg = parse_arg(arg, demo=False)
  return pretext_config("vcop", arg.demo)
