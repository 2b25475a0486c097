"""Host-to-device prefetch for the train loop: `size` batches already on their way to the devices while a step runs.

`jax.device_put` (inside `mesh.put_batch`) returns at once and copies in the background, so putting the next batches
before the step that needs them overlaps the host->device copies (and the host's wait for the input pipeline) with
the device's compute. The data iterator's checkpoint must not count the batches in flight: `get_state()` returns
the wrapped iterator's state from before the oldest batch not yet handed out, so a run resumed from a checkpoint
sees exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import collections
import copy
import json
from typing import Any, Callable, Iterator


class DevicePrefetch:
  """Iterator of device batches over a grain iterator of host batches.

  Args:
    iterator: a grain iterator (`get_state()`; a `grain.DatasetIterator` or a legacy one whose state is bytes).
    put: host batch -> device batch (e.g. `lambda b: mesh_lib.put_batch(b, mesh)`).
    size: batches put ahead (2: two in flight while a step runs); 0 = put each batch when it is asked for.

  Saved with `grain.checkpoint.CheckpointSave(prefetcher)` in place of the iterator (same file format); restore into
  the wrapped iterator before wrapping it.
  """

  def __init__(self, iterator: Iterator[Any], put: Callable[[Any], Any], size: int = 2):
    self._it = iterator
    self._put = put
    self._size = max(0, int(size))
    self._buffer: collections.deque = collections.deque()  # (state before the batch, device batch)

  def __iter__(self) -> "DevicePrefetch":
    return self

  def _fetch(self) -> None:
    state = copy.deepcopy(self._it.get_state())  # a snapshot: some iterators hand out their live state dict
    self._buffer.append((state, self._put(next(self._it))))

  def __next__(self) -> Any:
    if not self._buffer:
      self._fetch()
    _, batch = self._buffer.popleft()
    try:
      while len(self._buffer) < self._size:
        self._fetch()
    except StopIteration:
      pass  # the batches already fetched are still handed out
    return batch

  def get_state(self) -> bytes:
    """The wrapped iterator's state at the first batch not yet handed out, as grain's checkpoint file text."""
    state = self._buffer[0][0] if self._buffer else self._it.get_state()
    if isinstance(state, bytes):
      return state
    return json.dumps(state, indent=4).encode()

  def close(self) -> None:
    self._buffer.clear()
    close = getattr(self._it, "close", None)
    if close is not None:
      close()
