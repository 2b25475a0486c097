"""PyTorch state-dict names <-> our flat param paths, for torchvision's and CtP's ResNet-18 video backbones.

Our flat keys are the '/'-joined paths of `nnx.to_pure_dict(nnx.state(backbone))` (see `export.flatten_state`).
Scheme (CtP's module names; every conv is a module holding `kernel`):

| our path | CtP name | torchvision name |
|---|---|---|
| `stem/conv` , `stem/bn` (R3D) | `stem.conv`, `stem.bn` | `stem.0`, `stem.1` |
| `stem/conv_s`, `stem/bn_s`, `stem/conv_t`, `stem/bn_t` | same with '.' | `stem.0`, `stem.1`, `stem.3`, `stem.4` |
| `layerX/Y/conv1/conv` (R3D) | `layerX.Y.conv1.conv` | `layerX.Y.conv1.0` |
| `layerX/Y/conv1/conv_s`, `.../bn_s`, `.../conv_t` | `layerX.Y.conv1.conv_s`, ... | `layerX.Y.conv1.0.0`, `.0.1`, `.0.3` |
| `layerX/Y/bn1`, `layerX/Y/bn2` | `layerX.Y.bn1`, `.bn2` | `layerX.Y.conv1.1`, `layerX.Y.conv2.1` |
| `layerX/Y/conv2/...` | `layerX.Y.conv2...` | `layerX.Y.conv2.0...` |
| `layerX/Y/downsample/conv`, `layerX/Y/downsample_bn` | `layerX.Y.downsample.conv`, `.downsample_bn` | `layerX.Y.downsample.0`, `.downsample.1` |

Leaves: conv `kernel` (kT,kH,kW,I,O) <-> `weight` (O,I,kT,kH,kW) (transpose (2,3,4,1,0)); BN `scale`/`bias`/`mean`/
`var` <-> `weight`/`bias`/`running_mean`/`running_var`; `num_batches_tracked` is dropped on import and written as 0
on export. Linear `kernel` (in,out) <-> `weight` (out,in).

Classifier: torchvision `fc.weight`/`fc.bias`; CtP's TSN head `cls_head.fc_cls.weight`/`.bias` (microsoft/CtP
`SimpleClsHead.fc_cls`); on import `fc.*` and `fc_cls.*` are accepted too. CtP export writes the backbone under the
`backbone.` prefix (a TSN-style state dict; CtP's `pretrained=` loader strips it); import strips `module.` and
`backbone.` prefixes. The "ctp" convention is the generic '.'-joined path, so it also works for `s3d`
(`Conv_1a.conv_s.weight`, `Mixed_3b.branch1.0.conv.weight`, ...); "torchvision" is defined for the ResNets only.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from fedvssl_jax.models import export

CONVENTIONS = ("torchvision", "ctp")
RESNETS = ("r3d_18", "r2plus1d_18", "r2plus1d_18_ctp")
_BN_LEAVES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_TV_STEM = {"conv": "0", "bn": "1", "conv_s": "0", "bn_s": "1", "conv_t": "3", "bn_t": "4"}
_TV_2P1D = {"conv_s": "0.0", "bn_s": "0.1", "conv_t": "0.3"}
_CLS_NAMES = {"torchvision": "fc", "ctp": "cls_head.fc_cls"}
_CLS_ALIASES = ("fc", "fc_cls", "cls_head.fc_cls")
_DEFAULT_PREFIX = {"torchvision": "", "ctp": "backbone."}


def default_convention(arch: str) -> str:
  """torchvision names for torchvision's archs (`r3d_18`, `r2plus1d_18`), CtP names for the others."""
  return "torchvision" if arch in ("r3d_18", "r2plus1d_18") else "ctp"


def _check(arch: str, convention: str) -> None:
  if convention not in CONVENTIONS:
    raise ValueError(f"unknown convention {convention!r}; known: {', '.join(CONVENTIONS)}")
  if convention == "torchvision" and arch not in RESNETS:
    raise ValueError(f"the torchvision naming convention is defined for {', '.join(RESNETS)}, not {arch!r}; "
                     "use convention='ctp' (generic '.'-joined names)")


def _leaf_name(leaf: str, our_key: str) -> str:
  if leaf == "kernel":
    return "weight"
  if leaf in _BN_LEAVES:
    return _BN_LEAVES[leaf]
  raise ValueError(f"no PyTorch name for the leaf {leaf!r} of {our_key!r}")


def _module_torchvision(parts: list[str], our_key: str) -> str:
  if parts[0] == "stem" and len(parts) == 2 and parts[1] in _TV_STEM:
    return f"stem.{_TV_STEM[parts[1]]}"
  if parts[0].startswith("layer") and len(parts) >= 3:
    head = f"{parts[0]}.{parts[1]}"
    rest = parts[2:]
    if rest[0] in ("conv1", "conv2") and len(rest) == 2:
      if rest[1] == "conv":
        return f"{head}.{rest[0]}.0"
      if rest[1] in _TV_2P1D:
        return f"{head}.{rest[0]}.{_TV_2P1D[rest[1]]}"
    if rest in (["bn1"], ["bn2"]):
      return f"{head}.conv{rest[0][-1]}.1"
    if rest == ["downsample", "conv"]:
      return f"{head}.downsample.0"
    if rest == ["downsample_bn"]:
      return f"{head}.downsample.1"
  raise ValueError(f"no torchvision name for our param {our_key!r}")


def torch_name(our_key: str, convention: str) -> str:
  """The PyTorch state-dict name (without prefix) of one flat key, e.g. 'layer1/0/bn1/mean' ->
  'layer1.0.conv1.1.running_mean' (torchvision) or 'layer1.0.bn1.running_mean' (ctp)."""
  parts = our_key.split("/")
  if len(parts) < 2:
    raise ValueError(f"no PyTorch name for our param {our_key!r}")
  leaf = _leaf_name(parts[-1], our_key)
  if convention == "ctp":
    module = ".".join(parts[:-1])
  elif convention == "torchvision":
    module = _module_torchvision(parts[:-1], our_key)
  else:
    raise ValueError(f"unknown convention {convention!r}; known: {', '.join(CONVENTIONS)}")
  return f"{module}.{leaf}"


def name_map(keys, convention: str) -> dict[str, str]:
  """{our flat key: torch name} for the given flat keys (bijective; raises on collisions)."""
  out = {k: torch_name(k, convention) for k in keys}
  if len(set(out.values())) != len(out):
    raise ValueError("the naming convention maps two params to one PyTorch name")
  return out


def _to_numpy(v: Any, name: str) -> np.ndarray:
  if hasattr(v, "detach"):  # a torch tensor
    v = v.detach().cpu()
    if str(v.dtype) == "torch.bfloat16":
      v = v.float()
    v = v.numpy()
  try:
    return np.asarray(v)
  except Exception as e:
    raise TypeError(f"state-dict entry {name!r} is not an array: {type(v).__name__}") from e


def _convert(arr: np.ndarray, is_kernel: bool, perm: tuple[int, ...], what: str) -> np.ndarray:
  """Floating arrays as float32; a conv kernel (5-D, else a ValueError starting with `what`) transposed by `perm`."""
  if np.issubdtype(arr.dtype, np.floating):
    arr = arr.astype(np.float32)
  if is_kernel:
    if arr.ndim != 5:
      raise ValueError(f"{what}, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr.transpose(perm))
  return arr


def _strip(name: str) -> str:
  for p in ("module.", "backbone."):
    if name.startswith(p):
      name = name[len(p):]
  return name


def torch_state_to_flat(state: Mapping[str, Any], arch: str, convention: str = "torchvision", *,
                        template: Optional[Mapping[str, Any]] = None, strict: bool = True,
                        ) -> tuple[dict[str, np.ndarray], Optional[dict[str, np.ndarray]]]:
  """Converts a PyTorch state dict to our flat backbone dict (+ classifier).

  Args:
    state: name -> array (numpy or torch tensors), NCTHW conv weights (O,I,kT,kH,kW), linear (out,in).
    arch: backbone name (`r3d_18`, `r2plus1d_18`, `r2plus1d_18_ctp`; `s3d` with convention "ctp").
    convention: "torchvision" or "ctp". `module.` / `backbone.` prefixes are stripped.
    template: flat {our key: array or ShapeDtypeStruct} of the target model (e.g. `export.backbone_template(arch,
      **kwargs)`); keys and shapes are checked against it. Default: the keys of the default-config `arch`, shapes
      unchecked.
    strict: unexpected names are errors (else ignored, e.g. a pretext head in a CtP pretraining checkpoint).

  Returns:
    (backbone_flat, fc_flat): float32 numpy arrays keyed by our flat paths, and {"kernel": [D,K], "bias": [K]} or
    None when the state has no classifier.

  Raises:
    ValueError naming the missing / unexpected PyTorch names and shape mismatches.
  """
  _check(arch, convention)
  check_shapes = template is not None
  if template is None:
    template = export.backbone_template(arch)
  names = name_map(template, convention)
  by_torch = {v: k for k, v in names.items()}

  backbone: dict[str, np.ndarray] = {}
  fc: dict[str, np.ndarray] = {}
  unexpected: list[str] = []
  mismatches: list[str] = []
  for raw_name, value in state.items():
    name = _strip(raw_name)
    if name.endswith("num_batches_tracked"):
      continue
    cls = next((a for a in _CLS_ALIASES if name in (f"{a}.weight", f"{a}.bias")), None)
    if cls is not None:
      arr = _to_numpy(value, raw_name).astype(np.float32)
      if name.endswith(".weight"):
        if arr.ndim != 2:
          raise ValueError(f"classifier weight {raw_name!r} must be 2-D (out, in), got shape {arr.shape}")
        fc["kernel"] = arr.T.copy()
      else:
        fc["bias"] = arr
      continue
    if name not in by_torch:
      unexpected.append(raw_name)
      continue
    key = by_torch[name]
    arr = _convert(_to_numpy(value, raw_name), key.endswith("kernel"), (2, 3, 4, 1, 0),
                   f"conv weight {raw_name!r} must be 5-D (O, I, kT, kH, kW)")
    if check_shapes and tuple(arr.shape) != tuple(template[key].shape):
      want = tuple(template[key].shape)
      if key.endswith("kernel"):
        want = (want[4], want[3], *want[:3])
        got = tuple(np.shape(value))
      else:
        got = tuple(arr.shape)
      mismatches.append(f"shape mismatch for {raw_name!r} (our {key!r}): got {got}, expected {want}")
    backbone[key] = arr
  if mismatches:
    raise ValueError(f"state dict does not fit {arch!r} ({len(mismatches)} tensors): " + "; ".join(mismatches[:10])
                     + (" ..." if len(mismatches) > 10 else ""))
  if unexpected and strict:
    raise ValueError(f"unexpected state-dict names for {arch!r} ({convention}): {unexpected[:10]}"
                     f"{' ...' if len(unexpected) > 10 else ''}")
  missing = [names[k] for k in template if k not in backbone]
  if missing:
    raise ValueError(f"missing state-dict names for {arch!r} ({convention}): {missing[:10]}"
                     f"{' ...' if len(missing) > 10 else ''}")
  if fc and set(fc) != {"kernel", "bias"}:
    raise ValueError(f"classifier incomplete: found only {sorted(fc)} of kernel (weight) and bias")
  if fc and fc["bias"].shape != (fc["kernel"].shape[1],):
    raise ValueError(f"classifier weight/bias shapes disagree: {fc['kernel'].shape[::-1]} vs {fc['bias'].shape}")
  return backbone, (fc or None)


def flat_to_torch_state(backbone_flat: Mapping[str, Any], arch: str, convention: str = "torchvision",
                        fc_flat: Optional[Mapping[str, Any]] = None, *,
                        backbone_prefix: Optional[str] = None) -> dict[str, np.ndarray]:
  """Converts our flat backbone dict (+ classifier) to a PyTorch state dict of numpy arrays.

  Args:
    backbone_flat: {our flat key: array} (params and batch stats).
    arch, convention: as in `torch_state_to_flat`.
    fc_flat: optional {"kernel": [D, K], "bias": [K]} -> `fc.*` (torchvision) or `cls_head.fc_cls.*` (ctp).
    backbone_prefix: prefix of the backbone names; default "" (torchvision) or "backbone." (ctp).

  Returns:
    Ordered dict name -> numpy array (float32; `num_batches_tracked` int64 0 after each BN's running_var).
  """
  _check(arch, convention)
  prefix = _DEFAULT_PREFIX[convention] if backbone_prefix is None else backbone_prefix
  names = name_map(backbone_flat, convention)
  out: dict[str, np.ndarray] = {}
  for key, value in backbone_flat.items():
    arr = _convert(np.asarray(value), key.endswith("kernel"), (4, 3, 0, 1, 2),
                   f"conv kernel {key!r} must be 5-D (kT, kH, kW, I, O)")
    name = prefix + names[key]
    out[name] = arr
    if key.endswith("/var"):
      out[name[: -len("running_var")] + "num_batches_tracked"] = np.array(0, dtype=np.int64)
  if fc_flat is not None:
    fc = export._normalise_fc(fc_flat, "fc_flat")  # pylint: disable=protected-access
    out[f"{_CLS_NAMES[convention]}.weight"] = np.ascontiguousarray(fc["kernel"].T)
    out[f"{_CLS_NAMES[convention]}.bias"] = fc["bias"]
  return out


def load_state_dict_file(path: str) -> dict[str, np.ndarray]:
  """Reads a PyTorch-named state dict from `.pth`/`.pt` (torch, weights_only), `.npz` (no pickle) or
  `.safetensors`; a `{"state_dict": ...}` or `{"model": ...}` wrapper in a .pth is unwrapped."""
  import os

  if not os.path.isfile(path):
    raise FileNotFoundError(f"state-dict file {path!r} does not exist")
  lower = path.lower()
  if lower.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
    except ValueError as e:
      raise ValueError(f"{path!r}: cannot read as a plain-array .npz ({e})") from None
  if lower.endswith(".safetensors"):
    from safetensors.numpy import load_file

    try:
      return dict(load_file(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
      raise ValueError(f"{path!r}: cannot read as .safetensors ({type(e).__name__}: {e})") from None
  if lower.endswith((".pth", ".pt", ".bin")):
    try:
      import torch
    except ImportError:
      from fedvssl_jax.errors import MissingDependencyError

      # A MissingDependencyError, so the command line prints this line (naming the file), not the generic one.
      raise MissingDependencyError(f"reading {path!r} needs PyTorch (pip install torch==2.14.1); or convert it to .npz "
                                   "or .safetensors") from None
    try:
      obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for a damaged / non-weights file
      raise ValueError(f"{path!r}: cannot read as a PyTorch state dict ({type(e).__name__}: {e})") from None
    for wrapper in ("state_dict", "model"):
      if isinstance(obj, Mapping) and wrapper in obj and isinstance(obj[wrapper], Mapping):
        obj = obj[wrapper]
    if not isinstance(obj, Mapping):
      raise ValueError(f"{path!r} does not hold a state dict (got {type(obj).__name__})")
    return {k: _to_numpy(v, k) for k, v in obj.items() if hasattr(v, "shape")}
  raise ValueError(f"{path!r}: unsupported extension; use .pth, .npz or .safetensors")


def save_state_dict_file(state: Mapping[str, np.ndarray], path: str) -> None:
  """Writes a state dict to `.safetensors` or `.npz` (or `.pth` when torch is installed)."""
  lower = path.lower()
  arrays = {k: np.asarray(v, order="C") for k, v in state.items()}  # (ascontiguousarray would make 0-d 1-d)
  if lower.endswith(".safetensors"):
    from safetensors.numpy import save_file

    save_file(arrays, path)
  elif lower.endswith(".npz"):
    np.savez(path, **arrays)
  elif lower.endswith((".pth", ".pt")):
    from fedvssl_jax.errors import require

    torch = require("torch", f"writing {path!r} (.pth; .safetensors and .npz need no PyTorch)")
    torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
  else:
    raise ValueError(f"{path!r}: unsupported extension; use .safetensors, .npz or .pth")
