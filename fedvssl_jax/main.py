"""Entry point: `python -m fedvssl_jax.main --config=configs/<file>.py[:variant] --workdir=DIR` (or `fedvssl-jax`).

`--help` / `-h` prints `USAGE` and this module's flags, `--helpfull` every flag; `--print_config` prints the
resolved config (variant and `--config.key=value` overrides applied) and exits without running.

Multi-process jobs (docs/scale_out.md): on a TPU VM slice, in a SLURM step or under `mpirun` every process runs the
same command and JAX detects the job; elsewhere add `--coordinator_address=HOST:PORT --num_processes=N --process_id=I`.

All logic lives in the runner modules; this file only parses flags, sets up JAX and dispatches on `config.runner`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

USAGE = """\
fedvssl_jax: federated (FedVSSL) and two-stream (GOCA) self-supervised video learning, fine-tuning, kNN retrieval
and linear probes in JAX. One command runs one recipe: train (locally or federated with Flower), export the
backbone and evaluate it.

usage: python -m fedvssl_jax.main --config=configs/<recipe>.py[:variant] --workdir=DIR [--config.key=value ...]
       (installed: fedvssl-jax ...)

Recipes (configs/*.py): supervised, ctp, vcop, speed, goca, fedvssl, finetune_ucf101, finetune_hmdb51, knn,
linear_probe. A variant follows the colon: `:demo` (the recipe shrunk for a CPU, on synthetic videos), or
comma-separated options such as `:demo,task=vcop` or `:dataset=hmdb51`. Any key can be overridden with
`--config.<key>=<value>` (e.g. --config.optim.lr=0.1 --config.data.root=/data/ucf101); an unknown key or a wrong
type is a one-line error. `--print_config` shows the resolved config without running.

Outputs, in --workdir (a rerun with the same workdir resumes from the newest checkpoint):
  config.json                 the resolved config
  metrics.jsonl               training scalars per logged step (federated_metrics.jsonl: per round)
  tensorboard/                TensorBoard events: training scalars, evaluation figures, the config
  checkpoints/<step>/         Orbax checkpoints (train state, data-iterator state, config)
  export/backbone/            the trained backbone (GOCA: also export/flow_backbone/)
  results.json, *.png         evaluation results (kNN R@k, top-1/top-5, linear probe) and plots
"""

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/<name>.py[:variant]).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, exports and results (required to run).")
flags.DEFINE_bool("print_config", False, "Print the resolved config (variant and overrides applied) and exit.")
# A multi-process job on a cluster JAX does not detect by itself (and the tests); see docs/scale_out.md.
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0's JAX coordinator (multi-process jobs).")
flags.DEFINE_integer("num_processes", None, "Number of processes of the multi-process job.")
flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")


def main(argv):
  from fedvssl_jax.core import distributed  # import after flag parsing: JAX is set up from the flags

  try:
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  except distributed.DistributedError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  from fedvssl_jax import runners

  # --verbosity given: keep that absl log level; else warnings only (`run_cli`).
  return runners.run_cli(FLAGS.config, os.path.abspath(FLAGS.workdir), quiet_logs=not FLAGS["verbosity"].present)


def _check_config_file(spec: str | None) -> None:
  path = (spec or "").split(":", 1)[0]  # FILE[:variant]
  if path and not os.path.isfile(path):
    print(f"error: --config: no config file {path} (the recipes are configs/<name>.py[:variant])", file=sys.stderr)
    sys.exit(2)


def _element_type(values) -> type | None:
  """int / float / str when every element of the tuple has that type (bool excluded), else None."""
  for kind in (int, float, str):
    if values and all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
      return kind
  return None


def _check_sequence_overrides(spec: str, config, argv: list[str]) -> None:
  """`--config.key=...` on a tuple key: the elements must have the recipe's element type.

  ml_collections checks scalar types but turns any text given for a tuple into a tuple of strings, which would only
  fail deep inside a builder (e.g. `--config.task.strides=abc`).
  """
  keys = [a[len("--config."):].split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
  if not keys:
    return
  import importlib.util

  path, _, variant = spec.partition(":")
  try:  # the recipe's defaults, from a second load of the config file
    module_spec = importlib.util.spec_from_file_location("_fedvssl_recipe_defaults", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    defaults = module.get_config(variant or None)
  except Exception:  # noqa: BLE001 - a file that cannot be loaded twice (it registers something): no check
    return
  for key in keys:
    default, value = defaults, config
    try:
      for part in key.split("."):
        default, value = default[part], value[part]
    except (KeyError, AttributeError, TypeError):
      continue  # a key the recipe builds differently; the config flag itself checked it
    if not isinstance(default, (tuple, list)) or not isinstance(value, (tuple, list)):
      continue
    kind = _element_type(default)
    if kind is None or not value:
      continue
    ok = all(isinstance(v, kind) and not isinstance(v, bool) or (kind is float and isinstance(v, int))
             for v in value)
    if not ok:
      example = ",".join(str(v) for v in default)
      print(f"error: --config.{key}: expected {kind.__name__} values like {example}, got {value!r}", file=sys.stderr)
      sys.exit(2)


_HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-?")
_OWN_FLAGS = ("config", "workdir", "print_config", "coordinator_address", "num_processes", "process_id", "verbosity")


def _print_help(full: bool) -> None:
  """USAGE, then this command's flags (`--helpfull`: every flag absl knows, JAX's and Flower's included)."""
  print(USAGE)
  print("flags:")
  for name in _OWN_FLAGS:
    flag = FLAGS[name]
    default = "" if flag.default is None or name == "config" else f" (default: {flag.default_as_str})"
    print(f"  --{name}: {flag.help}{default}")
  if full:
    print("\nall flags:")
    print(FLAGS.get_help())
  else:
    print("\nTry --helpfull for every flag.")


def _parse_flags(argv: list[str]) -> list[str]:
  """Parses flags once; config mistakes (unknown key, wrong type, unknown variant) become one line naming the key.

  `--help` / `-h` / `--helpfull` print the help and exit 0, before any config file is loaded.
  """
  if any(a in ("--helpfull", "-helpfull") for a in argv[1:]):
    _print_help(full=True)
    sys.exit(0)
  if any(a in _HELP_FLAGS for a in argv[1:]):
    _print_help(full=False)
    sys.exit(0)
  try:
    remaining = FLAGS(argv)
    if not FLAGS["config"].present:
      print("error: --config: missing; pick a recipe with --config=configs/<recipe>.py[:variant] (see --help)",
            file=sys.stderr)
      sys.exit(2)
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
  _check_sequence_overrides(FLAGS["config"].config_filename, FLAGS.config, argv)
  if FLAGS.print_config:
    try:
      print(FLAGS.config.to_json_best_effort(indent=2), flush=True)
    except BrokenPipeError:  # `--print_config | head`
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
  if FLAGS.workdir is None:
    print("error: --workdir: missing; the run writes its checkpoints, metrics and results there", file=sys.stderr)
    sys.exit(2)
  if len(remaining) > 1:
    print(f"error: unexpected arguments: {' '.join(remaining[1:])}; flags are --config=FILE[:variant] "
          "--workdir=DIR [--config.key=value ...]", file=sys.stderr)
    sys.exit(2)
  return remaining


def run() -> None:
  """The `fedvssl-jax` console entry point (pyproject.toml) and `python -m fedvssl_jax.main`."""
  remaining = _parse_flags(sys.argv)
  app.run(main, flags_parser=lambda _: remaining)


if __name__ == "__main__":
  run()
