r"""Linear probe of a frozen exported backbone on UCF-101 / HMDB-51 (features -> logistic regression -> accuracy).

  python -m fedvssl_jax.main --config=configs/linear_probe.py --workdir=runs/lin_ucf --config.data.root=/data/ucf101 \
      --config.init.backbone_checkpoint=runs/ctp/export/backbone
  python -m fedvssl_jax.main --config=configs/linear_probe.py:dataset=hmdb51 --workdir=runs/lin_hmdb \
      --config.data.root=/data/hmdb51 --config.init.backbone_checkpoint=runs/goca/export/backbone \
      --config.init.flow_backbone_checkpoint=runs/goca/export/flow_backbone
  # another classifier setting on the same features (no backbone is run):
  python -m fedvssl_jax.main --config=configs/linear_probe.py --workdir=runs/lin_ucf_wd \
      --config.features_dir=runs/lin_ucf --config.probe.weight_decay=1e-3
  python -m fedvssl_jax.main --config=configs/linear_probe.py:demo,init=DIR --workdir=DIR2   # synthetic videos, CPU

Protocol (`fedvssl_jax.config_utils.linear_probe_config`): 10 uniform 16-frame clips at stride 2, centre crop 112 of
short side 128 (`config.features.three_crop=True` adds left / right crops); each view's pooled feature L2-normalised,
views averaged (two streams: the RGB and flow features of each view averaged first); standardised features,
multinomial logistic regression with Adam (cosine schedule, lr 1e-3, batch 256, 100 epochs, L2 1e-4) on the train
split; top-1 / top-5 / mean-class accuracy on the test split in `<workdir>/results.json`, features in
`<workdir>/features_{train,test}.npz`.
Variants: `demo` (synthetic videos, 8-frame 64 px clips), `dataset=ucf101|hmdb51|json|synthetic`, `split=1|2|3`,
`init=DIR` (= config.init.backbone_checkpoint), `flow=DIR` (= config.init.flow_backbone_checkpoint), `recipe=goca`
(GOCA's linear evaluation; docs/goca.md).
"""

from fedvssl_jax.config_utils import goca_linear_probe_recipe, linear_probe_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, dataset="ucf101", split=1, init="", flow="", recipe="default")
  config = linear_probe_config(arg.dataset, demo=arg.demo, split=arg.split, init=arg.init, flow_init=arg.flow)
  if arg.recipe == "goca":  # GOCA's linear evaluation: SGD lr 0.3, cosine, wd 1e-6, 100 epochs, BN-normalised
    goca_linear_probe_recipe(config)
  elif arg.recipe != "default":
    raise ValueError(f"config variant recipe={arg.recipe!r}: expected default or goca")
  return config
