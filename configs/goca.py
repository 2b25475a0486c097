"""GOCA: two-stream (RGB + optical flow) pretraining with guided online cluster assignment. The main config.

  python -m fedvssl_jax.main --config=configs/goca.py:demo --workdir=DIR             # synthetic videos, CPU, minutes
  python -m fedvssl_jax.main --config=configs/goca.py --workdir=DIR --config.data.root=/data/kinetics400
  python -m fedvssl_jax.main --config=configs/goca.py:demo,federated --workdir=DIR   # GOCA through Flower

Recipe (Coskun et al., ECCV 2022; goca.md): see `fedvssl_jax.config_utils.goca_config`. Flow videos are expected
beside the RGB tree (`videos/` -> `videos_flow/`, made by scripts/extract_flow.py); the demo extracts them itself.
`goca.prior_sign=1` is the KL-regularised prior the paper describes; `-1` reproduces the released code's sign.

Variants (docs/goca.md names each one's source in GOCA's code):
  modality=rgb|flow   single-stream SwAV with GOCA's fixed prototypes (`--video_channels rgb`: the released script)
  merge=avg           AvgRgbFlow: one SwAV loss on the averaged streams (`--video_modal_merge_algo 0`)
  e.g. --config=configs/goca.py:demo,modality=rgb ; `--config.goca.sinkhorn_cycle=2` repeats the guided Sinkhorn.
"""

from fedvssl_jax.config_utils import _check_choice, federated_config, goca_config, parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, federated=False, modality="rgb_flow", merge="prior")
  config = goca_config(arg.demo)
  _check_choice("modality", arg.modality, ("rgb_flow", "rgb", "flow"))
  _check_choice("merge", arg.merge, ("prior", "avg"))
  config.goca.modality = arg.modality
  config.goca.merge = arg.merge
  config.data.with_flow = arg.modality != "rgb"
  if arg.federated:
    config.federated = federated_config(arg.demo)
    config.federated.trainer = "goca"
    config.runner = "federated"
  return config
