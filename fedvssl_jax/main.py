"""Entry point: `python -m fedvssl_jax.main --config=configs/<file>.py[:variant] --workdir=DIR`.

Multi-process jobs (docs/scale_out.md): on a TPU VM slice, in a SLURM step or under `mpirun` every process runs the
same command and JAX detects the job; elsewhere add `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`.

All logic lives in the runner modules; this file only parses flags, sets up JAX and dispatches on `config.runner`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/<name>.py[:variant]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, exports and results.")
flags.mark_flags_as_required(["config", "workdir"])
# A multi-process job on a cluster JAX does not detect by itself (and the tests); see docs/scale_out.md.
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0's JAX coordinator (multi-process jobs).")
flags.DEFINE_integer("num_processes", None, "Number of processes of the multi-process job.")
flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from fedvssl_jax.train import distributed  # import after flag parsing: JAX is set up from the flags

  try:
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  except distributed.DistributedError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  from fedvssl_jax import runners

  # --verbosity given: keep that absl log level; else warnings only (`run_cli`).
  return runners.run_cli(FLAGS.config, os.path.abspath(FLAGS.workdir), quiet_logs=not FLAGS["verbosity"].present)


def _parse_flags(argv: list[str]) -> list[str]:
  """Parses flags once; config mistakes (unknown key, wrong type, unknown variant) become one line naming the key."""
  try:
    return FLAGS(argv)
  except Exception as e:  # noqa: BLE001 - flags, ml_collections and the config files raise several types
    text = str(e).replace("\\n", "\n").replace("\\'", "'")
    if "Traceback" in text:  # an exception inside get_config(): keep its last line
      text = text.strip().splitlines()[-1]
    message = " ".join(text.replace("\n", " ").split())
    if isinstance(e, (KeyError, AttributeError)):
      keys = [a.split("=")[0] for a in sys.argv[1:] if a.startswith("--config.")]
      culprit = next((k for k in keys if f"'{k.rsplit('.', 1)[-1]}'" in text), "--config")
      hint = message[message.find("Did you mean"):].rstrip("'") if "Did you mean" in message else ""
      message = f"{culprit}: no such config key. {hint}".strip()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  remaining = _parse_flags(sys.argv)
  app.run(main, flags_parser=lambda _: remaining)
