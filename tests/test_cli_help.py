"""`--help` / `-h` / `--helpfull` and `--print_config` of `python -m fedvssl_jax.main` (issue 16): exit 0, no run."""

import json

import pytest
from test_cli_errors import assert_one_error_line, run_cli


@pytest.mark.parametrize("flag", ["--help", "-h", "--helpfull"])
def test_help_exits_0_and_explains(flag):
  proc = run_cli(flag)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  out = proc.stdout
  assert "--config=configs/<recipe>.py[:variant]" in out  # how to pick a recipe and variant
  assert "--workdir" in out and "results.json" in out and "checkpoints/" in out  # where outputs go
  assert "--print_config" in out
  # --helpfull: every flag absl knows (absl's own --flagfile among them); --help: this command's only
  assert ("--flagfile" in out) == (flag == "--helpfull")


def test_print_config_prints_resolved_config_without_running(tmp_path):
  proc = run_cli("--config=configs/ctp.py:demo", "--config.batch_size=3", "--print_config",
                 f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  config = json.loads(proc.stdout)
  assert config["batch_size"] == 3 and config["runner"] == "pretext"
  assert not (tmp_path / "w").exists()  # nothing ran


def test_print_config_needs_no_workdir_but_a_run_does():
  proc = run_cli("--config=configs/fedvssl.py:demo", "--print_config")
  assert proc.returncode == 0 and json.loads(proc.stdout)["runner"] == "federated", proc.stderr
  assert_one_error_line(run_cli("--config=configs/ctp.py:demo"), "--workdir")
  assert_one_error_line(run_cli("--workdir=/tmp/nowhere"), "--config", "configs/<recipe>.py")


def test_print_config_keeps_typo_errors():
  assert_one_error_line(run_cli("--config=configs/ctp.py:demo", "--config.no_such_key=1", "--print_config"),
                        "--config.no_such_key", "no such config key")
