"""docs/federated.md section 3a, run as written: a SuperLink and two SuperNodes (with their warm ClientApp workers)
over TLS on 127.0.0.1, then `flwr run . lab --stream`, 2 rounds of the toy task.

The shell blocks marked `<!-- deploy-test: setup | start | run -->` in the doc are executed verbatim, with a private
`LAB` directory and free `PORT`s from the environment; the only edits are to the run block's `--run-config` string
(2 rounds, the toy config, time limits), whose other keys stay the doc's. Every process started here is in one
session, terminated (then killed) in `finally`.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import fedvssl_jax
from fedvssl_jax.federated import lab as lab_lib
from fedvssl_jax.federated import server_state, toy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(fedvssl_jax.__file__)))
DEADLINE_S = 300.0

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in ("flower-superlink", "flower-supernode", "flwr", "openssl")),
    reason="Flower CLI or openssl not installed")


def test_documented_tls_deployment_two_rounds(tmp_path):
  blocks = lab_lib.doc_blocks()
  lab = tmp_path / "lab"
  extra = (f'config-file=\\"{toy.__file__}\\" config-arg=\\"num_clients=2,num_rounds=2,min_train_nodes=2\\" '
           "overrides='{\\\"federated.round_timeout_s\\\": 120.0, \\\"federated.wait_timeout_s\\\": 180.0}'")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
  env.pop("XLA_FLAGS", None)
  proc = None
  try:
    proc = lab_lib.start_lab(lab_lib.lab_script(num_rounds=2, extra_run_config=extra), str(lab),
                             lab_lib.free_base_port(), env)
    try:
      proc.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
      pytest.fail(f"the documented deployment did not finish in {DEADLINE_S:.0f}s\n{lab_lib.log_tails(str(lab))}")
  finally:
    lab_lib.stop_lab(proc)
  summary_path = lab / "run" / "federated_summary.json"
  run_log = (lab / "flwr_run.log").read_text() if (lab / "flwr_run.log").exists() else ""
  assert summary_path.exists(), f"no federated_summary.json\n{lab_lib.log_tails(str(lab))}"
  assert "flwr run exit 0" in run_log, run_log[-3000:]
  with open(summary_path, encoding="utf-8") as f:
    summary = json.load(f)
  assert summary["rounds"] == 2 and summary["resumed_from"] == 0
  with open(lab / "run" / "federated_metrics.jsonl", encoding="utf-8") as f:
    rounds = [json.loads(line) for line in f]
  assert [r["round"] for r in rounds] == [1, 2]
  assert all(sorted(c["partition_id"] for c in r["clients"]) == [0, 1] for r in rounds)
  assert server_state.load_server_state(str(lab / "run")).round == 2
  # The clients' local models live in the node-config workdir of the doc, not the run's.
  assert (lab / "nodes" / "clients" / "client_0" / "state").is_dir()
  assert (lab / "nodes" / "clients" / "client_1" / "state").is_dir()
  # Streamed ServerApp output: per-round progress and results.
  assert "round 1/2: 2/2 clients replied" in run_log and "[federated] round 2/2 |" in run_log
  # Both rounds of each node ran in its one warm worker process.
  for k in (0, 1):
    worker_log = (lab / f"worker_{k}.log").read_text()
    assert re.search(r"completed in [\d.]+s \(pull [\d.]+s, app [\d.]+s \[config [\d.]+s.*state-save [\d.]+s.*\], push "
                     r"[\d.]+s\); 2 tasks so far",
                     worker_log), worker_log[-2000:]
  # TLS: the SuperLink served HTTPS with the lab certificate (no --insecure anywhere in the doc's commands).
  assert "--insecure" not in blocks["start"] + blocks["run"]
