r"""Fine-tuning a pretrained backbone on UCF-101 (the FedVSSL / CtP protocol; fedvssl.md section 5).

A backbone is an exported-backbone directory: one of ours (a pretraining run's `<workdir>/export/backbone`), or one
imported from torchvision / CtP (a PyTorch state dict) or from FedVSSL (a global model `round-*.npz`):

  # ours, e.g. after `--config=configs/ctp.py` or `--config=configs/fedvssl.py`
  python -m fedvssl_jax.main --config=configs/finetune_ucf101.py --workdir=runs/ft_ucf \
      --config.data.root=/data/ucf101 --config.init.backbone_checkpoint=runs/ctp/export/backbone
  # torchvision's Kinetics-400 R3D-18 (or a CtP checkpoint with --convention ctp)
  python scripts/import_torch_weights.py --arch r3d_18 --src r3d_18-b3b3357e.pth --out exported/r3d_18_k400
  python -m fedvssl_jax.main --config=configs/finetune_ucf101.py:init=exported/r3d_18_k400 --workdir=runs/ft_tv \
      --config.data.root=/data/ucf101
  # a published FedVSSL model
  python scripts/import_fedvssl_checkpoint.py --src round-540.npz --out exported/fedvssl_a09_b1
  python -m fedvssl_jax.main --config=configs/finetune_ucf101.py:init=exported/fedvssl_a09_b1 --workdir=runs/ft_fed \
      --config.data.root=/data/ucf101

  # the fine-tuning demo (synthetic videos, CPU, minutes): the CtP demo's backbone and a random init, same recipe
  python -m fedvssl_jax.main --config=configs/ctp.py:demo --workdir=/tmp/ctp_demo
  python -m fedvssl_jax.main --config=configs/finetune_ucf101.py:demo,init=/tmp/ctp_demo/export/backbone \
      --workdir=DIR

Recipe (`fedvssl_jax.config_utils.finetune_config`): R3D-18 TSN (pooled feature, dropout 0.5, fc 512 -> 101), one
16-frame clip at stride 2; CtP's augmentation (`train.augment="ctp"`): resize to one of the (w, h) pairs
(149,112)/(171,128)/(192,144), random crop 112, flip 0.35, then brightness +-32, contrast x exp(U(+-0.2)) and HSV
(hue +-12, saturation x exp(U(+-0.1))), each on its own with p=0.2 (`--config.train.augment=colorjitter`: random
short side {112,128,144} + torchvision-style ColorJitter instead); SGD lr 0.01, momentum 0.9, weight decay 5e-4,
clip 40, batch 32, 150 epochs, lr x0.1 at epochs 60 and 120; test: 10 uniform clips resized to 171x128, centre crop
112, logits averaged; top-1 / top-5 / mean-class accuracy in `<workdir>/results.json`. The loaded backbone keeps the
architecture recorded with it (model.json); the fc is always new. Without an init the backbone is random (scratch).
Variants: `demo` (synthetic videos, tiny R3D; fine-tunes `init` and a random init, see below), `split=1|2|3`
(default 1), `init=DIR` (= config.init.backbone_checkpoint), `recipe=goca` (GOCA's fine-tuning; docs/goca.md),
`compare_scratch=0|1` (= config.compare_scratch; default 1 with `demo`, else 0): fine-tune the backbone and a random
init of its architecture with the same recipe and seed, in `<workdir>/{pretrained,scratch}`, both test figures in
`<workdir>/results.json` as {"finetune": {"pretrained": {...}, "scratch": {...}}}.
"""

from fedvssl_jax.config_utils import finetune_config, goca_finetune_recipe, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, split=1, init="", recipe="fedvssl", compare_scratch=-1)
  config = finetune_config("ucf101", demo=arg.demo, split=arg.split, init=arg.init,
                           compare_scratch=None if arg.compare_scratch < 0 else bool(arg.compare_scratch))
  if arg.recipe == "goca":  # GOCA's ViCC-style fine-tuning: backbone lr / 10, lr x0.1 at epochs 60 and 80
    goca_finetune_recipe(config)
  elif arg.recipe != "fedvssl":
    raise ValueError(f"config variant recipe={arg.recipe!r}: expected fedvssl or goca")
  return config
