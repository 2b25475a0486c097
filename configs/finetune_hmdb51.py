r"""Fine-tuning a pretrained backbone on HMDB-51 (the FedVSSL / CtP protocol; fedvssl.md section 5).

The recipe of configs/finetune_ucf101.py (`finetune_config`) on HMDB-51: fc 512 -> 51, the same optimiser,
schedule, clips and augmentation (CtP `configs/recognizers/_base_/runtime_hmdb51.py`). Import a torchvision / CtP
state dict with scripts/import_torch_weights.py or a FedVSSL `round-*.npz` with scripts/import_fedvssl_checkpoint.py:

  python scripts/import_fedvssl_checkpoint.py --src round-540.npz --out exported/fedvssl_a09_b1
  python -m fedvssl_jax.main --config=configs/finetune_hmdb51.py:init=exported/fedvssl_a09_b1 --workdir=runs/ft_hmdb \
      --config.data.root=/data/hmdb51
  python -m fedvssl_jax.main --config=configs/finetune_hmdb51.py:split=2 --workdir=runs/ft_hmdb_s2 \
      --config.data.root=/data/hmdb51 --config.init.backbone_checkpoint=runs/ctp/export/backbone

Variants: `demo` (synthetic videos, tiny R3D; fine-tunes `init` and a random init), `split=1|2|3` (default 1),
`init=DIR` (= config.init.backbone_checkpoint), `recipe=goca` (GOCA's fine-tuning; docs/goca.md),
`compare_scratch=0|1` (as configs/finetune_ucf101.py).
"""

import os

from fedvssl_jax.config_utils import load_recipe, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, split=1, init="", recipe="fedvssl", compare_scratch=-1)
  return load_recipe("finetune_ucf101", os.path.dirname(os.path.abspath(__file__))).finetune_config("hmdb51", arg)
