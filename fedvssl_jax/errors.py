"""Errors that are the user's to fix: the command line prints them as one `error: ...` line and exits 2.

Everything else (a bug in this code, a library failure) keeps its traceback. A `UserError` names the config key or
file at fault and, where it is not obvious, what to do.
"""

from __future__ import annotations

import errno


class UserError(Exception):
  """A mistake in the config, a path, a permission, disk space, a checkpoint or script arguments."""


class UnknownNameError(UserError, KeyError):
  """A registry name that is not registered (a `KeyError` too, for callers that look names up)."""

  def __str__(self) -> str:  # KeyError's str() is the repr of its argument; keep the plain sentence
    return str(self.args[0]) if self.args else ""


# OSError numbers that are about the user's environment (a path, a permission, the disk), not a bug.
USER_OS_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                            errno.EISDIR, errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG})


class MissingDependencyError(UserError, ImportError):
  """An optional package that this run or script needs is not installed (one line: what needs it, how to install)."""


# Optional packages (not needed by every run) -> what to install. A missing one ends a command in one line.
OPTIONAL_DEPENDENCIES = {
    "torch": "pip install torch==2.14.1 torchvision==0.29.1 (PyTorch: .pth files and the parity checks)",
    "torchvision": "pip install torchvision==0.29.1",
    "tensorflow_datasets": "pip install tensorflow-datasets==4.9.10 importlib_resources (TFDS sources and datasets)",
    "simplejpeg": "pip install simplejpeg (JPEG-frame datasets)",
    "ray": 'pip install "flwr[simulation]" (the in-process federated simulation runs on Ray)',
    "cv2": "pip install opencv-contrib-python-headless",
    "array_record": "pip install array-record (ArrayRecord shards)",
}


def require(module: str, purpose: str):
  """Imports and returns `module`; raises `MissingDependencyError` ("<purpose> needs <module>: <install>")."""
  import importlib

  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise MissingDependencyError(missing_dependency_line(module, purpose)) from e


def missing_dependency_line(module: str, purpose: str | None = None) -> str:
  root = module.split(".")[0]
  install = OPTIONAL_DEPENDENCIES.get(root, f"pip install {root}")
  return f"{purpose + ' needs' if purpose else 'missing optional package'} {root}: {install}"


def find_missing_dependency(e: BaseException) -> str | None:
  """One line when `e` (or an exception in its cause / context chain) is the import of a missing optional package
  (`OPTIONAL_DEPENDENCIES`, or a `MissingDependencyError`); None otherwise (other import errors stay bugs)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, MissingDependencyError):
      return str(e)
    name = getattr(e, "name", None) if isinstance(e, ImportError) else None
    if name and name.split(".")[0] in OPTIONAL_DEPENDENCIES:
      return missing_dependency_line(name)
    e = e.__cause__ or e.__context__
  return None


def os_error_line(e: OSError) -> str:
  """One line for an OSError about a path: the path, the reason and, for a full disk, what to do."""
  path = e.filename or ""
  reason = e.strerror or str(e)
  if e.errno in (errno.ENOSPC, errno.EDQUOT):
    return f"{path or 'the workdir'}: no space left on device; free space or choose another --workdir"
  return f"{path}: {reason}" if path else reason


def find_user_os_error(e: BaseException) -> OSError | None:
  """The first OSError about the user's environment in `e`'s cause / context chain (libraries wrap them)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in USER_OS_ERRNOS:
      return e
    e = e.__cause__ or e.__context__
  return None


def print_error(message: str) -> int:
  """Prints `error: <message>` as one line on stderr (after any buffered output); returns exit status 2."""
  import sys

  sys.stdout.flush()
  print("error: " + " ".join(str(message).split()), file=sys.stderr, flush=True)
  return 2


def run_script(main, argv=None) -> int:
  """Runs a script's `main(argv) -> int`; its input mistakes become one `error: ...` line and exit status 2.

  A script's inputs are files and flags, so besides `UserError` and OSErrors about paths this also covers
  `FileNotFoundError`, `ImportError` (an optional dependency such as PyTorch for .pth), `ValueError` (every reader
  here raises it naming the file) and `SystemExit("message")`.
  """
  try:
    return main(argv)
  except MissingDependencyError as e:
    return print_error(str(e))
  except SystemExit as e:
    if isinstance(e.code, str):
      return print_error(e.code)
    raise
  except (UserError, FileNotFoundError, ImportError, ValueError) as e:
    return print_error(find_missing_dependency(e) or str(e))
  except OSError as e:
    if e.errno in USER_OS_ERRNOS:
      return print_error(os_error_line(e))
    raise
