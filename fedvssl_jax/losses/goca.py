"""GOCA loss: SwAV swapped prediction per stream with a Sinkhorn prior from the other stream.

Everything here is a pure function on arrays (see `/work/shared/reference/goca.md` section 4).

Layout conventions:
  * `scores[B, K]`: cosine scores s = z C^T of B samples against K unit prototypes.
  * `scores_rgb / scores_flow [V, B, K]`: view-major scores of one stream (view v is rows v*B:(v+1)*B in the
    original PyTorch code; here it is simply index v of the leading axis).

Sharding: the Sinkhorn normalisations reduce over the batch axis with plain `jnp` reductions. Under `jax.jit` with
the batch sharded on a mesh axis (`NamedSharding(mesh, P("data"))`), XLA's SPMD partitioner turns those into
all-reduces, so the codes are equipartitioned over the *global* batch exactly like SwAV's `dist.all_reduce`
version. Inside `shard_map` bodies (where arrays are per-device blocks) pass `axis_name=` instead, and the batch
reductions become explicit `lax.psum` / `lax.pmax` collectives over that axis.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

PRIOR_FLOOR = 1e-30


def _batch_logsumexp(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
  """logsumexp over axis 0 (the batch), global over `axis_name` devices when given. Returns [1, K]."""
  m = lax.stop_gradient(jnp.max(x, axis=0, keepdims=True))
  if axis_name is not None:
    m = lax.pmax(m, axis_name)
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  s = jnp.sum(jnp.exp(x - m), axis=0, keepdims=True)
  if axis_name is not None:
    s = lax.psum(s, axis_name)
  return jnp.log(s) + m


def _global_batch_size(local_b: int, axis_name: Optional[str]) -> jax.Array | int:
  if axis_name is None:
    return local_b
  return lax.psum(local_b, axis_name)


def _sinkhorn_from_logits(logits: jax.Array, num_iters: int, axis_name: Optional[str]) -> jax.Array:
  """Sinkhorn-Knopp in the log domain on an un-normalised log-kernel `logits[B, K]`; returns codes [B, K].

  Equivalent to SwAV's `distributed_sinkhorn`: Q = exp(logits)^T / sum, then `num_iters` times
  {each prototype's mass -> 1/K (sum over the global batch); each sample's mass -> 1/B}, and return B * Q^T, whose
  rows sum to 1. The initial global normalisation Q / sum(Q) only shifts log Q by a constant, which the first
  prototype normalisation removes exactly, so it is skipped.
  """
  b, k = logits.shape
  log_b = jnp.log(jnp.asarray(_global_batch_size(b, axis_name), jnp.float32))
  log_k = jnp.log(jnp.float32(k))
  log_q = logits
  for _ in range(num_iters):
    # Prototype (row of Q = column of log_q) marginals: sum over the global batch -> 1/K.
    log_q = log_q - _batch_logsumexp(log_q, axis_name) - log_k
    # Sample marginals: sum over prototypes (local) -> 1/B.
    log_q = log_q - jax.nn.logsumexp(log_q, axis=1, keepdims=True) - log_b
  if num_iters == 0:
    # Only the global normalisation: Q / sum(Q), returned as B * Q^T.
    total = _batch_logsumexp(jax.nn.logsumexp(log_q, axis=1, keepdims=True), axis_name)
    log_q = log_q - total
  return jnp.exp(log_q + log_b)


def _check_scores(scores: jax.Array, name: str) -> None:
  if scores.ndim != 2:
    raise ValueError(f"{name} must be [B, K], got shape {scores.shape}")


def sinkhorn(scores: jax.Array, epsilon: float, num_iters: int = 3, *,
             axis_name: Optional[str] = None) -> jax.Array:
  """SwAV's Sinkhorn-Knopp online assignment ("OA" in GOCA).

  Args:
    scores: [B, K] scores (any float dtype; computed in float32). B is the local batch inside `shard_map`, the
      global batch otherwise.
    epsilon: entropy regularisation (SwAV 0.05, GOCA script 0.02). Log-domain, so no overflow for small epsilon.
    num_iters: Sinkhorn iterations (3 in SwAV / GOCA).
    axis_name: mesh axis to reduce the batch over inside `shard_map`; None under plain `jit` (reductions are
      already global there).

  Returns:
    float32 codes q [B, K], rows summing to 1, prototype masses ~B/K over the global batch; no gradient.
  """
  _check_scores(scores, "sinkhorn: scores")
  s = lax.stop_gradient(scores).astype(jnp.float32)
  q = _sinkhorn_from_logits(s / jnp.float32(epsilon), num_iters, axis_name)
  return lax.stop_gradient(q)


def sinkhorn_with_prior(scores: jax.Array, prior: jax.Array, epsilon: float, epsilon2: float,
                        num_iters: int = 3, prior_sign: int = 1, *,
                        axis_name: Optional[str] = None) -> jax.Array:
  """Prior-guided Sinkhorn ("OAP" in GOCA): the kernel is tilted by the other stream's assignment.

  With P = max(prior, 1e-30) (rows summing to 1, e.g. `sinkhorn` of the other stream) and global batch B:
    log kernel = (S + prior_sign * epsilon2 * log(P / B)) / (epsilon + epsilon2)
  followed by the same Sinkhorn iterations as `sinkhorn`.

  * `prior_sign=+1` (default): the optimum of max_Q <Q,S> + eps H(Q) - eps2 KL(Q || P/B), i.e. the kernel
    exp(S/(eps+eps2)) * P^(+eps2/(eps+eps2)); it pulls the codes toward the prototypes the other stream chose,
    which is what the paper describes ("enforce similar cluster structures").
  * `prior_sign=-1`: the released GOCA code (`distributed_sinkhorn_withprior`, helper/train_utils.py:213-219),
    which subtracts eps2 log(P/B) and therefore *down-weights* the other stream's clusters. Kept for fidelity /
    ablation.
  The 1/B inside the log is a constant shift and does not change the result; it is kept to mirror the code.

  Args:
    scores: [B, K] scores of this stream.
    prior: [B, K] prior assignment (rows sum to 1), same sharding as `scores`.
    epsilon, epsilon2: entropy and prior weights (GOCA defaults 0.05 / 0.01, script 0.02 / 0.03).
    num_iters: Sinkhorn iterations.
    prior_sign: +1 (KL-regularised) or -1 (as released).
    axis_name: see `sinkhorn`.

  Returns:
    float32 codes [B, K], rows summing to 1; no gradient.
  """
  _check_scores(scores, "sinkhorn_with_prior: scores")
  if prior.shape != scores.shape:
    raise ValueError(f"sinkhorn_with_prior: prior shape {prior.shape} != scores shape {scores.shape}")
  if prior_sign not in (1, -1):
    raise ValueError(f"sinkhorn_with_prior: prior_sign must be +1 or -1, got {prior_sign!r}")
  s = lax.stop_gradient(scores).astype(jnp.float32)
  p = jnp.maximum(lax.stop_gradient(prior).astype(jnp.float32), PRIOR_FLOOR)
  b = _global_batch_size(scores.shape[0], axis_name)
  log_p = jnp.log(p) - jnp.log(jnp.asarray(b, jnp.float32))
  logits = (s + jnp.float32(prior_sign * epsilon2) * log_p) / jnp.float32(epsilon + epsilon2)
  q = _sinkhorn_from_logits(logits, num_iters, axis_name)
  return lax.stop_gradient(q)


# ----------------------------------------------------------------------------------------------------------------
# SwAV queue (off in GOCA's script; queue_length 0). Pure functions over a queue of embeddings.
# ----------------------------------------------------------------------------------------------------------------


def init_queue(length: int, num_assign: int, dim: int, num_streams: int = 2) -> jax.Array:
  """Zero queue of embeddings [num_streams, num_assign, length, dim] (stream 0 = RGB, 1 = flow)."""
  if length <= 0:
    raise ValueError(f"init_queue: length must be > 0, got {length}")
  return jnp.zeros((num_streams, num_assign, length, dim), jnp.float32)


def queue_scores(queue: jax.Array, prototypes: jax.Array) -> jax.Array:
  """Scores of queued embeddings: queue [S, T, L, D] @ prototypes[K, D]^T -> [S, T, L, K], no gradient."""
  return lax.stop_gradient(jnp.einsum("stld,kd->stlk", queue, prototypes))


def update_queue(queue: jax.Array, z_rgb: jax.Array, z_flow: jax.Array,
                 assign_views: Sequence[int] = (0, 1)) -> jax.Array:
  """FIFO update: the newest embeddings of the assigned views go to the front, the oldest B rows drop out.

  Args:
    queue: [2, |assign_views|, L, D].
    z_rgb, z_flow: [V, B, D] L2-normalised embeddings of this step (view-major).
    assign_views: the views whose embeddings are queued (same order as in `goca_loss`).

  Returns:
    The new queue, same shape, no gradient. Requires B <= L.
  """
  b = z_rgb.shape[1]
  length = queue.shape[2]
  if b > length:
    raise ValueError(f"update_queue: batch {b} is longer than the queue ({length})")
  new = jnp.stack([z_rgb[jnp.asarray(assign_views)], z_flow[jnp.asarray(assign_views)]])  # [2, T, B, D]
  new = lax.stop_gradient(new).astype(queue.dtype)
  return jnp.concatenate([new, queue[:, :, : length - b]], axis=2)


def push_queue(queue: jax.Array, zs: Sequence[jax.Array], assign_views: Sequence[int] = (0, 1)) -> jax.Array:
  """FIFO update of a queue [S, |assign_views|, L, D] with the embeddings zs[s] [V, B, D] of its S sets (S = 2: RGB
  and flow, as `update_queue`; S = 1: a single stream or the averaged streams). No gradient; needs B <= L."""
  b = zs[0].shape[1]
  length = queue.shape[2]
  if len(zs) != queue.shape[0]:
    raise ValueError(f"push_queue: {len(zs)} embedding sets for a queue of {queue.shape[0]}")
  if b > length:
    raise ValueError(f"push_queue: batch {b} is longer than the queue ({length})")
  new = jnp.stack([z[jnp.asarray(assign_views)] for z in zs])  # [S, T, B, D]
  new = lax.stop_gradient(new).astype(queue.dtype)
  return jnp.concatenate([new, queue[:, :, : length - b]], axis=2)


def queue_is_full(queue: jax.Array) -> bool:
  """SwAV's rule: use the queue only once its last row has been written (host-side check, not jit-traced)."""
  return bool(jnp.any(queue[:, :, -1] != 0))


# ----------------------------------------------------------------------------------------------------------------
# The loss.
# ----------------------------------------------------------------------------------------------------------------


def _soft_ce(q: jax.Array, logits: jax.Array) -> jax.Array:
  """-(1/B) sum_i sum_k q_ik log softmax(logits)_ik, computed in float32."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.sum(q * logp, axis=-1))


def _num_used(assign: jax.Array, k: int) -> jax.Array:
  """Number of distinct prototypes among integer assignments (any shape)."""
  counts = jnp.zeros((k,), jnp.int32).at[assign.reshape(-1)].add(1)
  return jnp.sum(counts > 0)


def goca_loss(
    scores_rgb: jax.Array,
    scores_flow: jax.Array,
    *,
    assign_views: Sequence[int] = (0, 1),
    temperature: float = 0.1,
    epsilon: float = 0.05,
    epsilon2: float = 0.01,
    num_iters: int = 3,
    use_prior: bool = True,
    prior_sign: int = 1,
    divide_twice: bool = False,
    queue: Optional[jax.Array] = None,
    axis_name: Optional[str] = None,
    sinkhorn_cycle: int = 1,
) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """GOCA's loss: swapped prediction inside each stream, codes optionally guided by the other stream.

  For each assigned view t (GOCA: the two 32-frame clips):
    q_r = SK(s_rgb[t]), q_f = SK(s_flow[t])                             if not use_prior
    q_r = SKprior(s_rgb[t], SK(s_flow[t])), q_f = SKprior(s_flow[t], SK(s_rgb[t]))  if use_prior
    L_r = mean_{v != t} CE(q_r, softmax(s_rgb[v] / T)),  L_f likewise on flow
    loss += (L_r + L_f) / 2
  loss /= |assign_views|   (and once more if `divide_twice`).

  `divide_twice=True` reproduces the released code, which divides by |T_assign| both in `compute_ot_loss` and in
  the forward pass (net 1/4 for two assigned views); it only rescales the loss (with LARC mostly the balance
  against weight decay). Codes are stop-gradient; gradients flow only into the predictions s[v], v != t.

  Args:
    scores_rgb, scores_flow: [V, B, K] view-major scores (z C^T) of the RGB and flow streams.
    assign_views: views used to compute codes.
    temperature: softmax temperature tau of the predictions (0.1).
    epsilon, epsilon2, num_iters: Sinkhorn parameters (see `sinkhorn_with_prior`).
    use_prior: GOCA's OA -> OAP coupling (False = two independent SwAV losses).
    prior_sign: +1 KL form, -1 released code (see `sinkhorn_with_prior`).
    divide_twice: see above.
    queue: optional queue scores [2, |assign_views|, L, K] (see `queue_scores`), prepended to each assigned view's
      scores before Sinkhorn (and before the prior), as in SwAV; the codes are the last B rows.
    axis_name: mesh axis inside `shard_map` (None under `jit`).
    sinkhorn_cycle: rounds of prior-guided Sinkhorn (GOCA's `--sinkhorn_cycle`, train_utils.py compute_ot_loss):
      1 = q_r = SKprior(s_r, SK(s_f)); 2 = the guided codes of round 1 are the priors of round 2,
      q_r = SKprior(s_r, SKprior(s_f, SK(s_r))); n > 2 continues the same way.

  Returns:
    (loss, metrics) with metrics `loss_rgb`, `loss_flow` (same normalisation as `loss`), `agreement` (fraction of
    samples with argmax q_rgb == argmax q_flow, averaged over assigned views), `protos_used_rgb/flow` (distinct
    argmax of the codes over all assigned views; a collapse check) and `protos_used_pred_rgb/flow` (distinct argmax
    of the scores over all views).
  """
  if scores_rgb.ndim != 3 or scores_rgb.shape != scores_flow.shape:
    raise ValueError(f"goca_loss: scores_rgb {scores_rgb.shape} and scores_flow {scores_flow.shape} must both be "
                     "[V, B, K]")
  v_total, b, k = scores_rgb.shape
  assign_views = tuple(int(t) for t in assign_views)
  if not assign_views or any(t < 0 or t >= v_total for t in assign_views):
    raise ValueError(f"goca_loss: assign_views {assign_views} out of range for V={v_total}")
  if v_total < 2:
    raise ValueError("goca_loss: need at least 2 views for swapped prediction")
  if int(sinkhorn_cycle) < 1:
    raise ValueError(f"goca_loss: sinkhorn_cycle must be >= 1, got {sinkhorn_cycle}")
  if queue is not None and (queue.ndim != 4 or queue.shape[0] != 2 or queue.shape[1] != len(assign_views)
                            or queue.shape[3] != k):
    raise ValueError(f"goca_loss: queue must be [2, {len(assign_views)}, L, {k}], got {queue.shape}")

  def codes_for(scores_a: jax.Array, scores_b: jax.Array) -> Tuple[jax.Array, jax.Array]:
    if use_prior:
      q_a = sinkhorn(scores_a, epsilon, num_iters, axis_name=axis_name)
      q_b = sinkhorn(scores_b, epsilon, num_iters, axis_name=axis_name)
      for _ in range(sinkhorn_cycle):
        q_a, q_b = (
            sinkhorn_with_prior(scores_a, q_b, epsilon, epsilon2, num_iters, prior_sign, axis_name=axis_name),
            sinkhorn_with_prior(scores_b, q_a, epsilon, epsilon2, num_iters, prior_sign, axis_name=axis_name))
    else:
      q_a = sinkhorn(scores_a, epsilon, num_iters, axis_name=axis_name)
      q_b = sinkhorn(scores_b, epsilon, num_iters, axis_name=axis_name)
    return q_a, q_b

  inv_t = jnp.float32(1.0 / temperature)
  loss_r = jnp.float32(0.0)
  loss_f = jnp.float32(0.0)
  agreement = jnp.float32(0.0)
  assign_r, assign_f = [], []
  for i, t in enumerate(assign_views):
    a_r = scores_rgb[t]
    a_f = scores_flow[t]
    if queue is not None:
      a_r = jnp.concatenate([queue[0, i].astype(a_r.dtype), a_r], axis=0)
      a_f = jnp.concatenate([queue[1, i].astype(a_f.dtype), a_f], axis=0)
    q_r, q_f = codes_for(a_r, a_f)
    q_r, q_f = q_r[-b:], q_f[-b:]
    others = [v for v in range(v_total) if v != t]
    l_r = sum(_soft_ce(q_r, scores_rgb[v] * inv_t) for v in others) / len(others)
    l_f = sum(_soft_ce(q_f, scores_flow[v] * inv_t) for v in others) / len(others)
    loss_r += l_r
    loss_f += l_f
    ar, af = jnp.argmax(q_r, axis=-1), jnp.argmax(q_f, axis=-1)
    agreement += jnp.mean((ar == af).astype(jnp.float32))
    assign_r.append(ar)
    assign_f.append(af)

  n = len(assign_views)
  denom = float(n * n) if divide_twice else float(n)
  loss_r = loss_r / denom
  loss_f = loss_f / denom
  loss = (loss_r + loss_f) / 2.0
  metrics = {
      "loss": loss,
      "loss_rgb": loss_r,
      "loss_flow": loss_f,
      "agreement": agreement / n,
      "protos_used_rgb": _num_used(jnp.stack(assign_r), k),
      "protos_used_flow": _num_used(jnp.stack(assign_f), k),
      "protos_used_pred_rgb": _num_used(jnp.argmax(scores_rgb, axis=-1), k),
      "protos_used_pred_flow": _num_used(jnp.argmax(scores_flow, axis=-1), k),
  }
  return loss, metrics


def swav_loss(
    scores: jax.Array,
    *,
    assign_views: Sequence[int] = (0, 1),
    temperature: float = 0.1,
    epsilon: float = 0.05,
    num_iters: int = 3,
    divide_twice: bool = False,
    queue: Optional[jax.Array] = None,
    axis_name: Optional[str] = None,
) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """SwAV's swapped prediction on one set of views: GOCA's single-stream runs (`--video_channels rgb|flow`, the
  released launch script) and `AvgRgbFlow` (scores of the averaged streams), train_utils.py compute_ot_loss.

    loss = (1/|T|) sum_t mean_{v != t} CE(SK(s[t]), softmax(s[v] / tau))   (/ |T| once more if `divide_twice`)

  Args:
    scores: [V, B, K] view-major scores.
    queue: optional queue scores [|assign_views|, L, K], prepended before Sinkhorn (codes = last B rows).
    others: as `goca_loss`.

  Returns:
    (loss, metrics) with `loss`, `protos_used` (distinct argmax of the codes) and `protos_used_pred`.
  """
  if scores.ndim != 3:
    raise ValueError(f"swav_loss: scores must be [V, B, K], got {scores.shape}")
  v_total, b, k = scores.shape
  assign_views = tuple(int(t) for t in assign_views)
  if v_total < 2 or not assign_views or any(t < 0 or t >= v_total for t in assign_views):
    raise ValueError(f"swav_loss: assign_views {assign_views} out of range for V={v_total} (need V >= 2)")
  if queue is not None and (queue.ndim != 3 or queue.shape[0] != len(assign_views) or queue.shape[2] != k):
    raise ValueError(f"swav_loss: queue must be [{len(assign_views)}, L, {k}], got {queue.shape}")
  inv_t = jnp.float32(1.0 / temperature)
  loss = jnp.float32(0.0)
  assign = []
  for i, t in enumerate(assign_views):
    a = scores[t] if queue is None else jnp.concatenate([queue[i].astype(scores.dtype), scores[t]], axis=0)
    q = sinkhorn(a, epsilon, num_iters, axis_name=axis_name)[-b:]
    others = [v for v in range(v_total) if v != t]
    loss += sum(_soft_ce(q, scores[v] * inv_t) for v in others) / len(others)
    assign.append(jnp.argmax(q, axis=-1))
  n = len(assign_views)
  loss = loss / (float(n * n) if divide_twice else float(n))
  return loss, {"loss": loss, "protos_used": _num_used(jnp.stack(assign), k),
                "protos_used_pred": _num_used(jnp.argmax(scores, axis=-1), k)}
