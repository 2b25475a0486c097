"""Entry point: `python -m fedvssl_jax.main --config=configs/<file>.py[:variant] --workdir=DIR`.

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


def main(argv):
  from fedvssl_jax import runners  # import after flag parsing: it pulls in JAX

  # --verbosity given: keep that absl log level; else warnings only (`run_cli`).
  return runners.run_cli(FLAGS.config, os.path.abspath(FLAGS.workdir), quiet_logs=not FLAGS["verbosity"].present)


def _check_config_file(spec: str | None) -> None:
  path = (spec or "").split(":", 1)[0]  # FILE[:variant]
  if path and not os.path.isfile(path):
    print(f"error: --config: no config file {path} (the recipes are configs/<name>.py[:variant])", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
  """Parses flags once; config mistakes (unknown key, wrong type, unknown variant) become one line naming the key."""
  try:
    remaining = FLAGS(argv)
    _check_config_file(FLAGS["config"].config_filename)
    FLAGS.config.get("runner")  # the file is loaded on first use: a bad variant or a broken file raises here
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
  if len(remaining) > 1:
    print(f"error: unexpected arguments: {' '.join(remaining[1:])}; flags are --config=FILE[:variant] "
          "--workdir=DIR [--config.key=value ...]", file=sys.stderr)
    sys.exit(2)
  return remaining


if __name__ == "__main__":
  remaining = _parse_flags(sys.argv)
  app.run(main, flags_parser=lambda _: remaining)
