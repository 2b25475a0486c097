"""`config.data.percent_per_class` (GOCA's --percent_per_cls): a seeded per-class subsample of the train split."""

import pytest

from fedvssl_jax import datasets
from fedvssl_jax.config_utils import ConfigError
from input_pipeline.annotations import VideoRecord


def _records(counts):
  out = []
  for label, n in enumerate(counts):
    out += [VideoRecord(path=f"/v/{label}_{i}.mp4", label=label, name=f"{label}/{i}") for i in range(n)]
  return out


def test_per_class_counts_order_and_seed():
  records = _records([10, 25, 3])
  sub = datasets.subsample_per_class(records, 0.1, seed=0)
  # GOCA: max(int(n_c * p), 1) per class -> 1, 2, 1.
  assert [sum(r.label == c for r in sub) for c in range(3)] == [1, 2, 1]
  pos = [records.index(r) for r in sub]
  assert pos == sorted(pos)
  assert datasets.subsample_per_class(records, 0.1, seed=0) == sub
  assert any(datasets.subsample_per_class(records, 0.5, seed=s) != datasets.subsample_per_class(records, 0.5, seed=0)
             for s in range(1, 4))
  assert datasets.subsample_per_class(records, 1.0) == records
  with pytest.raises(ConfigError, match="percent_per_class"):
    datasets.subsample_per_class(records, 0.0)
