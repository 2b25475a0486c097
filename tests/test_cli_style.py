"""One command-line style (issue 16): --snake_case flags in `fedvssl_jax.main` and every script, help that exits 0,
console entry points for all of them, test-only packages out of the runtime requirements, one line for a missing
optional package."""

import importlib.util
import os
import re
import sys
import tomllib

import numpy as np
import pytest
from conftest import REPO

SCRIPTS_DIR = os.path.join(REPO, "scripts")
SCRIPTS = sorted(f[:-3] for f in os.listdir(SCRIPTS_DIR) if f.endswith(".py"))


def _load(name: str):
  spec = importlib.util.spec_from_file_location(f"_cli_style_{name}", os.path.join(SCRIPTS_DIR, f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_argument_parser_snake_case_with_kebab_alias(capsys):
  from fedvssl_jax import cli

  p = cli.ArgumentParser(description="demo")
  p.add_argument("--data_root", default=None)
  group = p.add_argument_group("views")
  group.add_argument("--num_clips", type=int, default=1)
  assert p.parse_args(["--data_root=/a", "--num_clips", "3"]).num_clips == 3
  args = p.parse_args(["--data-root", "/b", "--num-clips=5"])  # the older spelling still parses
  assert args.data_root == "/b" and args.num_clips == 5
  with pytest.raises(SystemExit) as info:
    p.parse_args(["--help"])
  assert info.value.code == 0
  out = capsys.readouterr().out
  assert "--data_root" in out and "--num_clips" in out and "--data-root" not in out
  with pytest.raises(ValueError, match="snake_case"):
    p.add_argument("--kebab-flag")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_help_exits_0_with_snake_case_flags(name, capsys):
  mod = _load(name)
  main = mod.main if hasattr(mod, "main") else None
  assert main is not None, name
  with pytest.raises(SystemExit) as info:
    if name == "knn_eval":
      mod.parse_args(["--help"])
    else:
      main(["--help"])
  assert info.value.code == 0
  out = capsys.readouterr().out
  assert out.strip(), name
  flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", out.split("options:", 1)[-1])
  kebab = sorted({f for f in flags if "-" in f[2:] and not f.startswith("--no-")})
  assert not kebab, (name, kebab)


def test_console_entry_points_cover_main_and_every_script():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    entry_points = tomllib.load(f)["project"]["scripts"]
  from fedvssl_jax import cli

  assert entry_points["fedvssl-jax"] == "fedvssl_jax.cli:main"
  for name in SCRIPTS:
    command = "fedvssl-" + name.replace("_", "-")
    assert entry_points.get(command) == f"fedvssl_jax.cli:{name}", command
  for target in entry_points.values():
    module, attr = target.split(":")
    assert module == "fedvssl_jax.cli" and callable(getattr(cli, attr)), target


def test_console_entry_point_runs_its_script(monkeypatch, tmp_path, capsys):
  from fedvssl_jax import cli

  (tmp_path / "run").mkdir()
  monkeypatch.setattr(sys, "argv", ["fedvssl-summarize-runs", str(tmp_path / "run")])
  with pytest.raises(SystemExit) as info:
    cli.summarize_runs()
  assert info.value.code == 1  # summarize_runs: no results.json in that run
  capsys.readouterr()


def test_test_only_packages_out_of_runtime_requirements():
  def names(path):
    with open(os.path.join(REPO, path)) as f:
      return {re.split(r"[=<>\[ ]", ln.strip())[0].lower() for ln in f if ln.strip() and not ln.startswith(("#", "-"))}

  assert "pytest" not in names("requirements.txt") and "pytest" not in names("requirements-newest.txt")
  assert "pytest" in names("requirements-test.txt")
  with open(os.path.join(REPO, ".ci", "run")) as f:
    assert "-r requirements-test.txt" in f.read()


# --- optional dependencies: one line -------------------------------------------------------------------------------


def test_pth_export_without_torch_is_one_line(monkeypatch, tmp_path, capsys):
  from fedvssl_jax.errors import MissingDependencyError, run_script
  from fedvssl_jax.models import torch_names

  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as if it were not installed
  out = str(tmp_path / "w.pth")
  with pytest.raises(MissingDependencyError):
    torch_names.save_state_dict_file({"a": np.zeros(2, np.float32)}, out)
  assert run_script(lambda argv: torch_names.save_state_dict_file({"a": np.zeros(2, np.float32)}, out)) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: ") and "needs torch" in err and "pip install torch" in err
  torch_names.save_state_dict_file({"a": np.zeros(2, np.float32)}, str(tmp_path / "w.safetensors"))  # no torch


def test_run_cli_missing_optional_package_is_one_line(tmp_path, capsys, monkeypatch):
  from fedvssl_jax import runners

  def needs_tfds(config, workdir):
    try:
      raise ModuleNotFoundError("No module named 'tensorflow_datasets'", name="tensorflow_datasets")
    except ImportError as e:
      raise RuntimeError("building the source failed") from e

  monkeypatch.setattr(runners, "run", needs_tfds)
  from configs import ctp

  assert runners.run_cli(ctp.get_config("demo"), str(tmp_path), quiet_logs=False) == 2
  err = capsys.readouterr().err
  assert err.count("error:") == 1 and "tensorflow_datasets" in err and "pip install tensorflow-datasets" in err


def test_other_import_errors_stay_bugs(tmp_path, monkeypatch):
  from fedvssl_jax import runners

  def bug(config, workdir):
    raise ModuleNotFoundError("No module named 'fedvssl_jax.nope'", name="fedvssl_jax.nope")

  monkeypatch.setattr(runners, "run", bug)
  from configs import ctp

  with pytest.raises(ModuleNotFoundError):
    runners.run_cli(ctp.get_config("demo"), str(tmp_path), quiet_logs=False)
