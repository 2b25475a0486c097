"""Loading the backbone a config points at (`config.init.backbone_checkpoint` and the like), with one-line errors.

Only exported-backbone directories (fedvssl_jax/models/export.py) are loaded. A PyTorch state dict (.pth / .npz /
.safetensors) or a FedVSSL `round-*.npz` holds no architecture record (arch, widths, BN epsilon), so it is imported
once with scripts/import_torch_weights.py or scripts/import_fedvssl_checkpoint.py; the error for such a file says
which command to run. Every problem is a `ConfigError` naming the config key and the path, which the main command
prints as one line.
"""

from __future__ import annotations

import os
import re
from typing import Any

from flax import nnx

from fedvssl_jax.config_utils import ConfigError

_STATE_DICT_EXTENSIONS = (".pth", ".pt", ".bin", ".npz", ".safetensors")


def _one_line(text: str) -> str:
  return " ".join(str(text).split())


def _file_hint(path: str) -> str:
  """How to turn a checkpoint file into an exported directory (which import script, by extension and content); "" if
  the file is no known checkpoint format."""
  lower = path.lower()
  fedvssl = f"`python scripts/import_fedvssl_checkpoint.py --src {path} --out DIR` (a FedVSSL round-*.npz)"
  torch = (f"`python scripts/import_torch_weights.py --arch r3d_18 --src {path} --out DIR` (a torchvision / CtP "
           "state dict; set --arch / --convention)")
  if lower.endswith(".npz"):
    import numpy as np

    try:
      with np.load(path, allow_pickle=False) as z:  # lists the members; reads no array, unpickles nothing
        files = list(z.files)
    except Exception:  # noqa: BLE001 - not a zip, truncated, ...: give both commands
      files = []
    if files and all(re.fullmatch(r"arr_\d+", f) for f in files):
      return f"import it with {fedvssl}"
    if files:
      return f"import it with {torch}"
    return f"import it with {torch} or {fedvssl}"
  if lower.endswith(_STATE_DICT_EXTENSIONS):
    return f"import it with {torch}"
  return ""


def check_backbone_dir(path: str, key: str) -> str:
  """Raises a one-line `ConfigError` naming `key` unless `path` is an exported-backbone directory; returns it."""
  from fedvssl_jax.models import export

  if not path:
    raise ConfigError(f"{key} is not set: the exported backbone directory to load")
  if os.path.isfile(path):
    hint = _file_hint(path)
    raise ConfigError(f"{key}={path!r} is a file, not an exported backbone directory (model.json + state/)"
                      + (f": {hint}, then set {key}=DIR" if hint else ""))
  if not os.path.exists(path):
    raise ConfigError(f"{key}={path!r} does not exist (expected an exported backbone directory)")
  if not os.path.isfile(os.path.join(path, export.MODEL_JSON)):
    raise ConfigError(f"{key}={path!r} is not an exported backbone directory (no {export.MODEL_JSON}); "
                      "exports are written by the trainers (<workdir>/export/backbone) and by scripts/import_*.py")
  return path


def load_pretrained_backbone(path: str, key: str = "config.init.backbone_checkpoint",
                             **override_kwargs: Any) -> tuple[nnx.Module, dict[str, Any]]:
  """`export.load_backbone(path, **override_kwargs)` with problems as a one-line `ConfigError` naming `key`.

  Args:
    path: an exported-backbone directory.
    key: the config key `path` came from (for the error message).
    **override_kwargs: backbone kwargs to override, e.g. `output="pooled"`.

  Returns:
    (backbone module in train mode, meta: model.json with the effective `backbone_kwargs` and `directory`).
  """
  from fedvssl_jax.models import export

  check_backbone_dir(path, key)
  try:
    return export.load_backbone(path, **override_kwargs)
  except (FileNotFoundError, ValueError, KeyError, TypeError) as e:
    raise ConfigError(f"{key}={path!r}: {_one_line(e)}") from e
