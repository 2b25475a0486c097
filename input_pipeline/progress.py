"""Progress of a counted loop: a tqdm bar (rate, ETA) on a terminal, plain lines when the stream is a file or pipe.

Log files and CI output never receive `\r` or bar redraws: a non-terminal stream gets at most about `lines` lines
("desc: done/total (elapsed, rate, eta)"), each ending in a newline.
"""

from __future__ import annotations

import sys
import time
from typing import IO


def is_terminal(stream: IO | None) -> bool:
  """True when `stream` is an interactive terminal (a redirected / captured / closed stream is not)."""
  try:
    return bool(stream is not None and stream.isatty())
  except (AttributeError, ValueError):  # no isatty (a test double) or a closed file
    return False


def format_seconds(seconds: float) -> str:
  seconds = max(0, int(seconds))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
  """Counts `total` units of work: `update(done)` (absolute) or `advance(n)`; `close()` ends the bar / last line.

  Args:
    total: number of units (0 / None: unknown, no ETA).
    desc: name shown in front.
    unit: unit name ("video", "step", "batch").
    stream: where to write (default stderr).
    lines: non-terminal: about this many lines over the whole loop (and the last one).
    initial: units already done (a resumed loop): rate and ETA count from there.
  """

  def __init__(self, total: int | None, desc: str, unit: str = "it", stream: IO | None = None, lines: int = 20,
               initial: int = 0):
    self.total = int(total or 0)
    self.desc = desc
    self.unit = unit
    self.stream = stream if stream is not None else sys.stderr
    self.done = int(initial)
    self._initial = int(initial)
    self._every = max(1, self.total // max(1, lines)) if self.total else 1
    self._t0 = time.time()
    self._last_line = self.done
    self._bar = None
    if is_terminal(self.stream):
      from tqdm import tqdm

      self._bar = tqdm(total=self.total or None, desc=desc, unit=unit, file=self.stream, initial=self.done,
                       dynamic_ncols=True, leave=True)

  def line(self, postfix: str = "") -> str:
    """The plain progress line: "desc: done/total (pct) | postfix | r unit/s | elapsed | eta"."""
    elapsed = time.time() - self._t0
    rate = (self.done - self._initial) / elapsed if elapsed > 0 else 0.0
    parts = [f"{self.desc}: {self.done}/{self.total} ({100.0 * self.done / self.total:4.1f}%)" if self.total
             else f"{self.desc}: {self.done}"]
    if postfix:
      parts.append(postfix)
    if rate > 0:
      parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 or self.unit == "it" else f"{1 / rate:.3g} s/{self.unit}")
    parts.append(f"elapsed {format_seconds(elapsed)}")
    if rate > 0 and self.total and self.done < self.total:
      parts.append(f"eta {format_seconds((self.total - self.done) / rate)}")
    return " | ".join(parts)

  def update(self, done: int, postfix: str = "", force: bool = False) -> None:
    """Sets the count to `done`; `force` prints a plain line even between the periodic ones."""
    done = int(done)
    if self._bar is not None:
      if postfix:
        self._bar.set_postfix_str(postfix, refresh=False)
      self._bar.update(done - self.done)
      self.done = done
      return
    self.done = done
    if force or done - self._last_line >= self._every or (self.total and done >= self.total):
      if done != self._last_line or force:
        print(self.line(postfix), file=self.stream, flush=True)
      self._last_line = done

  def advance(self, n: int = 1, postfix: str = "") -> None:
    self.update(self.done + n, postfix)

  def write(self, text: str) -> None:
    """A message line that does not break the bar."""
    if self._bar is not None:
      self._bar.write(text, file=self.stream)
    else:
      print(text, file=self.stream, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
