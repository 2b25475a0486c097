"""The exported-backbone directory, and flat <-> nested param dict helpers.

Directory layout (docs/design.md, "Exported backbone"):

  DIR/model.json   {"arch": name, "backbone_kwargs": {...}, "fc": {"num_classes": K} | null, "format_version": 1}
  DIR/state/       Orbax `StandardCheckpointer` item {"backbone": nested pure dict, "fc": {"kernel", "bias"}?}

The backbone pure dict is `nnx.to_pure_dict(nnx.state(backbone))` (params and BatchNorm statistics) with every key a
string (list indices "0", "1", ...); arrays are numpy. The fc dict is the classifier `nnx.Linear`'s pure dict:
`kernel` [D, K], `bias` [K]. `backbone_kwargs` are JSON values (dtypes by name, tuples as lists).

Flat dicts (`flatten_state`) are keyed by '/'-joined pytree paths, e.g. "layer1/0/conv1/conv/kernel"; they are the
format in which parameters leave the process (Flower, safetensors).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

FORMAT_VERSION = 1
MODEL_JSON = "model.json"
STATE_DIR = "state"


# ----------------------------------------------------------------------------------------------- flat <-> nested


def flatten_state(tree: Any, sep: str = "/") -> dict[str, Any]:
  """Flattens a nested param dict to `{"a/b/c": leaf}`.

  Args:
    tree: a pure nested dict (`nnx.to_pure_dict(...)`), an `nnx.State`, or an `nnx.Module` (its full state).
      Keys may be str or int (list indices); they are joined with `sep` as strings.
    sep: key separator.

  Returns:
    Flat dict; array leaves become numpy arrays (`jax.ShapeDtypeStruct` leaves and typed PRNG key arrays are kept
    as they are).
  """
  if isinstance(tree, nnx.Module):
    tree = nnx.state(tree)
  if isinstance(tree, nnx.State):
    tree = nnx.to_pure_dict(tree)
  out: dict[str, Any] = {}

  def rec(node, prefix):
    if isinstance(node, Mapping):
      for k, v in node.items():
        key = str(k)
        if sep in key:
          raise ValueError(f"param key {key!r} under {prefix!r} contains the separator {sep!r}")
        rec(v, f"{prefix}{sep}{key}" if prefix else key)
    elif isinstance(node, jax.ShapeDtypeStruct):
      out[prefix] = node
    elif isinstance(node, jax.Array) and jax.dtypes.issubdtype(node.dtype, jax.dtypes.prng_key):
      out[prefix] = node  # typed PRNG keys (e.g. dropout RNG state) have no numpy form
    else:
      out[prefix] = np.asarray(node)

  rec(tree, "")
  return out


def unflatten_state(flat: Mapping[str, Any], sep: str = "/") -> dict:
  """Inverse of `flatten_state`: `{"layer1/0/bn1/scale": x}` -> `{"layer1": {0: {"bn1": {"scale": x}}}}`.

  All-digit path components become ints (the keys `nnx.List` uses), so the result can be passed to
  `nnx.replace_by_pure_dict`.
  """
  out: dict = {}
  for path, value in flat.items():
    parts = [int(p) if p.isdigit() else p for p in path.split(sep)]
    node = out
    for p in parts[:-1]:
      node = node.setdefault(p, {})
      if not isinstance(node, dict):
        raise ValueError(f"flat key {path!r} conflicts with a leaf at {p!r}")
    if parts[-1] in node:
      raise ValueError(f"duplicate flat key {path!r}")
    node[parts[-1]] = value
  return out


def _stringify_keys(tree: Any) -> Any:
  if isinstance(tree, Mapping):
    return {str(k): _stringify_keys(v) for k, v in tree.items()}
  return tree


def _is_flat(state: Mapping) -> bool:
  return all(not isinstance(v, Mapping) for v in state.values())


def as_flat(state: Any) -> dict[str, Any]:
  """A flat dict from a flat dict, a nested pure dict, an `nnx.State` or an `nnx.Module`."""
  if isinstance(state, Mapping) and not isinstance(state, nnx.State) and _is_flat(state):
    return {str(k): (v if isinstance(v, jax.ShapeDtypeStruct) else np.asarray(v)) for k, v in state.items()}
  return flatten_state(state)


# ------------------------------------------------------------------------------------------------------ kwargs


def jsonable_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
  """Backbone kwargs as JSON values: dtypes -> names ("bfloat16"), tuples -> lists, numpy scalars -> Python."""

  def conv(key, v):
    if v is None or isinstance(v, (bool, int, float, str)):
      return v
    if isinstance(v, (np.generic,)):
      return v.item()
    if isinstance(v, (list, tuple)):
      return [conv(key, x) for x in v]
    try:
      return jnp.dtype(v).name
    except TypeError:
      raise TypeError(f"backbone kwarg {key!r}={v!r} is not JSON-serialisable") from None

  return {k: conv(k, v) for k, v in kwargs.items()}


# --------------------------------------------------------------------------------------------------- templates


def backbone_template(arch: str, **kwargs: Any) -> dict[str, jax.ShapeDtypeStruct]:
  """Flat `{path: ShapeDtypeStruct}` of the backbone's state (params + batch stats), built abstractly."""
  from fedvssl_jax.models import abstract_backbone  # local: models/__init__ imports this module's users.

  return flatten_state(nnx.to_pure_dict(nnx.state(abstract_backbone(arch, **kwargs))))


def check_against_template(flat: Mapping[str, Any], template: Mapping[str, Any], what: str) -> None:
  """Raises ValueError naming missing / unexpected keys and shape mismatches of `flat` vs `template`."""
  missing = sorted(set(template) - set(flat))
  unexpected = sorted(set(flat) - set(template))
  problems = []
  if missing:
    problems.append(f"missing keys ({len(missing)}): {missing[:10]}{' ...' if len(missing) > 10 else ''}")
  if unexpected:
    problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
  for k in sorted(set(flat) & set(template)):
    if tuple(np.shape(flat[k])) != tuple(template[k].shape):
      problems.append(f"shape mismatch for {k!r}: got {tuple(np.shape(flat[k]))}, expected {tuple(template[k].shape)}")
  if problems:
    raise ValueError(f"{what}: " + "; ".join(problems[:12]))


# ------------------------------------------------------------------------------------------------- save / load


def save_backbone(directory: str | os.PathLike, arch: str, backbone_kwargs: Mapping[str, Any],
                  backbone_state: Any, fc_state: Optional[Any] = None) -> Path:
  """Writes an exported-backbone directory (overwrites `model.json` and `state/` if present).

  Args:
    directory: output directory (created).
    arch: registered backbone name.
    backbone_kwargs: kwargs of `build_backbone` (JSON-serialisable after `jsonable_kwargs`).
    backbone_state: the backbone's state (params + batch stats): flat dict, nested pure dict, `nnx.State` or module.
      Checked against the model that `arch` + `backbone_kwargs` builds (keys and shapes).
    fc_state: optional classifier {"kernel": [D, K], "bias": [K]} (flat or nested, e.g. `{"fc": {...}}` of a
      `ClassifierHead` is also accepted).

  Returns:
    The directory path.
  """
  import orbax.checkpoint as ocp

  from fedvssl_jax.models import BACKBONES

  if arch not in BACKBONES:
    raise KeyError(f"unknown backbone {arch!r}; known: {', '.join(BACKBONES.names())}")
  kwargs = jsonable_kwargs(dict(backbone_kwargs))
  flat = {k: np.asarray(v, dtype=np.float32) if np.issubdtype(np.asarray(v).dtype, np.floating) else np.asarray(v)
          for k, v in as_flat(backbone_state).items()}
  check_against_template(flat, backbone_template(arch, **kwargs), f"backbone state for {arch!r} {kwargs}")
  tree = {"backbone": _stringify_keys(unflatten_state(flat))}
  fc_meta = None
  if fc_state is not None:
    fc = _normalise_fc(fc_state, "fc_state")
    tree["fc"] = fc
    fc_meta = {"num_classes": int(fc["kernel"].shape[1]), "in_features": int(fc["kernel"].shape[0])}
  directory = Path(directory).absolute()
  directory.mkdir(parents=True, exist_ok=True)
  # Multi-process jobs: every process calls this with the same weights (Orbax's save is collective, the primary
  # process writes); model.json is written once, and the barrier lets every process load the export afterwards.
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(directory / STATE_DIR, tree, force=True)
  ckptr.wait_until_finished()
  ckptr.close()
  from fedvssl_jax.core import distributed

  meta = {"format_version": FORMAT_VERSION, "arch": arch, "backbone_kwargs": kwargs, "fc": fc_meta}
  if distributed.is_primary():
    (directory / MODEL_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
  distributed.sync(f"save_backbone {directory}")
  return directory


def _normalise_fc(fc_state: Any, what: str) -> dict[str, np.ndarray]:
  flat = as_flat(fc_state)
  if set(flat) == {"fc/kernel", "fc/bias"}:
    flat = {"kernel": flat["fc/kernel"], "bias": flat["fc/bias"]}
  if set(flat) != {"kernel", "bias"}:
    raise ValueError(f"{what}: expected keys 'kernel' and 'bias', got {sorted(flat)}")
  kernel = np.asarray(flat["kernel"], np.float32)
  bias = np.asarray(flat["bias"], np.float32)
  if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
    raise ValueError(f"{what}: kernel must be [D, K] and bias [K], got {kernel.shape} and {bias.shape}")
  return {"kernel": kernel, "bias": bias}


def read_meta(directory: str | os.PathLike) -> dict[str, Any]:
  """Reads and validates DIR/model.json; clear errors naming the path."""
  directory = Path(directory)
  path = directory / MODEL_JSON
  if not directory.is_dir():
    raise FileNotFoundError(f"exported backbone directory {str(directory)!r} does not exist")
  if not path.is_file():
    raise FileNotFoundError(f"{str(path)!r} not found: {str(directory)!r} is not an exported backbone directory")
  try:
    meta = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from None
  if not isinstance(meta, dict) or not isinstance(meta.get("arch"), str) or not isinstance(
      meta.get("backbone_kwargs", {}), dict):
    raise ValueError(f"{str(path)!r} must hold an object with 'arch' (str) and 'backbone_kwargs' (object)")
  meta.setdefault("backbone_kwargs", {})
  meta.setdefault("fc", None)
  return meta


def load_state(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray],
                                                      Optional[dict[str, np.ndarray]]]:
  """Reads an exported backbone without building it: (meta, backbone flat dict, fc dict or None)."""
  import orbax.checkpoint as ocp

  meta = read_meta(directory)
  state_dir = Path(directory).absolute() / STATE_DIR
  if not state_dir.is_dir():
    raise FileNotFoundError(f"{str(state_dir)!r} not found: the exported backbone has no Orbax state")
  ckptr = ocp.StandardCheckpointer()
  try:
    tree = ckptr.restore(state_dir)
  except Exception as e:  # Orbax raises various types for corrupt checkpoints.
    raise ValueError(f"cannot restore the Orbax state in {str(state_dir)!r}: {type(e).__name__}: {e}") from e
  finally:
    ckptr.close()
  if not isinstance(tree, Mapping) or "backbone" not in tree:
    raise ValueError(f"{str(state_dir)!r} does not hold a 'backbone' entry")
  backbone = {k: np.asarray(v) for k, v in flatten_state(tree["backbone"]).items()}
  fc = _normalise_fc(tree["fc"], f"{str(state_dir)!r} fc") if tree.get("fc") is not None else None
  return meta, backbone, fc


def load_backbone(directory: str | os.PathLike, *, rngs: Optional[nnx.Rngs] = None,
                  **override_kwargs: Any) -> tuple[nnx.Module, dict[str, Any]]:
  """Builds the backbone recorded in DIR/model.json and fills in its weights.

  Args:
    directory: an exported-backbone directory.
    rngs: unused by the backbones (no random state); accepted for a uniform signature.
    **override_kwargs: replace entries of the saved `backbone_kwargs` (e.g. `output="feature_map"`,
      `dtype=jnp.bfloat16`); overrides that change parameter shapes raise a mismatch error.

  Returns:
    (module, meta): the module in train mode (call `.eval()` for inference) and the model.json dict with
    `backbone_kwargs` replaced by the effective kwargs and `directory` added.
  """
  del rngs
  meta, flat, _ = load_state(directory)
  kwargs = {**meta["backbone_kwargs"], **override_kwargs}
  model = backbone_from_flat(meta["arch"], flat, what=f"exported backbone {str(directory)!r}", **kwargs)
  meta = dict(meta, backbone_kwargs=kwargs, directory=str(Path(directory).absolute()))
  return model, meta


def backbone_from_flat(arch: str, flat: Mapping[str, Any], *, what: str = "backbone state",
                       **kwargs: Any) -> nnx.Module:
  """Builds `arch` with `kwargs` and the weights/statistics of `flat` (no random init; keys and shapes checked).

  Args:
    arch: registered backbone name.
    flat: {our flat key: array} with every param and batch stat of the model.
    what: label used in error messages.
    **kwargs: `build_backbone` kwargs.

  Returns:
    The module (train mode), arrays cast to the model's param / stat dtypes.
  """
  from fedvssl_jax.models import abstract_backbone

  abstract = abstract_backbone(arch, **kwargs)
  graphdef, abs_state = nnx.split(abstract)
  template = flatten_state(nnx.to_pure_dict(abs_state))
  flat = as_flat(flat)
  check_against_template(flat, template, f"{what} ({arch}, {jsonable_kwargs(kwargs)})")
  values = {k: jnp.asarray(v, dtype=template[k].dtype) for k, v in flat.items()}
  nnx.replace_by_pure_dict(abs_state, unflatten_state(values))
  return nnx.merge(graphdef, abs_state)


def load_fc(directory: str | os.PathLike) -> Optional[dict[str, np.ndarray]]:
  """The classifier {"kernel": [D, K], "bias": [K]} saved with the backbone, or None."""
  return load_state(directory)[2]


# ------------------------------------------------------------------------------------------ feature extraction


def extract_features(model: nnx.Module, clips: np.ndarray, *, batch_size: int = 8, layout: str = "nthwc",
                     progress: bool = False) -> np.ndarray:
  """Pooled eval-mode features of a stack of clips.

  Args:
    model: a backbone with pooled output (e.g. from `load_backbone`); it is switched to eval mode.
    clips: [N, T, H, W, C] ("nthwc") or [N, C, T, H, W] ("ncthw"), any real dtype (cast to float32; no rescaling).
    batch_size: clips per jitted call; the last batch is zero-padded so that only one program is compiled.
    layout: "nthwc" or "ncthw".
    progress: print a progress line per batch.

  Returns:
    float32 [N, model.feature_dim].
  """
  if layout not in ("nthwc", "ncthw"):
    raise ValueError(f"layout must be 'nthwc' or 'ncthw', got {layout!r}")
  if clips.ndim != 5:
    raise ValueError(f"clips must be 5-D ({layout.upper()}), got shape {clips.shape}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if getattr(model, "output", "pooled") != "pooled":
    raise ValueError("extract_features needs a backbone with output='pooled'")
  model.eval()
  graphdef, state = nnx.split(model)
  fwd = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
  n = clips.shape[0]
  out = []
  for start in range(0, n, batch_size):
    batch = np.asarray(clips[start:start + batch_size], dtype=np.float32)
    if layout == "ncthw":
      batch = batch.transpose(0, 2, 3, 4, 1)
    real = batch.shape[0]
    if real < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - real, *batch.shape[1:]), np.float32)])
    out.append(np.asarray(fwd(state, jnp.asarray(batch)), dtype=np.float32)[:real])
    if progress:
      print(f"features: {min(start + batch_size, n)}/{n} clips", flush=True)
  if not out:
    return np.zeros((0, model.feature_dim), np.float32)
  return np.concatenate(out)
