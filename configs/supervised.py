"""Supervised video classification / fine-tuning (the TSN recipe of CtP and FedVSSL).

  python -m fedvssl_jax.main --config=configs/supervised.py --workdir=DIR --config.data.root=/data/ucf101
  python -m fedvssl_jax.main --config=configs/supervised.py:demo --workdir=DIR     # synthetic videos, CPU, minutes

Recipe (CtP `configs/recognizers/*`, FedVSSL fine-tuning): R3D-18, one 16-frame clip at stride 2, random short side
{112,128,144}, crop 112, flip, colour jitter; SGD lr 0.01, momentum 0.9, weight decay 5e-4, clip 40; 150 epochs with
x0.1 steps at 60 and 120; test on 10 uniform clips (centre crop 112 of short side 128), logits averaged.
Variants: `demo` (synthetic videos, tiny R3D, a few minutes on 2 CPU cores), `dataset=ucf101|hmdb51|kinetics400|json`.
The recipe is `fedvssl_jax.config_utils.supervised_config`; configs/finetune_{ucf101,hmdb51}.py start from it.
"""

from fedvssl_jax.config_utils import parse_arg, supervised_config


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, dataset="ucf101")
  return supervised_config(arg.dataset, arg.demo)
