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

Source: the default is this project's protocol on the fine-tuning test views (neither FedVSSL nor CtP report a
linear probe); `recipe=goca` is GOCA's linear evaluation (Seleucia/goca helper/eval_helper.py; goca.md). Top-1 /
top-5 / mean-class accuracy on the test split in `<workdir>/results.json`, features in
`<workdir>/features_{train,test}.npz`.
Variants: `demo` (synthetic videos, 8-frame 64 px clips), `dataset=ucf101|hmdb51|json|synthetic`, `split=1|2|3`,
`init=DIR` (= config.init.backbone_checkpoint), `flow=DIR` (= config.init.flow_backbone_checkpoint), `recipe=goca`
(GOCA's linear evaluation; docs/goca.md).
"""

import ml_collections

from fedvssl_jax.config_utils import DEMO_EVAL_VIEWS, TEST_VIEWS, eval_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, dataset="ucf101", split=1, init="", flow="", recipe="default")
  config = linear_probe_config(arg.dataset, demo=arg.demo, split=arg.split, init=arg.init, flow_init=arg.flow)
  if arg.recipe == "goca":
    goca_linear_probe_recipe(config)
  elif arg.recipe != "default":
    raise ValueError(f"config variant recipe={arg.recipe!r}: expected default or goca")
  return config


def linear_probe_config(dataset: str = "ucf101", demo: bool = False, split: int = 1, init: str = "",
                        flow_init: str = "") -> ml_collections.ConfigDict:
  """Linear probe of a frozen exported backbone (`runner = "linear_probe"`, evaluation/linear_probe.py)."""
  config = eval_config("linear_probe", dataset, demo, split, init, flow_init)
  # Features: the fine-tuning test views (10 uniform 16-frame clips at stride 2, centre crop 112 of short side 128;
  # `three_crop=True` adds left / right crops), each view L2-normalised, views averaged (two streams: the RGB and
  # flow features of each view averaged first).
  config.features = ml_collections.ConfigDict(dict(TEST_VIEWS))
  # Classifier: multinomial logistic regression on the standardised train-split features, Adam with a cosine
  # schedule, L2 penalty on the weights, 100 epochs.
  config.probe = ml_collections.ConfigDict(dict(
      epochs=100, batch_size=256,  # batch_size <= 0: full batch
      optimizer="adam",            # adam | sgd (momentum 0.9)
      lr=1e-3, weight_decay=1e-4,  # L2 penalty 0.5 * weight_decay * |W|^2 (not on the bias)
      standardize=True, seed=0))
  if config.data.source == "synthetic":
    # demo: the synthetic videos' views; 300 training videos make about 2 steps per epoch, hence lr 0.01.
    config.features.update(DEMO_EVAL_VIEWS)
    config.probe.lr = 0.01
  return config


def goca_linear_probe_recipe(config: ml_collections.ConfigDict) -> None:
  """GOCA's linear evaluation (helper/eval_helper.py set_eval_params, my_models/LinearEvalModels.py RegLog): BN
  (no affine learning here: standardised with the train statistics) then a linear layer, SGD momentum 0.9 at
  `--eval_lr` 0.3 with a cosine schedule to 0, `--eval_wd` 1e-6, 100 epochs."""
  config.probe.update(dict(optimizer="sgd", lr=0.3, weight_decay=1e-6, epochs=100, standardize=True))
