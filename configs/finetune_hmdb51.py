r"""Fine-tuning a pretrained backbone on HMDB-51 (the FedVSSL / CtP protocol; fedvssl.md section 5).

Same recipe and commands as configs/finetune_ucf101.py (fc 512 -> 51); import a torchvision / CtP state dict with
scripts/import_torch_weights.py or a FedVSSL `round-*.npz` with scripts/import_fedvssl_checkpoint.py first:

  python scripts/import_fedvssl_checkpoint.py --src round-540.npz --out exported/fedvssl_a09_b1
  python -m fedvssl_jax.main --config=configs/finetune_hmdb51.py:init=exported/fedvssl_a09_b1 --workdir=runs/ft_hmdb \
      --config.data.root=/data/hmdb51
  python -m fedvssl_jax.main --config=configs/finetune_hmdb51.py:split=2 --workdir=runs/ft_hmdb_s2 \
      --config.data.root=/data/hmdb51 --config.init.backbone_checkpoint=runs/ctp/export/backbone

Variants: `demo` (synthetic videos, tiny R3D; fine-tunes `init` and a random init, see below), `split=1|2|3`
(default 1), `init=DIR` (= config.init.backbone_checkpoint), `recipe=goca` (GOCA's fine-tuning; docs/goca.md),
`compare_scratch=0|1` (= config.compare_scratch; default 1 with `demo`, else 0): fine-tune the backbone and a random
init of its architecture with the same recipe and seed, in `<workdir>/{pretrained,scratch}`, both test figures in
`<workdir>/results.json` as {"finetune": {"pretrained": {...}, "scratch": {...}}}.
"""

from fedvssl_jax.config_utils import finetune_config, goca_finetune_recipe, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, split=1, init="", recipe="fedvssl", compare_scratch=-1)
  config = finetune_config("hmdb51", demo=arg.demo, split=arg.split, init=arg.init,
                           compare_scratch=None if arg.compare_scratch < 0 else bool(arg.compare_scratch))
  if arg.recipe == "goca":  # GOCA's ViCC-style fine-tuning: backbone lr / 10, lr x0.1 at epochs 60 and 80
    goca_finetune_recipe(config)
  elif arg.recipe != "fedvssl":
    raise ValueError(f"config variant recipe={arg.recipe!r}: expected fedvssl or goca")
  return config
