"""The one-machine deployment of docs/federated.md section 3a as a script, and the round overhead of a run.

The doc's shell blocks marked `<!-- deploy-test: setup | start | run -->` are the single source of the commands:
`tests/test_flower_deployment.py` runs them (toy task, 2 rounds) and `scripts/benchmark.py --mode=federated` runs
them on the demo to measure the time a round spends outside local training.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import time

BLOCK_NAMES = ("setup", "start", "run")
WORKER_MODULE = "fedvssl_jax.federated.clientapp_worker"


def repo_root() -> str:
  return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def doc_path() -> str:
  return os.path.join(repo_root(), "docs", "federated.md")


def doc_blocks(path: str | None = None) -> dict[str, str]:
  """{name: shell text} of the ```bash blocks right after `<!-- deploy-test: name -->` markers.

  Raises:
    ValueError: a block is missing (names the file).
  """
  path = path or doc_path()
  with open(path, encoding="utf-8") as f:
    text = f.read()
  blocks = dict(re.findall(r"<!-- deploy-test: (\w+) -->\n```bash\n(.*?)```", text, flags=re.S))
  missing = sorted(set(BLOCK_NAMES) - set(blocks))
  if missing:
    raise ValueError(f"{path}: no `<!-- deploy-test: name -->` bash block(s) {missing}")
  return blocks


def without_worker(start_block: str) -> str:
  """The start block as Flower's default: no `--isolation process`, no warm worker (a process per message)."""
  out = re.sub(r"\s--isolation process\b", "", start_block)
  out = re.sub(rf"\n[ \t]*python -m {re.escape(WORKER_MODULE)}\b.*?&[ \t]*(?=\n)", "", out, flags=re.S)
  if WORKER_MODULE in out or "--isolation process" in out:
    raise ValueError("could not take the worker out of the start block")
  return out


def run_command(run_block: str, num_rounds: int, extra_run_config: str = "") -> str:
  """The run block's `flwr run` line with `num-server-rounds=<num_rounds>` and `extra_run_config` (already escaped
  for a double-quoted shell string) added to its `--run-config "..."`."""
  lines = [l for l in run_block.splitlines() if l.strip().startswith("flwr run")]
  if len(lines) != 1:
    raise ValueError(f"one `flwr run` line expected in the run block:\n{run_block}")
  line, n = re.subn(r"num-server-rounds=\d+", f"num-server-rounds={int(num_rounds)}", lines[0])
  if n != 1 or '--run-config "' not in line:
    raise ValueError(f"the run block has no --run-config \"... num-server-rounds=N ...\": {line}")
  if extra_run_config:
    line = line.replace('--run-config "', f'--run-config "{extra_run_config} ', 1)
  return line


def lab_script(num_rounds: int, extra_run_config: str = "", warm: bool = True, path: str | None = None,
               wait_for: str = "") -> str:
  """A bash script: the doc's setup and start blocks, then its run (output to `$LAB/flwr_run.log`, exit status
  appended as "flwr run exit N"). Needs LAB and PORT in the environment and the repository root as cwd.

  `wait_for`: a file (shell words allowed, e.g. "$LAB/run/federated_summary.json") the script then waits for: in
  flwr 1.41 `flwr run --stream` can stop streaming (exit 0) while a long run goes on on the SuperLink.
  """
  blocks = doc_blocks(path)
  start = blocks["start"] if warm else without_worker(blocks["start"])
  lines = ["set -e", blocks["setup"], start, "set +e",
           run_command(blocks["run"], num_rounds, extra_run_config) + ' > "$LAB/flwr_run.log" 2>&1',
           'echo "flwr run exit $?" >> "$LAB/flwr_run.log"']
  if wait_for:
    lines.append(f'until [ -e "{wait_for}" ]; do sleep 2; done')
  return "\n".join(lines + [""])


def round_overhead(metrics_file: str, skip_rounds: int = 1) -> dict:
  """Time outside local training per round, from `federated_metrics.jsonl`.

  A round's overhead is `round_time_s - max_k train_time_s` (the clients train in parallel; everything else: sending
  the model, starting or waking the ClientApp, loading and storing the client's state, the replies, aggregation and
  the server's save). Rounds 1..skip_rounds are left out of the summary (round 1 also compiles).

  Returns:
    {"rounds": [{round, round_time_s, train_time_s, overhead_s, overhead_frac}], "median_overhead_s",
     "median_overhead_frac", "total_overhead_frac" (sum over the kept rounds), "kept_rounds"}.
  """
  rows = []
  with open(metrics_file, encoding="utf-8") as f:
    for line in f:
      r = json.loads(line)
      train = max((c["train_time_s"] for c in r["clients"]), default=float("nan"))
      over = r["round_time_s"] - train
      rows.append({"round": r["round"], "round_time_s": r["round_time_s"], "train_time_s": train,
                   "overhead_s": over, "overhead_frac": over / r["round_time_s"]})
  kept = [r for r in rows if r["round"] > skip_rounds]
  if not kept:
    raise ValueError(f"{metrics_file}: no rounds after round {skip_rounds}")
  return {"rounds": rows, "kept_rounds": [r["round"] for r in kept],
          "median_overhead_s": statistics.median(r["overhead_s"] for r in kept),
          "median_overhead_frac": statistics.median(r["overhead_frac"] for r in kept),
          "total_overhead_frac": sum(r["overhead_s"] for r in kept) / sum(r["round_time_s"] for r in kept)}


def free_base_port(span: int = 3) -> int:
  """A port P with P, P+2, ..., P+span free on 127.0.0.1 (the SuperLink's and SuperNode k's runtime port P+2+k)."""
  for _ in range(200):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      base = s.getsockname()[1]
    if base + span > 65535:
      continue
    ok = True
    for p in [base] + list(range(base + 2, base + span + 1)):
      with socket.socket() as s:
        try:
          s.bind(("127.0.0.1", p))
        except OSError:
          ok = False
    if ok:
      return base
  raise RuntimeError("no free ports on 127.0.0.1")


def start_lab(script: str, lab_dir: str, port: int, env: dict | None = None) -> subprocess.Popen:
  """Runs `script` (from `lab_script`) with bash in its own session, cwd = the repository root, LAB and PORT set;
  output to `<lab_dir>/lab_sh.log`. Stop it (and every process it started) with `stop_lab`."""
  os.makedirs(lab_dir, exist_ok=True)
  path = os.path.join(lab_dir, "lab.sh")
  with open(path, "w", encoding="utf-8") as f:
    f.write(script)
  env = dict(os.environ if env is None else env, LAB=os.path.abspath(lab_dir), PORT=str(port))
  env.pop("FLWR_HOME", None)  # the setup block sets the lab's own
  with open(os.path.join(lab_dir, "lab_sh.log"), "w", encoding="utf-8") as log:
    return subprocess.Popen(["bash", path], cwd=repo_root(), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _group_alive(pgid: int) -> bool:
  try:
    os.killpg(pgid, 0)
    return True
  except ProcessLookupError:
    return False


def stop_lab(proc: subprocess.Popen | None, grace_s: float = 20.0) -> None:
  """SIGTERM to the lab's session (the script, SuperLink, SuperNodes, workers), SIGKILL to what is left after
  `grace_s` seconds."""
  if proc is None:
    return
  for sig in (signal.SIGTERM, signal.SIGKILL):
    if not _group_alive(proc.pid):
      break
    os.killpg(proc.pid, sig)
    deadline = time.monotonic() + grace_s
    while _group_alive(proc.pid) and time.monotonic() < deadline:
      proc.poll()
      time.sleep(0.2)
  proc.poll()


def log_tails(lab_dir: str, chars: int = 2500) -> str:
  """The ends of the lab's `*.log` files, for error messages."""
  out = []
  for name in sorted(os.listdir(lab_dir)):
    if name.endswith(".log"):
      with open(os.path.join(lab_dir, name), encoding="utf-8", errors="replace") as f:
        out.append(f"--- {name}\n{f.read()[-chars:]}")
  return "\n".join(out)
