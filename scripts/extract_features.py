"""Pooled backbone features (eval mode, float32) of a stack of clips.

  python scripts/extract_features.py --checkpoint exported/r3d_18 --clips clips.npy --out feats.npy \
      [--layout ncthw|nthwc] [--batch_size 8]

IN.npy holds [N, C, T, H, W] (ncthw, PyTorch's layout, the default) or [N, T, H, W, C] (nthwc) clips, normalised as the model
expects; OUT.npy gets float32 [N, feature_dim].
"""

from __future__ import annotations

import os
import sys

import numpy as np

from fedvssl_jax import cli
from fedvssl_jax.models import export


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--checkpoint", required=True, help="exported-backbone directory")
  p.add_argument("--clips", required=True, help="input .npy of clips")
  p.add_argument("--out", required=True, help="output .npy of float32 features")
  p.add_argument("--layout", choices=("ncthw", "nthwc"), default="ncthw",
                 help="layout of the clips: ncthw (PyTorch, the default) or nthwc")
  p.add_argument("--batch_size", type=int, default=8, help="clips per forward pass")
  args = p.parse_args(argv)

  if not os.path.isfile(args.clips):
    raise SystemExit(f"--clips file {args.clips!r} does not exist")
  try:
    clips = np.load(args.clips, mmap_mode="r", allow_pickle=False)
  except ValueError as e:
    raise SystemExit(f"cannot read {args.clips!r} as a plain .npy array: {e}") from None
  model, meta = export.load_backbone(args.checkpoint, output="pooled")
  feats = export.extract_features(model, clips, batch_size=args.batch_size, layout=args.layout, progress=True)
  np.save(args.out, feats)
  print(f"wrote {feats.shape} float32 features of {meta['arch']} to {args.out}")
  return 0


if __name__ == "__main__":
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
