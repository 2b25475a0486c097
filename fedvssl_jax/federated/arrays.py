"""Models as flat dicts keyed by pytree path, and their conversion to Flower `ArrayRecord`s.

A flat dict maps `"/"`-joined pytree paths to float32 NumPy arrays, e.g.
`{"backbone/stem/conv/kernel": f32[3,7,7,3,64], "backbone/stem/bn/mean": f32[64], "head/fc/kernel": ...}`. It is
how parameters leave a process (docs/design.md): they are keyed by these paths, so the server and the clients agree
on names, not on positions. On the wire a model is one packed ArrayRecord (`flat_to_arrayrecord`: a float32 vector
and its JSON index of paths and shapes), because Flower moves every array of a message with its own requests. The
top-level key `backbone` is the shared backbone; everything else (`head`, ...) is task-specific and stays on the
client in FedVSSL mode.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

BACKBONE_PREFIX = "backbone/"
SEP = "/"


def _key_str(k: Any) -> str:
  """A path component as text: dict keys, NNX int indices, jax key entries (`.key`, `.idx`, `.name`)."""
  for attr in ("key", "idx", "name"):
    if hasattr(k, attr) and not isinstance(k, (str, int)):
      return str(getattr(k, attr))
  return str(k)


def to_float32(name: str, value: Any) -> np.ndarray:
  """`value` as a float32 NumPy array (copy only when needed); rejects non-numeric arrays naming `name`."""
  arr = np.asarray(value)
  if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
    raise ValueError(f"array {name!r} has non-numeric dtype {arr.dtype}")
  return arr.astype(np.float32, copy=False)


def flat_float32(flat: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Every entry of a flat dict as a C-contiguous float32 NumPy array (copied only where needed)."""
  return {k: np.ascontiguousarray(to_float32(k, v)) for k, v in flat.items()}


def in_key_order(flat: dict[str, np.ndarray], keys: list[str] | None) -> dict[str, np.ndarray]:
  """`flat` in the order of `keys` when they are exactly its keys (Orbax restores keys sorted), else unchanged."""
  if keys and set(keys) == set(flat):
    return {k: flat[k] for k in keys}
  return flat


def pytree_to_flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
  """`fedvssl_jax.models.export.flatten_state` with float32 values: `{"a/b/c": float32 array}`.

  Args:
    tree: nested mappings whose leaves are arrays (e.g. `nnx.to_pure_dict(nnx.state(model))`; NumPy, JAX, NNX
      `Variable`s or anything `np.asarray` accepts), or an `nnx.State` / `nnx.Module`. Keys may be str or int.
    prefix: prepended to every path (without a trailing separator).

  Returns:
    Flat dict in depth-first insertion order, float32 values.

  Raises:
    ValueError: a key containing "/" or a non-numeric leaf, naming the path.
  """
  from fedvssl_jax.models import export  # JAX / Flax only when a pytree is flattened (not in the server or toy)

  out: dict[str, np.ndarray] = {}
  for key, value in export.flatten_state(tree, sep=SEP).items():
    path = SEP.join(p for p in (prefix, key) if p)
    out[path] = to_float32(path, value)
  return out


def flat_to_pytree(flat: Mapping[str, Any], like: Mapping[str, Any] | None = None) -> dict[Any, Any]:
  """Inverse of `pytree_to_flat`.

  Args:
    flat: `{"a/b/c": array}`.
    like: optional nested dict giving the target structure: its key types (e.g. the int indices of NNX lists) and
      leaf shapes are used, and every one of its leaves must be present in `flat` with the same shape.

  Returns:
    Nested dicts of NumPy arrays (keys are str, or taken from `like`).

  Raises:
    ValueError: a path present in `like` but missing in `flat`, an extra path, or a shape mismatch (naming it);
      a path that is both a leaf and a prefix of another path.
  """
  if like is not None:
    shapes = tree_shapes(like)
    for path, shape in shapes.items():
      if path not in flat:
        raise ValueError(f"flat dict lacks path {path!r} of the target structure")
      if tuple(np.shape(flat[path])) != shape:
        raise ValueError(f"path {path!r}: shape {np.shape(flat[path])}, target has {shape}")
    extra = [p for p in flat if p not in shapes]
    if extra:
      raise ValueError(f"flat dict has paths not in the target structure: {extra[:5]}")

    def rebuild(node: Any, path: str) -> Any:
      if isinstance(node, Mapping):
        return {k: rebuild(v, f"{path}{SEP}{_key_str(k)}" if path else _key_str(k)) for k, v in node.items()}
      return np.asarray(flat[path])

    return rebuild(like, "")

  root: dict[Any, Any] = {}
  for path, value in flat.items():
    parts = path.split(SEP)
    node = root
    for i, part in enumerate(parts[:-1]):
      nxt = node.setdefault(part, {})
      if not isinstance(nxt, dict):
        raise ValueError(f"path {path!r}: {SEP.join(parts[:i + 1])!r} is both a leaf and a prefix")
      node = nxt
    if parts[-1] in node:
      raise ValueError(f"path {path!r} is both a leaf and a prefix of another path")
    node[parts[-1]] = np.asarray(value)
  return root


def tree_shapes(tree: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
  """`{path: shape}` of a nested dict's leaves, in `pytree_to_flat` order, without reading (or copying) them.

  Leaves may be arrays, NNX `Variable`s (their value's shape) or `jax.ShapeDtypeStruct`s.
  """
  out: dict[str, tuple[int, ...]] = {}

  def rec(node: Any, path: str) -> None:
    if isinstance(node, Mapping):
      for k, v in node.items():
        rec(v, f"{path}{SEP}{_key_str(k)}" if path else _key_str(k))
      return
    leaf = node.value if hasattr(node, "value") and not isinstance(node, np.ndarray) else node
    shape = getattr(leaf, "shape", None)
    out[path] = tuple(shape) if shape is not None else tuple(np.shape(leaf))

  rec(tree, "")
  return out


# A packed ArrayRecord holds the whole flat dict as two arrays: the float32 values of every entry concatenated in
# key order, and a JSON index `[[path, shape], ...]` as uint8 bytes. Flower 1.41 moves each array of a message as its
# own object(s) with its own HTTP requests, so ~120 arrays per model cost ~120x the per-object round trips.
PACKED_INDEX = "__packed__/index"
PACKED_DATA = "__packed__/data"


def pack_flat(flat: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
  """Flat dict -> (index u8[n] = UTF-8 JSON `[[path, [dims...]], ...]` in key order, data f32[sum of sizes])."""
  arrays = {k: to_float32(k, v) for k, v in flat.items()}  # not flat_float32: ascontiguousarray makes 0-d 1-d
  index = json.dumps([[k, list(v.shape)] for k, v in arrays.items()], separators=(",", ":"))
  data = np.concatenate([v.reshape(-1) for v in arrays.values()]) if arrays else np.zeros((0,), np.float32)
  return np.frombuffer(index.encode("utf-8"), np.uint8).copy(), data


def unpack_flat(index: np.ndarray, data: np.ndarray) -> dict[str, np.ndarray]:
  """Inverse of `pack_flat`: `{path: float32 array}` in the packed order (views into one copy of `data`).

  Raises:
    ValueError: an index that is not the JSON list `pack_flat` writes, or sizes that do not add up to `data`'s.
  """
  try:
    entries = json.loads(np.asarray(index, np.uint8).tobytes().decode("utf-8"))
    entries = [(str(k), tuple(int(d) for d in shape)) for k, shape in entries]
  except (ValueError, TypeError) as e:
    raise ValueError(f"packed ArrayRecord: {PACKED_INDEX!r} is not a JSON list of [path, shape] ({e})") from e
  flat_data = np.array(data, np.float32, copy=True).reshape(-1)  # one copy, writable, owned by the result
  sizes = [int(np.prod(shape, dtype=np.int64)) for _, shape in entries]
  if sum(sizes) != flat_data.size:
    raise ValueError(f"packed ArrayRecord: index covers {sum(sizes)} values, {PACKED_DATA!r} has {flat_data.size}")
  out: dict[str, np.ndarray] = {}
  offset = 0
  for (key, shape), size in zip(entries, sizes):
    if key in out:
      raise ValueError(f"packed ArrayRecord: path {key!r} appears twice in the index")
    out[key] = flat_data[offset:offset + size].reshape(shape)
    offset += size
  return out


def flat_to_arrayrecord(flat: Mapping[str, Any], packed: bool = True):
  """Flat dict -> `flwr.app.ArrayRecord`: packed (`pack_flat`, two arrays; the message format of this app), or with
  one float32 array per path (`packed=False`, what a generic Flower strategy expects)."""
  from flwr.app import Array, ArrayRecord

  if packed:
    index, data = pack_flat(flat)
    return ArrayRecord({PACKED_INDEX: Array(index), PACKED_DATA: Array(data)})
  return ArrayRecord({k: Array(v) for k, v in flat_float32(flat).items()})


def arrayrecord_to_flat(record) -> dict[str, np.ndarray]:
  """`flwr.app.ArrayRecord` (packed or one array per path) -> flat dict of float32 NumPy arrays in insertion order."""
  if PACKED_DATA in record or PACKED_INDEX in record:
    if PACKED_DATA not in record or PACKED_INDEX not in record:
      raise ValueError(f"packed ArrayRecord needs both {PACKED_INDEX!r} and {PACKED_DATA!r}, has {list(record)[:4]}")
    return unpack_flat(record[PACKED_INDEX].numpy(), record[PACKED_DATA].numpy())
  return {k: to_float32(k, v.numpy()) for k, v in record.items()}


def split_backbone(flat: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """Splits a flat dict into (`backbone/...` entries, everything else)."""
  backbone = {k: v for k, v in flat.items() if k.startswith(BACKBONE_PREFIX)}
  rest = {k: v for k, v in flat.items() if not k.startswith(BACKBONE_PREFIX)}
  return backbone, rest


def merge_backbone(local_flat: Mapping[str, np.ndarray], global_flat: Mapping[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
  """FedVSSL's client update: the local model with only its `backbone/` entries replaced by the global ones.

  Non-backbone entries of `local_flat` (head, local statistics, ...) are returned unchanged (the same objects);
  non-backbone entries of `global_flat` are ignored. Backbone entries of the local model that the global lacks are
  kept (and reported by neither side: a global model always holds the full backbone).

  Raises:
    ValueError: the global has a backbone key the local model lacks, or a backbone shape differs (naming the key).
  """
  out = dict(local_flat)
  for k, v in global_flat.items():
    if not k.startswith(BACKBONE_PREFIX):
      continue
    if k not in local_flat:
      raise ValueError(f"global model has backbone key {k!r} that the local model lacks")
    if tuple(np.shape(v)) != tuple(np.shape(local_flat[k])):
      raise ValueError(f"backbone key {k!r}: global shape {np.shape(v)}, local shape {np.shape(local_flat[k])}")
    out[k] = v
  return out


def check_finite(flat: Mapping[str, np.ndarray]) -> str | None:
  """The first key whose array has a NaN or Inf, or None when all are finite."""
  for k, v in flat.items():
    if not np.all(np.isfinite(v)):
      return k
  return None
