"""Imports a published FedVSSL global model (`round-*.npz`) as an exported R3D-18 backbone directory.

  python scripts/import_fedvssl_checkpoint.py --src round-540.npz --out exported/fedvssl_a09_b1 [--allow_pickle]

FedVSSL's server (and the Flower baseline) saves the global model as *unnamed* arrays in the PyTorch `state_dict`
order of CtP's R3D-18 pretext model: the 120 backbone entries first (stem, then layer1..4 blocks: conv1, bn1, conv2,
bn2, [downsample conv, downsample_bn]; every BN as weight, bias, running_mean, running_var, num_batches_tracked),
then the CtP head (6 arrays), which is dropped here. Two containers exist:
  * `np.savez(path, *arrays)`: arrays `arr_0 .. arr_N` (read without pickle);
  * a single pickled object in `arr_0` (a Flower `Parameters` whose tensors are `.npy` bytes, or a list of arrays).
    Unpickling runs arbitrary code from the file, so it is refused unless `--allow_pickle` is given; only use it
    for files from a source you trust.

The backbone is written with `fedvssl_jax.models.export.save_backbone` as arch `r3d_18` with CtP's BatchNorm
epsilon 1e-3 (the weights fit both CtP's pretraining strides and the standard fine-tuning strides; model.json records
the fine-tuning ones). `--backbone_kwargs` can add `build_backbone` kwargs (e.g. a width multiplier for tests).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import warnings
import zipfile
from typing import Any, Sequence

import numpy as np

from fedvssl_jax import cli

BN_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
CTP_HEAD_ARRAYS = 6  # temporal conv w/b, fc1 w/b, pred w/b


def ctp_r3d18_backbone_names(prefix: str = "backbone.") -> list[str]:
  """CtP's R3D-18 backbone `state_dict` keys in order (120 names, module registration order of microsoft/CtP
  `pyvrl/models/backbones/r3d.py`: stem conv/bn; per BasicBlock conv1, bn1, conv2, bn2, downsample, downsample_bn)."""
  names = [f"{prefix}stem.conv.weight"] + [f"{prefix}stem.bn.{leaf}" for leaf in BN_LEAVES]
  for layer in range(1, 5):
    for block in range(2):
      base = f"{prefix}layer{layer}.{block}."
      names.append(base + "conv1.conv.weight")
      names += [base + f"bn1.{leaf}" for leaf in BN_LEAVES]
      names.append(base + "conv2.conv.weight")
      names += [base + f"bn2.{leaf}" for leaf in BN_LEAVES]
      if layer > 1 and block == 0:  # stride-2 first block of layers 2-4 (channels change)
        names.append(base + "downsample.conv.weight")
        names += [base + f"downsample_bn.{leaf}" for leaf in BN_LEAVES]
  return names


def _arrays_from_object(obj: Any, path: str) -> list[np.ndarray]:
  """The array list inside an unpickled object: a Flower `Parameters` (tensors = .npy bytes) or a sequence."""
  if isinstance(obj, np.ndarray) and obj.dtype == object:
    obj = obj.item() if obj.ndim == 0 else list(obj)
  if hasattr(obj, "tensors"):
    out = []
    for i, t in enumerate(obj.tensors):
      try:
        out.append(np.load(io.BytesIO(t), allow_pickle=False))
      except Exception as e:  # pylint: disable=broad-except
        raise ValueError(f"{path}: tensor {i} of the pickled Parameters is not .npy bytes ({e})") from e
    return out
  if isinstance(obj, (list, tuple)) and all(hasattr(a, "shape") for a in obj):
    return [np.asarray(a) for a in obj]
  raise ValueError(f"{path}: the pickled object is a {type(obj).__name__}, not Flower Parameters or a list of arrays")


def read_fedvssl_npz(path: str, allow_pickle: bool = False) -> list[np.ndarray]:
  """The ordered arrays of a FedVSSL `round-*.npz`.

  Raises:
    FileNotFoundError; ValueError when the file needs pickle and `allow_pickle` is False (explaining why), or its
    content is not an array list.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} does not exist")
  pattern = re.compile(r"^arr_(\d+)$")
  if not zipfile.is_zipfile(path):  # np.load would call any other bytes "pickled data" without naming the file
    raise ValueError(f"{path} is not an .npz archive (the FedVSSL server's np.savez output)")
  pickled = False
  with np.load(path, allow_pickle=False) as z:
    files = list(z.files)
    if not files or not all(pattern.match(f) for f in files):
      raise ValueError(f"{path}: expected arrays arr_0..arr_N (np.savez(*arrays)), found {files[:5]}")
    files.sort(key=lambda f: int(pattern.match(f).group(1)))
    try:
      arrays = [z[f] for f in files]
    except ValueError as e:  # "Object arrays cannot be loaded when allow_pickle=False"
      if "pickle" not in str(e).lower():
        raise ValueError(f"{path}: {e}") from e
      pickled = True
  if not pickled:
    if len(arrays) == 1:
      raise ValueError(f"{path} holds a single plain array of shape {arrays[0].shape}, not a model")
    return arrays
  if not allow_pickle:
    raise ValueError(f"{path} stores a pickled Python object (the FedVSSL server's np.savez(Parameters)); loading "
                     "it can execute arbitrary code. Re-run with --allow_pickle only if you trust the file's source.")
  warnings.warn(f"unpickling {path}: this executes code embedded in the file; only do this for trusted files",
                stacklevel=2)
  with np.load(path, allow_pickle=True) as z:
    if len(files) != 1:
      return [np.asarray(z[f]) for f in files]
    return _arrays_from_object(z[files[0]], path)


def backbone_state_dict(arrays: Sequence[np.ndarray], path: str = "<arrays>") -> dict[str, np.ndarray]:
  """Names the first 120 arrays with CtP's R3D-18 backbone keys, checking that the order is plausible.

  Raises:
    ValueError: fewer than 120 arrays, or an array whose rank does not fit its name (naming index and key).
  """
  names = ctp_r3d18_backbone_names()
  if len(arrays) < len(names):
    raise ValueError(f"{path}: {len(arrays)} arrays, but CtP's R3D-18 backbone alone has {len(names)}")
  state = {}
  for i, (name, arr) in enumerate(zip(names, arrays)):
    arr = np.asarray(arr)
    want = 0 if name.endswith("num_batches_tracked") else 5 if name.endswith("conv.weight") else 1
    if arr.ndim != want:
      raise ValueError(f"{path}: array {i} has shape {arr.shape} but CtP's R3D-18 order puts {name!r} (rank {want}) "
                       "there; this is not a FedVSSL CtP R3D-18 checkpoint")
    state[name] = arr
  return state


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--src", required=True, help="FedVSSL global model round-*.npz")
  p.add_argument("--out", required=True, help="output exported-backbone directory")
  p.add_argument("--allow_pickle", action="store_true",
                 help="allow unpickling a pickled Parameters object (executes code from the file: trusted files only)")
  p.add_argument("--backbone_kwargs", default="{}", help="extra JSON build_backbone kwargs (default CtP: bn eps 1e-3)")
  args = p.parse_args(argv)
  try:
    extra = json.loads(args.backbone_kwargs)
  except json.JSONDecodeError as e:
    raise SystemExit(f"--backbone_kwargs is not valid JSON: {e}") from None
  if not isinstance(extra, dict):
    raise SystemExit("--backbone_kwargs must be a JSON object")

  from fedvssl_jax.models import export, torch_names

  try:
    arrays = read_fedvssl_npz(args.src, allow_pickle=args.allow_pickle)
    state = backbone_state_dict(arrays, args.src)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  kwargs = {"bn_epsilon": 1e-3, **extra}
  template = export.backbone_template("r3d_18", **kwargs)
  backbone, _ = torch_names.torch_state_to_flat(state, "r3d_18", "ctp", template=template, strict=True)
  out = export.save_backbone(args.out, "r3d_18", kwargs, backbone)
  head = len(arrays) - len(state)
  print(f"imported {len(state)} CtP R3D-18 backbone arrays ({len(backbone)} params/stats) from {args.src} -> {out}; "
        f"dropped {head} head array(s){'' if head == CTP_HEAD_ARRAYS else f' (CtP head has {CTP_HEAD_ARRAYS})'}")
  return 0


if __name__ == "__main__":
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
