"""The command-line conventions shared by `fedvssl_jax.main` and `scripts/*.py`, and the console entry points.

One flag style everywhere: `--snake_case` names, `--name=value` or `--name value`, `-h` / `--help` that says what the
command does. `fedvssl_jax.main` uses absl flags (its `--config` is an ml_collections config flag); the scripts use
`ArgumentParser` below (argparse, which also takes each flag's `--kebab-case` spelling so that older commands keep
working; help and docs show the snake_case name only).

Console entry points (pyproject.toml `[project.scripts]`): `fedvssl-jax` runs `fedvssl_jax.main`, and
`fedvssl-<script>` (e.g. `fedvssl-knn-eval`) runs `scripts/<script>.py` of the source checkout this package is
installed from (`pip install -e .`, as requirements.txt does; the scripts are not part of a wheel).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from typing import Any


def _kebab(option: str) -> str | None:
  """`--data_root` -> `--data-root` (None when there is no underscore)."""
  if option.startswith("--") and "_" in option[2:]:
    return "--" + option[2:].replace("_", "-")
  return None


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """RawDescriptionHelpFormatter: the docstring's examples keep their line breaks."""


class ArgumentParser(argparse.ArgumentParser):
  """`argparse.ArgumentParser` with the project's flag style.

  Declare flags as `--snake_case` (like absl's in `fedvssl_jax.main`); each also parses as `--kebab-case`. The help
  shows the module docstring (`description=__doc__`) with its line breaks kept.
  """

  def __init__(self, *args: Any, **kwargs: Any):
    kwargs.setdefault("formatter_class", _HelpFormatter)
    super().__init__(*args, **kwargs)

  def add_argument(self, *names: str, **kwargs: Any):
    for name in names:
      if name.startswith("--") and "-" in name[2:]:
        raise ValueError(f"{name}: flags are --snake_case (fedvssl_jax/cli.py)")
    return super().add_argument(*names, **kwargs)

  def _add_kebab_aliases(self) -> None:
    """Every `--a_b` flag (argument groups included: they share the parser's table) also as `--a-b`, kept out of
    the help (the alias is not among the action's own option strings)."""
    table = self._option_string_actions
    for option, action in list(table.items()):
      alias = _kebab(option)
      if alias is not None and alias not in table:
        table[alias] = action

  def parse_known_args(self, args=None, namespace=None):
    self._add_kebab_aliases()
    return super().parse_known_args(args, namespace)


# --- console entry points ---------------------------------------------------------------------------------------


def main() -> None:
  """`fedvssl-jax`: `python -m fedvssl_jax.main`."""
  from fedvssl_jax import main as main_lib

  main_lib.run()


def _run_script(name: str) -> None:
  """Runs `scripts/<name>.py` of the source checkout as `__main__` (its exit status becomes the command's)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.path.join(root, "scripts", f"{name}.py")
  if not os.path.isfile(path):
    print(f"error: {path} not found: the fedvssl-* script commands need the source checkout installed with "
          "`pip install -e .`", file=sys.stderr)
    sys.exit(2)
  if root not in sys.path:
    sys.path.insert(0, root)
  runpy.run_path(path, run_name="__main__")


SCRIPTS = ("benchmark", "export_torch_weights", "extract_features", "extract_flow", "import_fedvssl_checkpoint",
           "import_torch_weights", "knn_eval", "make_prototypes", "make_synthetic_videos", "partition_clients",
           "prepare_dataset", "summarize_runs", "verify_dataset")


def _entry(name: str):
  def run() -> None:
    _run_script(name)

  run.__name__ = name
  run.__doc__ = f"`fedvssl-{name.replace('_', '-')}`: scripts/{name}.py."
  return run


for _name in SCRIPTS:
  globals()[_name] = _entry(_name)
