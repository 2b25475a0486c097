"""What keeps a warm ClientApp process warm: the client's last saved state served from memory, safely."""

import os

import numpy as np
import pytest

from fedvssl_jax.federated import client_state


def test_last_saved_state_is_served_from_memory_until_its_files_change(tmp_path, monkeypatch):
  wd = str(tmp_path)
  arrays = {"backbone/w": np.arange(6, dtype=np.float32).reshape(2, 3), "head/b": np.ones(2, np.float32)}
  step_dir = client_state.save_client_state(wd, 3, 2, arrays, meta={"loss": 1.5})
  real_manager = client_state._manager  # pylint: disable=protected-access

  def no_orbax(*a, **k):
    raise AssertionError("restored from Orbax although the state was in memory")

  monkeypatch.setattr(client_state, "_manager", no_orbax)
  got, meta = client_state.load_client_state(wd, 3, before_round=3)
  assert list(got) == list(arrays) and all(np.array_equal(got[k], arrays[k]) for k in arrays)
  assert meta["round"] == 2 and meta["loss"] == 1.5
  got["backbone/w"][:] = -1  # callers own what they get
  again, _ = client_state.load_client_state(wd, 3, before_round=3)
  assert np.array_equal(again["backbone/w"], arrays["backbone/w"])
  # A file of the stored step rewritten: back to Orbax, which reports the corrupt state.
  for root, _, files in os.walk(os.path.join(step_dir, "arrays")):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  with pytest.raises(AssertionError, match="restored from Orbax"):
    client_state.load_client_state(wd, 3, before_round=3)
  monkeypatch.setattr(client_state, "_manager", real_manager)
  with pytest.raises(client_state.ClientStateError):
    client_state.load_client_state(wd, 3, before_round=3)
  assert client_state.load_client_state(wd, 3, before_round=2) is None  # an older round: nothing stored
