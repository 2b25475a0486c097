"""Linear probe of a frozen backbone (`config.runner = "linear_probe"`, configs/linear_probe.py).

Features: as the kNN evaluation (`knn.eval_split_features`): N uniform clips (x 3 crops optionally) per video, each
view's pooled feature L2-normalised, views averaged; two-stream models (`config.init.flow_backbone_checkpoint`) average
the RGB and flow features of each view first, as GOCA does. Classifier: multinomial logistic regression on the
standardised train-split features (`fit_linear_classifier`, optax, L2 penalty on the weights, a fixed number of
epochs), evaluated on the test split: top-1 / top-5 / mean-class accuracy (`classification.classification_metrics`).

Writes `<workdir>/results.json` (`{"linear_probe": {...}, "checkpoint": ..., "arch": ...}`) and the features to
`<workdir>/features_{train,test}.npz` (reusable with `config.features_dir`, e.g. to sweep the classifier settings).
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from fedvssl_jax.evaluation import classification, knn, reporting

OPTIMIZERS = ("adam", "sgd")


def fit_linear_classifier(train_x: np.ndarray, train_y: np.ndarray, num_classes: int, *, epochs: int = 100,
                          batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 1e-4,
                          optimizer: str = "adam", standardize: bool = True, seed: int = 0,
                          verbose: bool = False) -> dict[str, np.ndarray]:
  """Fits a multinomial logistic regression `softmax(((x - mean) / std) @ kernel + bias)`.

  Loss: mean cross-entropy + 0.5 * weight_decay * |kernel|^2 (no penalty on the bias). The optimiser (Adam, or SGD
  with momentum 0.9) follows a cosine decay from `lr` to 0 over all steps; each epoch visits the training rows once in
  a new random order (minibatches of `batch_size`; the last one is masked, not dropped). The whole fit is one jitted
  `lax.scan`, so it is deterministic for a given `seed`.

  Args:
    train_x: [N, D] features.
    train_y: [N] int labels in [0, num_classes).
    num_classes: K.
    epochs: passes over the data.
    batch_size: rows per step; <= 0 or >= N: full batch.
    lr: peak learning rate.
    weight_decay: L2 coefficient on the kernel.
    optimizer: "adam" or "sgd".
    standardize: scale each feature to zero mean / unit variance on the training set (constant features: std 1).
    seed: the shuffling seed.
    verbose: print the mean training loss every tenth of the epochs.

  Returns:
    {"kernel": float32 [D, K], "bias": [K], "mean": [D], "std": [D]} (numpy), for `predict_proba`.
  """
  x = np.asarray(train_x, np.float32)
  y = np.asarray(train_y)
  if x.ndim != 2 or y.shape != (x.shape[0],):
    raise ValueError(f"expected features [N, D] and labels [N], got {x.shape} and {y.shape}")
  if x.shape[0] == 0:
    raise ValueError("no training rows")
  if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f"labels must be integers in [0, {num_classes}), got {y.dtype} in [{y.min()}, {y.max()}]")
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
  if epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}")
  n, d = x.shape
  mean = x.mean(axis=0) if standardize else np.zeros(d, np.float32)
  std = x.std(axis=0) if standardize else np.ones(d, np.float32)
  std = np.where(std < 1e-6, 1.0, std).astype(np.float32)
  xs = jnp.asarray((x - mean) / std)
  ys = jnp.asarray(y, jnp.int32)

  bs = n if batch_size <= 0 or batch_size >= n else int(batch_size)
  num_batches = -(-n // bs)
  schedule = optax.cosine_decay_schedule(lr, decay_steps=epochs * num_batches)
  tx = optax.adam(schedule) if optimizer == "adam" else optax.sgd(schedule, momentum=0.9)
  params = {"kernel": jnp.zeros((d, num_classes), jnp.float32), "bias": jnp.zeros((num_classes,), jnp.float32)}

  def loss_fn(p, xb, yb, mb):
    logits = xb @ p["kernel"] + p["bias"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
    return jnp.sum(ce * mb) / jnp.maximum(jnp.sum(mb), 1.0) + 0.5 * weight_decay * jnp.sum(p["kernel"] ** 2)

  def one_epoch(carry, key, xs, ys):
    order = jax.random.permutation(key, n)
    pad = num_batches * bs - n
    order = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)]).reshape(num_batches, bs)
    mask = (jnp.arange(num_batches * bs) < n).astype(jnp.float32).reshape(num_batches, bs)

    def step(carry, inputs):
      p, opt_state = carry
      idx, m = inputs
      loss, grads = jax.value_and_grad(loss_fn)(p, xs[idx], ys[idx], m)
      updates, opt_state = tx.update(grads, opt_state, p)
      return (optax.apply_updates(p, updates), opt_state), loss

    carry, losses = jax.lax.scan(step, carry, (order, mask))
    return carry, losses.mean()

  @jax.jit
  def run(params, key, xs, ys):  # the features are arguments, not constants baked into the compiled program
    (params, _), epoch_losses = jax.lax.scan(functools.partial(one_epoch, xs=xs, ys=ys), (params, tx.init(params)),
                                             jax.random.split(key, epochs))
    return params, epoch_losses

  t0 = time.time()
  params, epoch_losses = jax.device_get(run(params, jax.random.key(seed), xs, ys))
  if verbose:
    every = max(1, epochs // 10)
    for e in range(every - 1, epochs, every):
      print(f"[linear probe] epoch {e + 1}/{epochs} train loss {float(epoch_losses[e]):.4f}", flush=True)
    print(f"[linear probe] fitted {d}-d -> {num_classes} classes on {n} videos in {time.time() - t0:.1f}s",
          flush=True)
  return {"kernel": np.asarray(params["kernel"]), "bias": np.asarray(params["bias"]), "mean": mean.astype(np.float32),
          "std": std}


def predict_proba(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
  """Class probabilities float32 [N, K] of features `x` [N, D] under `fit_linear_classifier`'s params."""
  x = np.asarray(x, np.float32)
  logits = ((x - params["mean"]) / params["std"]).astype(np.float64) @ params["kernel"] + params["bias"]
  return classification.softmax(logits)


def probe_kwargs(probe: ml_collections.ConfigDict) -> dict[str, Any]:
  """`config.probe` as `fit_linear_classifier` keyword arguments."""
  return dict(epochs=int(probe.epochs), batch_size=int(probe.batch_size), lr=float(probe.lr),
              weight_decay=float(probe.weight_decay), optimizer=str(probe.optimizer),
              standardize=bool(probe.get("standardize", True)), seed=int(probe.get("seed", 0)))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """The `linear_probe` runner: features of the frozen backbone(s), a linear classifier on the train split, test
  accuracy. Returns (and writes to `<workdir>/results.json`, `workdir` made by `runners.run`) the results."""
  from fedvssl_jax.config_utils import ConfigError

  if config.probe.optimizer not in OPTIMIZERS:
    raise ConfigError(f"config.probe.optimizer={config.probe.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
  train, test = knn.eval_split_features(config, "features", workdir, desc="linear probe")
  num_classes = train.num_classes
  params = fit_linear_classifier(train.features, train.labels, num_classes, verbose=True, **probe_kwargs(config.probe))
  metrics = classification.classification_metrics(predict_proba(params, test.features), test.labels, num_classes)
  train_metrics = classification.classification_metrics(predict_proba(params, train.features), train.labels,
                                                        num_classes)
  metrics["train_top1"] = train_metrics["top1"]
  results: dict[str, Any] = {"linear_probe": metrics, **train.meta, "num_classes": num_classes,
                             "num_train": int(len(train.labels)), "probe": config.probe.to_dict()}
  results.update(knn.features_provenance(config, workdir))
  logging.info("linear probe: %s", metrics)
  return reporting.write_results(workdir, results)
