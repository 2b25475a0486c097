"""Exports an exported-backbone directory to a PyTorch-named state dict (.safetensors, .npz or .pth).

  python scripts/export_torch_weights.py --checkpoint exported/r3d_18 --out r3d_18.safetensors \
      [--convention torchvision|ctp] [--backbone_prefix PREFIX]

Conv kernels are written as (O, I, kT, kH, kW), linear weights as (out, in), `num_batches_tracked` as 0.
"""

from __future__ import annotations

import sys

from fedvssl_jax import cli
from fedvssl_jax.models import export, torch_names


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--checkpoint", required=True, help="exported-backbone directory")
  p.add_argument("--out", required=True, help="output file: .safetensors, .npz or .pth (needs torch)")
  p.add_argument("--convention", choices=torch_names.CONVENTIONS, default=None,
                 help="PyTorch naming convention (default: torchvision for r3d_18/r2plus1d_18, else ctp)")
  p.add_argument("--backbone_prefix", default=None,
                 help="prefix of backbone names (default: '' for torchvision, 'backbone.' for ctp)")
  args = p.parse_args(argv)

  meta, backbone, fc = export.load_state(args.checkpoint)
  arch = meta["arch"]
  convention = args.convention or torch_names.default_convention(arch)
  state = torch_names.flat_to_torch_state(backbone, arch, convention, fc_flat=fc,
                                          backbone_prefix=args.backbone_prefix)
  torch_names.save_state_dict_file(state, args.out)
  print(f"exported {len(state)} tensors of {arch} ({convention} names) from {args.checkpoint} -> {args.out}")
  if meta["backbone_kwargs"].get("residual_frames"):
    print(f"note: {args.checkpoint} was trained on residual frames (model.json backbone_kwargs.residual_frames): feed "
          "the PyTorch model x[:, :, 1:] - x[:, :, :-1] of the normalised NCTHW clip, not the clip", file=sys.stderr)
  return 0


if __name__ == "__main__":
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
