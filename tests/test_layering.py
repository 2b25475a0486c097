"""Import direction: a module may import its own layer or a lower one, never a higher one.

Every `import` / `from ... import` statement counts, also those inside functions (a lazy import is still a
dependency). `importlib.import_module("...")` by name does not: the registries (`runners.RUNNERS`,
`federated.local_trainer.TRAINER_MODULES`) name the modules that plug into them, as a plugin list does.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("fedvssl_jax", "input_pipeline")

# Lowest first. A module's layer is the one of its longest listed prefix; modules in one layer may import each other.
# `fedvssl_jax` itself (its __init__) is listed exactly, so that a new top-level module must be given a layer.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("fedvssl_jax", "fedvssl_jax.errors", "fedvssl_jax.registry", "fedvssl_jax.config_utils")),
    ("input", ("input_pipeline",)),
    ("core", ("fedvssl_jax.core",)),
    ("blocks", ("fedvssl_jax.ops", "fedvssl_jax.models", "fedvssl_jax.losses", "fedvssl_jax.datasets",
                "fedvssl_jax.tfds_videos")),
    ("federation", ("fedvssl_jax.federated",)),  # Flower machinery; tasks register their local trainers into it
    ("evaluation", ("fedvssl_jax.evaluation",)),  # kNN, linear probe, fine-tuning; the pretext runners monitor kNN
    ("tasks", ("fedvssl_jax.pretext", "fedvssl_jax.goca")),  # each with its runner and federated local trainer
    # Entry points: the runner registry and the federated runner, preflight, main; the input benchmark times the
    # task clip builders and the TFDS source, so it is a tool above them although it lives in input_pipeline.
    ("apps", ("fedvssl_jax.runners", "fedvssl_jax.preflight", "fedvssl_jax.main", "fedvssl_jax.cli",
           "input_pipeline.benchmark")),
)


def layer_of(module: str, layers=LAYERS) -> int | None:
  """Index in `layers` of the longest prefix of `module` (a dotted name), or None if no prefix is listed."""
  best, best_len = None, -1
  for i, (_, prefixes) in enumerate(layers):
    for p in prefixes:
      if (module == p or (module.startswith(p + ".") and p != "fedvssl_jax")) and len(p) > best_len:
        best, best_len = i, len(p)
  return best


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = list(path.relative_to(root).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
  """(line, dotted module) for every import statement in `source`; `from a import b` gives `a.b` (b may be a module).

  Relative imports are resolved against `module`.
  """
  out = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      out += [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
      out += [(node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names]
  return out


def violations(root: pathlib.Path, packages=PACKAGES, layers=LAYERS) -> tuple[list[str], list[str]]:
  """(upward imports as 'file:line: a (layer) imports b (layer)', modules without a layer) under `root`."""
  upward, unplaced = [], []
  for package in packages:
    for path in sorted((root / package).rglob("*.py")):
      module = module_name(path, root)
      own = layer_of(module, layers)
      if own is None:
        unplaced.append(module)
        continue
      for line, target in imported_modules(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"):
        if target.split(".")[0] not in packages:
          continue
        other = layer_of(target, layers)
        if other is not None and other > own:
          upward.append(f"{path.relative_to(root)}:{line}: {module} ({layers[own][0]}) imports {target} "
                        f"({layers[other][0]})")
  return upward, unplaced


def test_no_module_imports_a_higher_layer():
  upward, _ = violations(ROOT)
  assert not upward, "imports into a higher layer:\n" + "\n".join(upward)


def test_every_module_has_a_layer():
  _, unplaced = violations(ROOT)
  assert not unplaced, "modules outside LAYERS (add them to tests/test_layering.py): " + ", ".join(unplaced)


def test_core_imports_nothing_above_input():
  """The trainer core depends on the base and input layers only (no model, task or Flower import)."""
  core = layer_of("fedvssl_jax.core.loop")
  for path in sorted((ROOT / "fedvssl_jax" / "core").glob("*.py")):
    module = module_name(path, ROOT)
    for line, target in imported_modules(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"):
      if target.split(".")[0] in PACKAGES:
        assert layer_of(target) <= core, f"{path.name}:{line} imports {target}"


def _write(root: pathlib.Path, files: dict[str, str]) -> None:
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("statement", [
    "from pkg.high import runner",  # module-level
    "def f():\n  import pkg.high.runner\n",  # lazy, inside a function
    "from ..high import runner",  # relative
])
def test_checker_catches_an_upward_import(tmp_path, statement):
  layers = (("low", ("pkg", "pkg.low")), ("high", ("pkg.high",)))
  _write(tmp_path, {"pkg/__init__.py": "", "pkg/low/__init__.py": "", "pkg/high/__init__.py": "",
                    "pkg/high/runner.py": "from pkg.low import util\n", "pkg/low/util.py": "",
                    "pkg/low/bad.py": statement + "\n"})
  upward, unplaced = violations(tmp_path, packages=("pkg",), layers=layers)
  assert unplaced == []
  assert len(upward) == 1 and upward[0].startswith("pkg/low/bad.py:") and "(low) imports pkg.high" in upward[0]


def test_checker_names_modules_without_a_layer(tmp_path):
  _write(tmp_path, {"pkg/__init__.py": "", "pkg/stray.py": "import os\n"})
  assert violations(tmp_path, packages=("pkg",), layers=(("low", ("pkg.low",)),))[1] == ["pkg", "pkg.stray"]
