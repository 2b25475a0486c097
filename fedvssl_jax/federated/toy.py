"""A tiny deterministic NumPy local trainer (`"toy"`) and its config, for testing the federated machinery.

Model (flat float32 dict, D = in_dim, H = hidden, C = num_classes):
  backbone/norm/mean [D], backbone/norm/var [D]   BatchNorm-like running statistics of the input (EMA, momentum
                                                  0.9 in Flax convention), used to normalise it; not trained.
  backbone/dense/kernel [D, H], backbone/dense/bias [H]
  head/dense/kernel [H, C], head/dense/bias [C]
Forward: x_hat = (x - mean) / sqrt(var + 1e-3); h = tanh(x_hat W + b); logits = h V + c; softmax cross-entropy.
Trained with plain SGD (fresh every round) and hand-written gradients, so it needs no JAX and is fast and exactly
reproducible: the data and the shuffling depend only on (seed, partition, round, epoch).

Data: client p holds `examples_base + examples_step * p` points of two classes, `p % C` and `(p + 1) % C` (non-IID),
drawn around class centres shared by every client.

Fault injection for tests: `toy.fail_partitions` raise in `train`, `toy.nan_partitions` return NaN (both only in
`toy.fault_rounds` when that is non-empty).

This module is also a config file for `fedvssl_jax.main` with the `federated_simulation` runner (the rounds only: it
has no data, export or kNN): `python -m fedvssl_jax.main --config=fedvssl_jax/federated/toy.py:num_rounds=2
--workdir=DIR`, or `get_config("num_rounds=2,num_clients=3,strategy=fedvssl")` in code.
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np

from fedvssl_jax.federated.local_trainer import LOCAL_TRAINERS, LocalResult


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """A complete federated config for the toy trainer (the same layout the real federated configs use).

  Args:
    arg: comma-separated `key=value` overrides of: strategy (fedavg | fedvssl | flower_baseline), num_rounds,
      num_clients, fraction_train, alpha, beta, local_epochs, min_train_nodes.
  """
  from fedvssl_jax.config_utils import federated_config, parse_arg

  a = parse_arg(arg, strategy="fedvssl", num_rounds=2, num_clients=3, fraction_train=1.0, alpha=0.9, beta=1,
                local_epochs=1, min_train_nodes=2)
  config = ml_collections.ConfigDict()
  config.runner = "federated_simulation"
  config.seed = 0
  config.federated = federated_config(True, a.strategy, a.alpha, a.beta)  # the demo's: one CPU per client, no GPU
  config.federated.update(dict(trainer="toy", num_clients=int(a.num_clients), num_rounds=int(a.num_rounds),
                               fraction_train=float(a.fraction_train), min_train_nodes=int(a.min_train_nodes),
                               local_epochs=int(a.local_epochs), round_timeout_s=600.0))
  config.toy = ml_collections.ConfigDict(dict(
      in_dim=6,
      hidden=8,
      num_classes=3,
      examples_base=24,
      examples_step=8,
      batch_size=8,
      learning_rate=0.2,
      noise=0.7,
      seed=0,
      fail_partitions=(-1,),
      nan_partitions=(-1,),
      fault_rounds=(-1,),
  ))
  return config


class ToyTrainer:
  """The toy `LocalTrainer` (see the module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict):
    c = config.toy
    self.d, self.h, self.c = int(c.in_dim), int(c.hidden), int(c.num_classes)
    self.base, self.step = int(c.examples_base), int(c.examples_step)
    self.batch_size, self.lr, self.noise = int(c.batch_size), float(c.learning_rate), float(c.noise)
    self.seed = int(c.seed)
    self.fail = {int(p) for p in c.fail_partitions if int(p) >= 0}
    self.nan = {int(p) for p in c.nan_partitions if int(p) >= 0}
    self.fault_rounds = {int(r) for r in c.fault_rounds if int(r) >= 0}
    rng = np.random.default_rng([self.seed, 12345])
    self.centres = 2.0 * rng.standard_normal((self.c, self.d))

  def initial_arrays(self) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, 1])
    return {
        "backbone/norm/mean": np.zeros(self.d, np.float32),
        "backbone/norm/var": np.ones(self.d, np.float32),
        "backbone/dense/kernel": (rng.standard_normal((self.d, self.h)) / math.sqrt(self.d)).astype(np.float32),
        "backbone/dense/bias": np.zeros(self.h, np.float32),
        "head/dense/kernel": (rng.standard_normal((self.h, self.c)) / math.sqrt(self.h)).astype(np.float32),
        "head/dense/bias": np.zeros(self.c, np.float32),
    }

  def num_examples(self, partition_id: int) -> int:
    if partition_id < 0:
      raise ValueError(f"partition_id must be >= 0, got {partition_id}")
    return self.base + self.step * int(partition_id)

  def data(self, partition_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Client `partition_id`'s data: x float64 [n, D], y int [n]."""
    n = self.num_examples(partition_id)
    rng = np.random.default_rng([self.seed, 2, partition_id])
    classes = np.array([partition_id % self.c, (partition_id + 1) % self.c])
    y = classes[rng.integers(0, 2, size=n)]
    x = self.centres[y] + self.noise * rng.standard_normal((n, self.d)) + 0.5 * partition_id
    return x, y

  def _faulty(self, server_round: int) -> bool:
    return not self.fault_rounds or server_round in self.fault_rounds

  def train(self, partition_id: int, arrays: dict[str, np.ndarray], *, server_round: int, local_epochs: int,
            workdir: str) -> LocalResult:
    del workdir  # the toy trainer keeps nothing besides its model
    if partition_id in self.fail and self._faulty(server_round):
      raise RuntimeError(f"toy trainer: injected failure of client {partition_id} in round {server_round}")
    p = {k: np.asarray(v, np.float64).copy() for k, v in arrays.items()}
    x, y = self.data(partition_id)
    n = x.shape[0]
    losses = []
    for epoch in range(local_epochs):
      perm = np.random.default_rng([self.seed, 3, partition_id, server_round, epoch]).permutation(n)
      for start in range(0, n, self.batch_size):
        idx = perm[start:start + self.batch_size]
        xb, yb = x[idx], y[idx]
        # BatchNorm-like running statistics (EMA of the batch statistics, Flax momentum 0.9).
        p["backbone/norm/mean"] = 0.9 * p["backbone/norm/mean"] + 0.1 * xb.mean(0)
        p["backbone/norm/var"] = 0.9 * p["backbone/norm/var"] + 0.1 * xb.var(0)
        xh = (xb - p["backbone/norm/mean"]) / np.sqrt(p["backbone/norm/var"] + 1e-3)
        hid = np.tanh(xh @ p["backbone/dense/kernel"] + p["backbone/dense/bias"])
        logits = hid @ p["head/dense/kernel"] + p["head/dense/bias"]
        logits = logits - logits.max(1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(1, keepdims=True)
        b = xb.shape[0]
        losses.append(float(-np.log(prob[np.arange(b), yb] + 1e-12).mean()))
        dlogits = prob.copy()
        dlogits[np.arange(b), yb] -= 1.0
        dlogits /= b
        dz = (dlogits @ p["head/dense/kernel"].T) * (1.0 - hid ** 2)
        p["head/dense/kernel"] -= self.lr * (hid.T @ dlogits)
        p["head/dense/bias"] -= self.lr * dlogits.sum(0)
        p["backbone/dense/kernel"] -= self.lr * (xh.T @ dz)
        p["backbone/dense/bias"] -= self.lr * dz.sum(0)
    mean_loss = float(np.mean(losses)) if losses else 0.0
    out = {k: v.astype(np.float32) for k, v in p.items()}
    if partition_id in self.nan and self._faulty(server_round):
      mean_loss = float("nan")
      out["head/dense/bias"] = np.full_like(out["head/dense/bias"], np.nan)
    return LocalResult(arrays=out, num_examples=n, mean_loss=mean_loss,
                       metrics={"steps": float(len(losses)), "final_batch_loss": losses[-1] if losses else 0.0})


def make_toy_trainer(config: ml_collections.ConfigDict) -> ToyTrainer:
  """Factory registered as local trainer "toy"."""
  return ToyTrainer(config)


if "toy" not in LOCAL_TRAINERS:  # this file is also loaded as a config file (a second module object)
  LOCAL_TRAINERS.register("toy")(make_toy_trainer)
