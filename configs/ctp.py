"""Catch-the-Patch (CtP) pretraining, the pretext task of FedVSSL's main results.

  python -m fedvssl_jax.main --config=configs/ctp.py --workdir=DIR --config.data.root=/data/kinetics400
  python -m fedvssl_jax.main --config=configs/ctp.py:demo --workdir=DIR      # synthetic videos, CPU, minutes
  python -m fedvssl_jax.main --config=configs/ctp.py:demo,tfds --workdir=DIR  # the same from the TFDS-prepared JPEGs

Recipe (microsoft/CtP `configs/ctp/r3d_18_kinetics/pretraining.py`): R3D-18 with CtP's pretraining strides (layer 4
keeps spatial stride 1: 512x2x14x14 maps), 16 frames at random stride 1..5 with jitter, short side {112,128,144}, crop
112, flip, PatchMask (3 trajectories), HSV / dynamic brightness / contrast; SGD lr 0.01, momentum 0.9, wd 1e-4, clip 40,
batch 32, 90 epochs, x0.1 at 30 and 60; BN eps 1e-3. Data defaults to CtP's Kinetics layout
(`<root>/<name>/RGB_frames.zip` + `annotations/{train,val}.json`).
"""

from fedvssl_jax.config_utils import parse_arg, pretext_config


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, tfds=False)
  config = pretext_config("ctp", arg.demo)
  if arg.tfds:  # train from a TFDS dataset of JPEG frames (scripts/prepare_dataset.py --tfds; made on first use)
    config.data.source = "tfds"
    config.data.tfds_name = "fedvssl_videos/synthetic" if arg.demo else "fedvssl_videos/kinetics400"
  return config
