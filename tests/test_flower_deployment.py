"""Loopback Flower deployment: one `flower-superlink`, two `flower-supernode`s and `flwr run . <federation> --stream`.

Private FLWR_HOME, insecure, 127.0.0.1 only, the toy task in FedVSSL mode, 2 rounds under a deadline; every process
started here is terminated (then killed) in `finally`.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

import fedvssl_jax
from fedvssl_jax.federated import server_state, toy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(fedvssl_jax.__file__)))
DEADLINE_S = 240.0
FLOWER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,31}$")

pytestmark = pytest.mark.skipif(shutil.which("flower-superlink") is None or shutil.which("flwr") is None,
                                reason="Flower CLI not installed")


def _free_ports(n):
  socks, ports = [], []
  for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    ports.append(s.getsockname()[1])
  for s in socks:
    s.close()
  return ports


def _app_dir(tmp_path):
  """The repository itself, or, while its [project].name is not a valid Flower app name (letters, digits and
  hyphens), a copy of its sources with the name hyphenated (pip treats both spellings as the same project)."""
  import tomllib

  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    name = tomllib.load(f)["project"]["name"]
  if FLOWER_NAME.match(name):
    return REPO
  app = tmp_path / "app"
  app.mkdir()
  for d in ("fedvssl_jax", "input_pipeline", "configs"):
    if os.path.isdir(os.path.join(REPO, d)):
      shutil.copytree(os.path.join(REPO, d), app / d, ignore=shutil.ignore_patterns("__pycache__"))
  with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as f:
    text = f.read()
  (app / "pyproject.toml").write_text(re.sub(r'(?m)^name = "[^"]*"', f'name = "{name.replace("_", "-")}"', text, 1))
  return str(app)


def _wait_for_port(port, t0):
  while time.monotonic() - t0 < DEADLINE_S:
    with socket.socket() as s:
      if s.connect_ex(("127.0.0.1", port)) == 0:
        return
    time.sleep(0.5)
  pytest.fail(f"SuperLink port {port} did not open within {DEADLINE_S:.0f}s")


def _tails(logs):
  return "\n".join(f"--- {f.name}\n{f.read_text()[-2500:]}" for f in sorted(logs.iterdir()))


def _stop(procs):
  for p in procs:
    if p.poll() is None:
      try:
        os.killpg(p.pid, signal.SIGTERM)
      except ProcessLookupError:
        pass
  for p in procs:
    try:
      p.wait(timeout=15)
    except subprocess.TimeoutExpired:
      try:
        os.killpg(p.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      p.wait(timeout=15)


def test_loopback_deployment_two_rounds(tmp_path):
  home, workdir, logs = tmp_path / "flwr_home", tmp_path / "workdir", tmp_path / "logs"
  home.mkdir()
  logs.mkdir()
  link_port, node_ports = _free_ports(1)[0], _free_ports(2)
  (home / "config.toml").write_text(
      f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{link_port}"\n'
      "insecure = true\n")
  run_config = tmp_path / "run_config.toml"
  run_config.write_text(
      f'config-file = "{toy.__file__}"\n'
      'config-arg = "num_rounds=2,num_clients=2,min_train_nodes=2,strategy=fedvssl,alpha=0.9,beta=1"\n'
      f'workdir = "{workdir}"\n'
      "overrides = '{\"federated.round_timeout_s\": 120.0, \"federated.wait_timeout_s\": 120.0}'\n")
  env = dict(os.environ, FLWR_HOME=str(home), FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
             JAX_PLATFORMS="cpu", XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")
  env.pop("XLA_FLAGS", None)
  app = _app_dir(tmp_path)
  bindir = os.path.dirname(sys.executable)

  def start(name, args):
    log = open(logs / f"{name}.log", "w", encoding="utf-8")
    exe = shutil.which(args[0], path=bindir + os.pathsep + env.get("PATH", "")) or args[0]
    return subprocess.Popen([exe] + args[1:], env=env, cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)

  procs = []
  t0 = time.monotonic()
  try:
    procs.append(start("superlink", ["flower-superlink", "--insecure", "--database", ":flwr-in-memory:",
                                     "--host", "127.0.0.1", "--port", str(link_port)]))
    for i, port in enumerate(node_ports):
      procs.append(start(f"supernode{i}", [
          "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link_port}", "--host", "127.0.0.1",
          "--port", str(port), "--node-config", f"partition-id={i} num-partitions=2"]))
    _wait_for_port(link_port, t0)
    summary_path = workdir / "federated_summary.json"
    attempt = 0
    run = None
    while time.monotonic() - t0 < DEADLINE_S and not summary_path.exists():
      for p in procs[:3]:
        assert p.poll() is None, f"{p.args[0]} exited early:\n{_tails(logs)}"
      if run is not None and run.poll() is not None:
        log = (logs / f"flwr_run{attempt}.log").read_text()
        if summary_path.exists():
          break
        # Resubmit only when the SuperLink was not reachable yet; any other exit is a failure.
        assert "unavailable" in log and attempt < 5, f"flwr run exited ({run.returncode}):\n{_tails(logs)}"
        run = None
      if run is None:
        attempt += 1
        run = start(f"flwr_run{attempt}", ["flwr", "run", app, "loopback", "--stream", "--run-config",
                                           str(run_config)])
        procs.append(run)
      time.sleep(1.0)
    if not summary_path.exists():
      pytest.fail(f"no federated_summary.json after {DEADLINE_S:.0f}s\n{_tails(logs)}")
  finally:
    _stop(procs)
  with open(summary_path, encoding="utf-8") as f:
    summary = json.load(f)
  assert summary["rounds"] == 2 and summary["resumed_from"] == 0
  with open(workdir / "federated_metrics.jsonl", encoding="utf-8") as f:
    rounds = [json.loads(line) for line in f]
  assert [r["round"] for r in rounds] == [1, 2]
  assert all(sorted(c["partition_id"] for c in r["clients"]) == [0, 1] for r in rounds)
  assert server_state.load_server_state(str(workdir)).round == 2
  assert os.path.isdir(workdir / "clients" / "client_0" / "state") and os.path.isdir(workdir / "clients" / "client_1")
  assert "[federated] round 1/2" in (logs / f"flwr_run{attempt}.log").read_text()  # streamed ServerApp logs
