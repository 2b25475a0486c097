"""Speed (playback-rate classification) pretraining, one of FedVSSL's pretext tasks.

  python -m fedvssl_jax.main --config=configs/speed.py --workdir=DIR --config.data.root=/data/kinetics400
  python -m fedvssl_jax.main --config=configs/speed.py:demo --workdir=DIR

Recipe (microsoft/CtP `configs/speednet/*`): R3D-18, 16 frames at one of 7 strides [-4,-2,-1,0,1,2,4] (negative =
reversed, 0 = static), short side {112,128,144}, flip, brightness / contrast / HSV (p 0.2), crop 112; dropout 0.5,
fc 512 -> 7; SGD lr 0.01, momentum 0.9, wd 1e-4, clip 40, batch 32, 90 epochs, x0.1 at 30 and 60.
"""

from fedvssl_jax.config_utils import parse_arg, pretext_config


def get_config(arg=None):
  arg = parse_arg(arg, demo=False)
  return pretext_config("speed", arg.demo)
