"""Server-side aggregation rules of FedVSSL, as pure NumPy functions on flat parameter dicts.

A model is a flat dict `{pytree_path: np.ndarray}` (e.g. `"backbone/layer1/0/conv1/kernel"`), holding every array
the clients upload: parameters and BatchNorm running statistics alike. Every rule is applied element-wise to every
array, in float64, and the result is returned as float32.

FedVSSL (Rehman et al. 2022, the original `reproduce_papers/fedssl` scripts), for the sampled clients k with
n_k examples and mean training loss L_k:

  w_avg_k  = n_k / sum_j n_j                         (FedAvg weights)
  w_loss_k = exp(-L_k) / sum_j exp(-L_j)             (softmax(-L), "loss-based")
  theta~   = alpha * sum_k w_loss_k theta_k + (1 - alpha) * sum_k w_avg_k theta_k
  theta_g  = theta~                                          if beta == 0 or there is no previous global (round 1)
           = ema * theta~ + (1 - ema) * theta_g(previous)    if beta == 1   (ema = 0.5 in the paper: "SWA")

`flower_baseline_aggregate` reproduces, on purpose, the Flower baseline's (`baselines/fedvssl/strategy.py`) buggy
version of the same rule; see its docstring.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

FlatParams = Mapping[str, np.ndarray]


def _check_clients(client_params: Sequence[FlatParams]) -> list[str]:
  """Checks that every client has the same keys and shapes as client 0; returns client 0's key order.

  Raises:
    ValueError: no clients, or a key missing / extra / of a different shape, naming the key and the client index.
  """
  if not client_params:
    raise ValueError("aggregation needs at least one client, got none")
  keys = list(client_params[0].keys())
  ref = {k: np.shape(v) for k, v in client_params[0].items()}
  for i, params in enumerate(client_params[1:], start=1):
    for k in keys:
      if k not in params:
        raise ValueError(f"client {i} lacks key {k!r} that client 0 has")
      if np.shape(params[k]) != ref[k]:
        raise ValueError(f"key {k!r}: client {i} has shape {np.shape(params[k])}, client 0 has {ref[k]}")
    for k in params:
      if k not in ref:
        raise ValueError(f"client {i} has key {k!r} that client 0 lacks")
  return keys


def _check_like(name: str, tree: FlatParams, ref: FlatParams) -> None:
  """Checks that `tree` (e.g. the previous global) has exactly `ref`'s keys and shapes."""
  for k, v in ref.items():
    if k not in tree:
      raise ValueError(f"{name} lacks key {k!r} that the clients have")
    if np.shape(tree[k]) != np.shape(v):
      raise ValueError(f"key {k!r}: {name} has shape {np.shape(tree[k])}, the clients have {np.shape(v)}")
  for k in tree:
    if k not in ref:
      raise ValueError(f"{name} has key {k!r} that the clients lack")


def fedavg_weights(num_examples: Sequence[float]) -> np.ndarray:
  """FedAvg weights n_k / sum_j n_j, float64 [K].

  Raises:
    ValueError: a negative or non-finite count, or a zero total.
  """
  n = np.asarray(num_examples, dtype=np.float64).reshape(-1)
  if not np.all(np.isfinite(n)) or np.any(n < 0):
    raise ValueError(f"num_examples must be finite and >= 0, got {n.tolist()}")
  total = n.sum()
  if total <= 0:
    raise ValueError(f"num_examples must sum to > 0, got {n.tolist()}")
  return n / total


def loss_weights(losses: Sequence[float]) -> np.ndarray:
  """Loss-based weights softmax(-L)_k = exp(-L_k) / sum_j exp(-L_j), float64 [K] (numerically stable).

  Raises:
    ValueError: a non-finite loss.
  """
  loss = np.asarray(losses, dtype=np.float64).reshape(-1)
  if not np.all(np.isfinite(loss)):
    raise ValueError(f"losses must be finite, got {loss.tolist()}")
  z = -(loss - loss.min())
  e = np.exp(z)
  return e / e.sum()


def weighted_sum(client_params: Sequence[FlatParams], weights: Sequence[float]) -> dict[str, np.ndarray]:
  """sum_k weights_k * theta_k per key, in float64 (no normalisation). Keys/shapes are checked.

  Args:
    client_params: K flat dicts with identical keys and shapes.
    weights: K floats.

  Returns:
    A flat dict of float64 arrays, keys in client 0's order.
  """
  keys = _check_clients(client_params)
  w = np.asarray(weights, dtype=np.float64).reshape(-1)
  if w.shape[0] != len(client_params):
    raise ValueError(f"got {w.shape[0]} weights for {len(client_params)} clients")
  out = {}
  for k in keys:
    acc = np.zeros(np.shape(client_params[0][k]), dtype=np.float64)
    for wk, params in zip(w, client_params):
      acc += wk * np.asarray(params[k], dtype=np.float64)
    out[k] = acc
  return out


def fedavg_aggregate(client_params: Sequence[FlatParams], num_examples: Sequence[float]) -> dict[str, np.ndarray]:
  """FedAvg: sum_k (n_k / n) theta_k, element-wise on every array; float64 maths, float32 result.

  Args:
    client_params: K flat dicts `{path: array}` with identical keys and shapes.
    num_examples: K example counts n_k.

  Returns:
    The averaged flat dict, float32, keys in client 0's order.

  Raises:
    ValueError: key or shape mismatch (naming the key and the client index), bad counts.
  """
  _check_clients(client_params)
  if len(num_examples) != len(client_params):
    raise ValueError(f"got {len(num_examples)} num_examples for {len(client_params)} clients")
  avg = weighted_sum(client_params, fedavg_weights(num_examples))
  return {k: v.astype(np.float32) for k, v in avg.items()}


def fedvssl_weights(num_examples: Sequence[float], losses: Sequence[float], alpha: float) -> np.ndarray:
  """Per-client weights of theta~: alpha * softmax(-L) + (1 - alpha) * n_k / n, float64 [K], summing to 1."""
  if not 0.0 <= float(alpha) <= 1.0:
    raise ValueError(f"alpha must be in [0, 1], got {alpha}")
  if len(num_examples) != len(losses):
    raise ValueError(f"got {len(num_examples)} num_examples but {len(losses)} losses")
  alpha = float(alpha)
  w = (1.0 - alpha) * fedavg_weights(num_examples)
  if alpha > 0.0:
    w = w + alpha * loss_weights(losses)
  return w


def fedvssl_aggregate(client_params: Sequence[FlatParams],
                      num_examples: Sequence[float],
                      losses: Sequence[float],
                      alpha: float,
                      beta: int,
                      previous_global: FlatParams | None = None,
                      ema_factor: float = 0.5) -> dict[str, np.ndarray]:
  """FedVSSL(alpha, beta) aggregation (the original paper's code, not the Flower baseline's).

  theta~ = alpha * sum_k softmax(-L)_k theta_k + (1 - alpha) * sum_k (n_k / n) theta_k; then, when `beta == 1` and
  `previous_global` is given, theta = ema_factor * theta~ + (1 - ema_factor) * previous_global (0.5 / 0.5 in the
  paper; the original calls it "SWA" but it is an EMA). Applied element-wise to every array (parameters and BN
  statistics), in float64.

  Args:
    client_params: K flat dicts `{path: array}` with identical keys and shapes (the full uploaded models).
    num_examples: K example counts n_k (number of videos of the client).
    losses: K mean local training losses L_k (raw losses; the softmax is taken here).
    alpha: weight in [0, 1] of the loss-based average (0 = FedAvg).
    beta: 0 or 1, whether to average with the previous global model.
    previous_global: the global model of the previous round (None in round 1: no averaging then).
    ema_factor: weight of the new aggregate when beta == 1.

  Returns:
    The new global flat dict, float32, keys in client 0's order.

  Raises:
    ValueError: key or shape mismatch between clients (naming key and client index) or with `previous_global`,
      alpha / beta / ema_factor out of range, non-finite losses, bad counts, length mismatch.
  """
  if beta not in (0, 1, True, False):
    raise ValueError(f"beta must be 0 or 1, got {beta}")
  if not 0.0 <= float(ema_factor) <= 1.0:
    raise ValueError(f"ema_factor must be in [0, 1], got {ema_factor}")
  _check_clients(client_params)
  if len(num_examples) != len(client_params) or len(losses) != len(client_params):
    raise ValueError(f"got {len(client_params)} clients, {len(num_examples)} num_examples and "
                     f"{len(losses)} losses")
  theta = weighted_sum(client_params, fedvssl_weights(num_examples, losses, alpha))
  if int(beta) == 1 and previous_global is not None:
    _check_like("previous_global", previous_global, theta)
    e = float(ema_factor)
    theta = {k: e * v + (1.0 - e) * np.asarray(previous_global[k], dtype=np.float64) for k, v in theta.items()}
  return {k: v.astype(np.float32) for k, v in theta.items()}


def flower_baseline_aggregate(client_params: Sequence[FlatParams] | Sequence[Sequence[np.ndarray]],
                              num_examples: Sequence[float],
                              losses: Sequence[float],
                              mix_coeff: float = 0.9,
                              swbeta: int = 1,
                              previous: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
  """Reproduces the Flower baseline's FedVSSL aggregation *including its bugs*; only for reproducing its numbers.

  What `flwr baselines/fedvssl/fedvssl/strategy.py` (`FedVSSL.aggregate_fit`, non-`fedavg` branch) does:

  1. `W_avg` = FedAvg of the N arrays (weights n_k / n), `W_loss` = the average weighted by the clients'
     `metrics["loss"] = exp(-L_k)` normalised (= softmax(-L)).
  2. **Bug 1, list concatenation:** the mix is built as `[mix_coeff * a for a in W_avg] + [(1 - mix_coeff) * l
     for l in W_loss]`, a Python list of **2N** arrays, not an element-wise sum. Clients zip it with their N state
     keys, so the model they load is `mix_coeff * FedAvg` (the loss part is never used, the weights shrink).
  3. **Bug 2, inverted coefficient:** `mix_coeff` multiplies FedAvg, so it is `1 - alpha` of the paper (its YAML
     default 0.9 is not the paper's alpha = 0.9).
  4. With `swbeta == 1` and a previous global (rounds > 1), `[0.5 * w + 0.5 * p for w, p in zip(new, previous)]`
     over the 2N-array lists; so the first N arrays become `0.5 * mix_coeff * FedAvg_r + 0.5 * g_{r-1}[:N]`, an EMA
     whose coefficients do not sum to 1.

  Args:
    client_params: K models, as flat dicts (ordered by client 0's keys, i.e. state-dict order) or lists of N arrays.
    num_examples: K example counts.
    losses: K raw mean losses L_k (the baseline's `metrics["loss"]` is exp(-L_k)).
    mix_coeff: the baseline's `mix_coeff` (weight of FedAvg).
    swbeta: the baseline's `swbeta` (0 or 1).
    previous: the previous round's returned list (2N arrays) or None in round 1.

  Returns:
    A list of 2N float32 arrays, exactly like the baseline. Use its first N entries with the state keys to get the
    model the baseline's clients actually load.
  """
  if client_params and isinstance(client_params[0], Mapping):
    keys = _check_clients(client_params)  # type: ignore[arg-type]
    lists = [[np.asarray(p[k]) for k in keys] for p in client_params]  # type: ignore[index]
  else:
    lists = [[np.asarray(a) for a in p] for p in client_params]
    if not lists:
      raise ValueError("aggregation needs at least one client, got none")
    as_dicts = [{f"{i:05d}": a for i, a in enumerate(p)} for p in lists]
    _check_clients(as_dicts)
  n_arrays = len(lists[0])
  w_avg = fedavg_weights(num_examples)
  w_loss = loss_weights(losses)
  avg = [sum(w * np.asarray(p[i], np.float64) for w, p in zip(w_avg, lists)) for i in range(n_arrays)]
  los = [sum(w * np.asarray(p[i], np.float64) for w, p in zip(w_loss, lists)) for i in range(n_arrays)]
  mix = float(mix_coeff)
  weights = [mix * a for a in avg] + [(1.0 - mix) * l for l in los]  # the concatenation, on purpose
  if int(swbeta) == 1 and previous is not None:
    if len(previous) != len(weights):
      raise ValueError(f"previous has {len(previous)} arrays, expected {len(weights)} (2N)")
    weights = [0.5 * w + 0.5 * np.asarray(p, np.float64) for w, p in zip(weights, previous)]
  return [np.asarray(w, dtype=np.float32) for w in weights]
