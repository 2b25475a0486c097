"""Imports a PyTorch-named state dict (.pth / .npz / .safetensors) into an exported-backbone directory.

  python scripts/import_torch_weights.py --arch r3d_18 --src r3d_18.pth --out exported/r3d_18 \
      [--convention torchvision|ctp] [--backbone_kwargs '{"width_multiplier": 0.125}'] [--non_strict]

The classifier (`fc.*` / `cls_head.fc_cls.*`) is saved with the backbone when present.
"""

from __future__ import annotations

import json
import sys

from fedvssl_jax import cli
from fedvssl_jax.models import export, torch_names


def parse_kwargs(text: str) -> dict:
  try:
    kwargs = json.loads(text)
  except json.JSONDecodeError as e:
    raise SystemExit(f"--backbone_kwargs is not valid JSON: {e}") from None
  if not isinstance(kwargs, dict):
    raise SystemExit("--backbone_kwargs must be a JSON object")
  return kwargs


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--arch", required=True, help="backbone name (r3d_18, r2plus1d_18, r2plus1d_18_ctp, s3d)")
  p.add_argument("--src", required=True, help="state dict: .pth (needs torch), .npz or .safetensors")
  p.add_argument("--out", required=True, help="output exported-backbone directory")
  p.add_argument("--convention", choices=torch_names.CONVENTIONS, default=None,
                 help="PyTorch naming convention (default: torchvision for r3d_18/r2plus1d_18, else ctp)")
  p.add_argument("--backbone_kwargs", default="{}", help="JSON build_backbone kwargs recorded in model.json")
  p.add_argument("--non_strict", action="store_true", help="ignore names that are not backbone/classifier params")
  args = p.parse_args(argv)

  kwargs = parse_kwargs(args.backbone_kwargs)
  convention = args.convention or torch_names.default_convention(args.arch)
  state = torch_names.load_state_dict_file(args.src)
  template = export.backbone_template(args.arch, **kwargs)
  backbone, fc = torch_names.torch_state_to_flat(state, args.arch, convention, template=template,
                                                 strict=not args.non_strict)
  out = export.save_backbone(args.out, args.arch, kwargs, backbone, fc)
  fc_text = f", classifier {fc['kernel'].shape[0]}->{fc['kernel'].shape[1]}" if fc else ""
  print(f"imported {len(backbone)} backbone arrays from {args.src} ({convention} names){fc_text} -> {out}")
  return 0


if __name__ == "__main__":
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
