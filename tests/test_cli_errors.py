"""User mistakes at the command line end in one `error: ...` line and exit status 2, never a traceback (issue 15).

Each case runs `python -m fedvssl_jax.main` in a subprocess; all of them fail in the flag parser or the preflight
checks (`fedvssl_jax/preflight.py`), before any compile, Ray start or data read.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "fedvssl_jax.main", *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)


def assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
  """Exit 2, exactly one `error:` line on stderr, nothing that looks like a traceback; returns the line."""
  out = proc.stdout + proc.stderr
  assert proc.returncode == 2, out[-3000:]
  assert "Traceback" not in out, out[-3000:]
  lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
  assert len(lines) == 1, out[-3000:]
  assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr[-3000:]  # no buried line
  for needle in needles:
    assert needle in lines[0], lines[0]
  return lines[0]


CTP = "--config=configs/ctp.py:demo"
FED = "--config=configs/fedvssl.py:demo"


@pytest.fixture(scope="module")
def a_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("cli") / "a_file"
  path.write_text("not a folder")
  return str(path)


@pytest.mark.parametrize("args,needles", [
    (("--config=configs/nope.py:demo",), ("--config", "configs/nope.py")),
    ((CTP, "extra_positional"), ("unexpected arguments", "extra_positional")),
    ((CTP, "--config.task.strides=abc"), ("config.task.strides",)),
    ((CTP, "--config.optim.step_epochs=abc"), ("--config.optim.step_epochs", "int", "30,60")),
    ((CTP, "--config.model.arch=nope"), ("config.model.arch", "'nope'", "r3d_18")),
    ((CTP, "--config.data.source=nope"), ("config.data.source", "'nope'")),
    ((CTP, "--config.task.name=nope"), ("config.task.name", "'nope'")),
    ((CTP, "--config.optim.name=nope"), ("config.optim.name", "'nope'")),
    ((CTP, "--config.batch_size=0"), ("config.batch_size", "positive")),
    ((CTP, "--config.no_such_key=1"), ("--config.no_such_key", "no such config key")),
    (("--config=configs/ctp.py:nope",), ("nope",)),
    ((FED, "--config.federated.strategy=nope"), ("config.federated.strategy", "'nope'")),
    ((FED, "--config.federated.trainer=nope"), ("config.federated.trainer", "'nope'")),
    ((FED, "--config.federated.min_train_nodes=5"), ("config.federated.min_train_nodes=5", "num_clients")),
    ((FED, "--config.federated.partitions.dir=/nonexistent/partitions"),
     ("config.federated.partitions.dir", "/nonexistent/partitions")),
    (("--config=configs/goca.py:demo", "--config.model.arch=s3d", "--config.model.rgb_residual_frames=True"),
     ("config.model.rgb_residual_frames=True", "'s3d'")),
    (("--config=configs/supervised.py:demo", "--config.model.arch=s3d"),
     ("config.model.backbone_kwargs.residual_frames=True", "'s3d'")),
])
def test_config_mistakes_are_one_line(tmp_path, args, needles):
  assert_one_error_line(run_cli(*args, f"--workdir={tmp_path / 'w'}"), *needles)


def test_workdir_that_is_a_file(a_file):
  assert_one_error_line(run_cli(CTP, f"--workdir={a_file}"), a_file, "is a file")


def test_workdir_that_cannot_be_made():
  assert_one_error_line(run_cli(CTP, "--workdir=/proc/1/fedvssl_no_such_dir"), "/proc/1/fedvssl_no_such_dir",
                        "not writable")


def test_checkpoints_entry_that_is_a_file(tmp_path):
  (tmp_path / "checkpoints").write_text("oops")
  assert_one_error_line(run_cli(CTP, f"--workdir={tmp_path}"), str(tmp_path / "checkpoints"), "is a file")


def test_partitions_dir_missing_client_files(tmp_path):
  parts = tmp_path / "parts"
  parts.mkdir()
  (parts / "client_dist1.json").write_text("[]")
  proc = run_cli(FED, "--config.federated.num_clients=3", f"--config.federated.partitions.dir={parts}",
                 f"--workdir={tmp_path / 'w'}")
  line = assert_one_error_line(proc, str(parts), "client_dist2.json")
  assert "lacks 2 of the 3" in line


# --- in-process: the pieces behind the one-line errors ----------------------------------------------------------


def test_registry_error_is_a_user_error_and_a_key_error():
  from fedvssl_jax.errors import UserError
  from fedvssl_jax.models import BACKBONES

  with pytest.raises(UserError) as info:
    BACKBONES.get("nope")
  assert isinstance(info.value, KeyError)
  assert str(info.value).startswith("unknown backbone 'nope'")  # not KeyError's quoted repr


def test_run_cli_turns_disk_full_into_one_line(tmp_path, capsys, monkeypatch):
  import errno

  from fedvssl_jax import runners

  def full_disk(config, workdir):
    try:
      raise OSError(errno.ENOSPC, "No space left on device", os.path.join(workdir, "checkpoints", "5"))
    except OSError as e:
      raise RuntimeError("orbax: save failed") from e

  monkeypatch.setattr(runners, "run", full_disk)
  from configs import ctp

  code = runners.run_cli(ctp.get_config("demo"), str(tmp_path), quiet_logs=False)
  err = capsys.readouterr().err
  assert code == 2
  assert err.count("error:") == 1 and "no space left" in err and str(tmp_path / "checkpoints" / "5") in err


def test_run_cli_disk_full_reported_as_text_only(tmp_path, capsys, monkeypatch):
  from fedvssl_jax import runners

  def full_disk(config, workdir):
    raise ValueError("async save failed: [Errno 28] No space left on device")

  monkeypatch.setattr(runners, "run", full_disk)
  from configs import ctp

  assert runners.run_cli(ctp.get_config("demo"), str(tmp_path), quiet_logs=False) == 2
  err = capsys.readouterr().err
  assert err.count("error:") == 1 and "no space left" in err and str(tmp_path) in err


def test_run_cli_keeps_tracebacks_of_bugs(tmp_path, monkeypatch):
  from fedvssl_jax import runners

  def bug(config, workdir):
    raise ZeroDivisionError("a bug")

  monkeypatch.setattr(runners, "run", bug)
  from configs import ctp

  with pytest.raises(ZeroDivisionError):
    runners.run_cli(ctp.get_config("demo"), str(tmp_path), quiet_logs=False)


def test_checkpoint_file_in_place_of_folder_fails_before_training(tmp_path):
  from fedvssl_jax.core.checkpointing import CheckpointError, Checkpointer

  (tmp_path / "checkpoints").write_text("oops")
  with pytest.raises(CheckpointError, match="is a file"):
    Checkpointer(str(tmp_path), save_every=1)


def test_corrupt_checkpoint_names_the_previous_one(tmp_path):
  from fedvssl_jax.core.checkpointing import CheckpointError, Checkpointer

  state = {"w": np.arange(4, dtype=np.float32)}
  ckpt = Checkpointer(str(tmp_path), save_every=1)
  ckpt.save(1, state, force=True)
  ckpt.save(2, state, force=True)
  ckpt.close()
  # Corrupt every file of step 2's state item.
  for root, _, files in os.walk(tmp_path / "checkpoints" / "2" / "state"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\x00garbage")
  ckpt = Checkpointer(str(tmp_path), save_every=1)
  try:
    with pytest.raises(CheckpointError) as info:
      ckpt.restore({"w": np.zeros(4, np.float32)})
  finally:
    ckpt.close()
  message = str(info.value)
  assert str(tmp_path / "checkpoints" / "2") in message and "previous checkpoint (step 1)" in message
  assert "\n" not in message


def test_federated_round_without_usable_replies_is_one_line(tmp_path):
  """Every client of the toy task fails in round 1: one error line naming min_train_nodes, exit 2, and the failed
  clients are recorded by partition id (asked before the first round), not -1."""
  import json

  workdir = tmp_path / "toy"
  proc = run_cli("--config=fedvssl_jax/federated/toy.py:num_rounds=2", f"--workdir={workdir}",
                 "--config.toy.fail_partitions=(0,1,2)", timeout=600)
  out = proc.stdout + proc.stderr
  assert proc.returncode == 2, out[-3000:]
  lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
  assert len(lines) == 1 and "round 1: only 0 usable client replies" in lines[0], out[-3000:]
  assert "config.federated.min_train_nodes" in lines[0]
  assert lines[0] == proc.stderr.strip().splitlines()[-1]  # the last line, not buried
  rows = [json.loads(line) for line in (workdir / "federated_metrics.jsonl").read_text().splitlines()]
  assert sorted(c["partition_id"] for c in rows[-1]["failed"]) == [0, 1, 2]


# --- scripts ----------------------------------------------------------------------------------------------------


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  return subprocess.run([sys.executable, os.path.join("scripts", name), *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
  from safetensors.numpy import save_file

  out = tmp_path_factory.mktemp("weights")
  save_file({"not.a.backbone.name": np.zeros(3, np.float32)}, str(out / "wrong_names.safetensors"))
  (out / "garbage.safetensors").write_bytes(os.urandom(256))
  (out / "random.npz").write_bytes(os.urandom(256))
  (out / "weights.pth").write_bytes(os.urandom(256))
  return out


def test_import_torch_weights_mistakes(weight_files, tmp_path):
  out = f"--out={tmp_path / 'out'}"
  missing = str(weight_files / "missing.safetensors")
  assert_one_error_line(run_script("import_torch_weights.py", "--arch=r3d_18", f"--src={missing}", out), missing)
  garbage = str(weight_files / "garbage.safetensors")
  assert_one_error_line(run_script("import_torch_weights.py", "--arch=r3d_18", f"--src={garbage}", out), garbage)
  wrong = str(weight_files / "wrong_names.safetensors")
  assert_one_error_line(run_script("import_torch_weights.py", "--arch=r3d_18", f"--src={wrong}", out),
                        "not.a.backbone.name")
  assert_one_error_line(run_script("import_torch_weights.py", "--arch=nope", f"--src={wrong}", out),
                        "unknown backbone 'nope'")


def test_import_torch_weights_pth_without_torch(weight_files, tmp_path):
  try:
    import torch  # noqa: F401
  except ImportError:
    pth = str(weight_files / "weights.pth")
    assert_one_error_line(run_script("import_torch_weights.py", "--arch=r3d_18", f"--src={pth}",
                                     f"--out={tmp_path / 'out'}"), pth, "needs PyTorch")
  else:  # with torch: the damaged file is named instead
    pth = str(weight_files / "weights.pth")
    assert_one_error_line(run_script("import_torch_weights.py", "--arch=r3d_18", f"--src={pth}",
                                     f"--out={tmp_path / 'out'}"), pth)


def test_import_fedvssl_checkpoint_random_bytes_names_the_file(weight_files, tmp_path):
  src = str(weight_files / "random.npz")
  line = assert_one_error_line(run_script("import_fedvssl_checkpoint.py", f"--src={src}", f"--out={tmp_path / 'o'}"),
                               src, "not an .npz archive")
  assert "pickled" not in line


def test_extract_features_missing_clips(tmp_path):
  assert_one_error_line(run_script("extract_features.py", f"--checkpoint={tmp_path}", f"--clips={tmp_path}/no.npy",
                                   f"--out={tmp_path}/f.npy"), "no.npy", "does not exist")
