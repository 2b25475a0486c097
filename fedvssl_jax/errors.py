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
