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

Source: microsoft/CtP `configs/recognizers/*` (the recipe FedVSSL fine-tunes with; configs/supervised.py holds the
shared TSN recipe: R3D-18, dropout 0.5, 16 frames at stride 2, SGD lr 0.01 momentum 0.9 wd 5e-4 clip 40, batch 32,
150 epochs, x0.1 at 60 and 120, 10-clip test); `finetune_config` below adds the backbone init and CtP's own
augmentation. The loaded backbone keeps the architecture recorded with it (model.json); the fc is always new.
Without an init the backbone is random (scratch); top-1 / top-5 / mean-class accuracy in `<workdir>/results.json`.
Variants: `demo` (configs/supervised.py's demo; fine-tunes `init` and a random init, see below), `split=1|2|3`
(default 1), `init=DIR` (= config.init.backbone_checkpoint), `recipe=goca` (GOCA's fine-tuning,
`goca_finetune_recipe`; docs/goca.md), `compare_scratch=0|1` (= config.compare_scratch; default 1 with `demo`, else
0): fine-tune the backbone and a random init of its architecture with the same recipe and seed, in
`<workdir>/{pretrained,scratch}`, both test figures in `<workdir>/results.json` as
{"finetune": {"pretrained": {...}, "scratch": {...}}}.
"""

import os

import ml_collections

from fedvssl_jax.config_utils import EVAL_DATASETS, check_choice, load_recipe, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, split=1, init="", recipe="fedvssl", compare_scratch=-1)
  return finetune_config("ucf101", arg)


def finetune_config(dataset: str, arg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The fine-tuning recipe on `dataset` ("ucf101" | "hmdb51") for the parsed variant `arg` (demo, split, init,
  recipe)."""
  check_choice("dataset", dataset, EVAL_DATASETS)
  check_choice("split", arg.split, (1, 2, 3))
  config = load_recipe("supervised", os.path.dirname(os.path.abspath(__file__))).supervised_config(dataset, arg.demo)
  config.data.split = arg.split  # the papers report split 1
  config.init.backbone_checkpoint = arg.init
  # Also fine-tune a random init of the checkpoint's architecture with the same recipe and seed, both test figures in
  # results.json (evaluation/supervised.py compare_with_scratch): on for the demo (the fine-tuning demo compares the
  # CtP demo's backbone with scratch), off otherwise; variant `compare_scratch=0|1` chooses.
  config.compare_scratch = bool(arg.demo if arg.compare_scratch < 0 else arg.compare_scratch)
  if arg.demo:
    config.num_epochs = 4  # 72 steps per run: the demo trains two inits (pretrained and scratch) one after the other
  if not arg.demo:
    # CtP's fine-tuning augmentation (its recognizer configs): (w, h) scales (149,112)/(171,128)/(192,144), flip
    # 0.35, brightness +-32 / contrast x exp(U(+-0.2)) / HSV (hue +-12, saturation x exp(U(+-0.1))) each with p 0.2;
    # test views resized to (171, 128). train.augment="colorjitter" is the torchvision-style alternative.
    config.train.augment = "ctp"
    config.test.resize_wh = (171, 128)
  config.optim.backbone_lr_ratio = 1.0  # > 1: the backbone's lr is lr / ratio (GOCA recipe: 10)
  if arg.recipe == "goca":
    goca_finetune_recipe(config)
  elif arg.recipe != "fedvssl":
    raise ValueError(f"config variant recipe={arg.recipe!r}: expected fedvssl or goca")
  return config


def goca_finetune_recipe(config: ml_collections.ConfigDict) -> None:
  """GOCA's fine-tuning (ViCC-style, `--use_vicc_opt`; helper/train_utils.py setup_optimization_finetune,
  get_wicc_val): SGD momentum 0.9 without Nesterov, the backbone at lr / 10 (`--backbone_ratio 10`), lr x0.1 at
  epochs 60 and 80 (`--lr_milestones`), GOCA's `--weight_decay` default 1e-4. The peak lr (`config.optim.lr`) and
  the number of epochs stay the recipe's: GOCA released no fine-tuning command that sets them."""
  config.optim.update(dict(name="sgd", momentum=0.9, nesterov=False, schedule="step", step_epochs=(60, 80),
                           step_factor=0.1, weight_decay=1e-4, backbone_lr_ratio=10.0))
