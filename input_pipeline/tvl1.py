"""Batched Dual TV-L1 optical flow in JAX: many frame pairs at once, jit-compiled, sharded over the mesh.

The algorithm is Zach, Pock & Bischof's Dual TV-L1 (2007) in the variant of Sanchez, Meinhardt-Llopis & Facciolo
(IPOL 2013) as OpenCV's `cv2.optflow.DualTVL1OpticalFlow` (opencv-contrib, CPU path) computes it, step for step:

  * pyramid: scale s+1 is scale s resized (bilinear, OpenCV's half-pixel centres, clamped edges) by `scale_step`;
    scales whose image would be under 16 px on a side are dropped. Flow starts at zero on the coarsest scale and is
    resized (bilinear) and divided by `scale_step` on the way up.
  * per scale, zero dual variables; per warp, I1 and its centred gradient are warped by the current flow with
    bicubic interpolation (a = -0.75, taps outside the image read 0, as `cv2.remap` with INTER_CUBIC and
    BORDER_CONSTANT), then up to `outer_iterations` x `inner_iterations` steps of: thresholding
    (v), primal update (u = v + theta div p), dual update (p = (p + tau/theta grad u) / (1 + tau/theta |grad u|)),
    with a `median_filtering` x `median_filtering` median of u (edges replicated) before each run of inner steps.
  * stopping: a pair stops iterating (in this warp) once the sum over pixels of |u_new - u_old|^2 is no more than
    epsilon^2 x pixels of the scale, as OpenCV does. In a batch each pair has its own stop: a pair that has stopped
    keeps its values (masked update) while the others go on, so a pair's flow does not depend on the rest of its
    batch; the loops end when every pair has stopped or the iteration caps are reached.

The remaining differences to OpenCV are float summation order (the stop test and the resizes' arithmetic) and
`gamma` (OpenCV's illumination term), which is not implemented here (it must be 0, the default).

Shapes are static per frame size, so one compilation serves every batch of a given [N, H, W]. Memory: about 30
float32 images of the frame size per pair at the finest scale.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from input_pipeline.flow import DEFAULT_TVL1, TVL1Params

MIN_SCALE_SIZE = 16
_CUBIC_A = -0.75


def pyramid_sizes(h: int, w: int, params: TVL1Params) -> list[tuple[int, int]]:
  """[(H, W)] of each scale, finest first: OpenCV rounds size x scale_step and stops before a side < 16."""
  sizes = [(int(h), int(w))]
  for _ in range(1, int(params.nscales)):
    ph, pw = sizes[-1]
    nh, nw = int(round(ph * params.scale_step)), int(round(pw * params.scale_step))
    if nh < MIN_SCALE_SIZE or nw < MIN_SCALE_SIZE:
      break
    sizes.append((nh, nw))
  return sizes


def _resize_taps(n_out: int, n_in: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Bilinear taps of `cv2.resize(INTER_LINEAR)` along one axis: (i0, i1) [n_out] int32 and weight of i1 [n_out].

  `scale` = input px per output px; half-pixel centres, edges clamped.
  """
  f = (np.arange(n_out) + 0.5) * scale - 0.5
  i0 = np.floor(f).astype(np.int64)
  t = f - i0
  low, high = i0 < 0, i0 >= n_in - 1
  t[low | high] = 0.0
  i0 = np.clip(i0, 0, n_in - 1)
  i1 = np.minimum(i0 + 1, n_in - 1)
  return i0.astype(np.int32), i1.astype(np.int32), t.astype(np.float32)


def _resize(x: jax.Array, out_hw: tuple[int, int], scale: tuple[float, float]) -> jax.Array:
  """[N, H, W] -> [N, H', W'] bilinear (`cv2.resize(INTER_LINEAR)`); `scale` = input px per output px (y, x).

  Elementwise taps rather than a matrix product, so every pair is computed the same way whatever the batch size.
  """
  h, w = x.shape[1:]
  i0, i1, t = _resize_taps(out_hw[1], w, scale[1])
  x = x[:, :, i0] * (1.0 - t) + x[:, :, i1] * t
  i0, i1, t = _resize_taps(out_hw[0], h, scale[0])
  return x[:, i0, :] * (1.0 - t)[:, None] + x[:, i1, :] * t[:, None]


def centered_gradient(img: jax.Array) -> tuple[jax.Array, jax.Array]:
  """[N, H, W] -> (d/dx, d/dy): central differences / 2, one-sided differences / 2 on the borders (OpenCV's)."""
  px = jnp.pad(img, ((0, 0), (0, 0), (1, 1)), mode="edge")
  py = jnp.pad(img, ((0, 0), (1, 1), (0, 0)), mode="edge")
  return 0.5 * (px[:, :, 2:] - px[:, :, :-2]), 0.5 * (py[:, 2:, :] - py[:, :-2, :])


def forward_gradient(u: jax.Array) -> tuple[jax.Array, jax.Array]:
  """[N, H, W] -> forward differences (x, y), zero on the last column / row."""
  ux = jnp.pad(u[:, :, 1:] - u[:, :, :-1], ((0, 0), (0, 0), (0, 1)))
  uy = jnp.pad(u[:, 1:, :] - u[:, :-1, :], ((0, 0), (0, 1), (0, 0)))
  return ux, uy


def divergence(px: jax.Array, py: jax.Array) -> jax.Array:
  """Backward-difference divergence (the negative adjoint of `forward_gradient`), zero outside the image."""
  dx = px - jnp.pad(px[:, :, :-1], ((0, 0), (0, 0), (1, 0)))
  return dx + (py - jnp.pad(py[:, :-1, :], ((0, 0), (1, 0), (0, 0))))


@functools.lru_cache(maxsize=None)
def _batcher_network(n: int) -> tuple[tuple[int, int], ...]:
  """Compare-exchange pairs (i, j), i < j, of Batcher's odd-even merge sort for n = 2^k keys."""
  pairs = []

  def merge(lo, length, r):
    step = r * 2
    if step < length:
      merge(lo, length, step)
      merge(lo + r, length, step)
      pairs.extend((i, i + r) for i in range(lo + r, lo + length - r, step))
    else:
      pairs.append((lo, lo + r))

  def sort(lo, length):
    if length > 1:
      m = length // 2
      sort(lo, m)
      sort(lo + m, m)
      merge(lo, length, 1)

  sort(0, n)
  return tuple(pairs)


def median_filter(u: jax.Array, k: int) -> jax.Array:
  """k x k median of [N, H, W] with replicated edges (`cv2.medianBlur`).

  A sorting network of elementwise min / max (Batcher's, padded to a power of two with +inf): XLA fuses it into one
  loop and drops the comparators the middle key does not depend on, which is much faster than `jnp.sort` per pixel.
  """
  r = k // 2
  h, w = u.shape[1:]
  p = jnp.pad(u, ((0, 0), (r, r), (r, r)), mode="edge")
  keys = [p[:, dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k)]
  size = 1 << (len(keys) - 1).bit_length()
  keys += [jnp.full_like(u, jnp.inf)] * (size - len(keys))
  for i, j in _batcher_network(size):
    keys[i], keys[j] = jnp.minimum(keys[i], keys[j]), jnp.maximum(keys[i], keys[j])
  return keys[(k * k) // 2]


def _cubic_weights(t: jax.Array) -> jax.Array:
  """[...] fractions in [0, 1) -> [..., 4] weights of taps -1, 0, 1, 2 (Keys' cubic, a = -0.75)."""
  a = _CUBIC_A
  w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
  w1 = ((a + 2) * t - (a + 3)) * t * t + 1
  s = 1 - t
  w2 = ((a + 2) * s - (a + 3)) * s * s + 1
  return jnp.stack([w0, w1, w2, 1 - w0 - w1 - w2], axis=-1)


def warp_bicubic(imgs: jax.Array, u1: jax.Array, u2: jax.Array) -> jax.Array:
  """Samples [N, H, W, C] images at (x + u1, y + u2) like `cv2.remap(INTER_CUBIC, BORDER_CONSTANT 0)`.

  Taps outside the image read 0. Coordinates are used as they are (OpenCV 5.0's remap does; 4.x rounded them to
  1/32 px). Returns [N, H, W, C].
  """
  n, h, w, c = imgs.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  x = xs + u1
  y = ys + u2
  ix = jnp.floor(x)
  iy = jnp.floor(y)
  wx = _cubic_weights(x - ix)  # [N, H, W, 4]
  wy = _cubic_weights(y - iy)
  pad = 2
  padded = jnp.pad(imgs, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  wp = w + 2 * pad
  flat = padded.reshape(n, (h + 2 * pad) * wp, c)
  offs = jnp.arange(-1, 3, dtype=jnp.int32)
  # Clamping a tap into the zero margin makes it read 0, like a tap outside the image in OpenCV.
  cx = jnp.clip(ix.astype(jnp.int32)[..., None] + offs, -pad, w - 1 + pad) + pad  # [N, H, W, 4]
  cy = jnp.clip(iy.astype(jnp.int32)[..., None] + offs, -pad, h - 1 + pad) + pad
  idx = (cy[..., :, None] * wp + cx[..., None, :]).reshape(n, h * w * 16)
  taps = jnp.take_along_axis(flat, idx[..., None], axis=1).reshape(n, h, w, 4, 4, c)
  out = jnp.zeros((n, h, w, c), imgs.dtype)
  for a in range(4):  # a fixed order of the 16 terms (as OpenCV sums them), the same for every batch size
    for b in range(4):
      out = out + taps[:, :, :, a, b, :] * (wy[..., a] * wx[..., b])[..., None]
  return out


def _one_scale(i0: jax.Array, i1: jax.Array, u1: jax.Array, u2: jax.Array,
               params: TVL1Params) -> tuple[jax.Array, jax.Array]:
  """Refines flow (u1, u2) [N, H, W] at one scale of the pyramid (OpenCV's procOneScale)."""
  n, h, w = i0.shape
  scaled_eps = jnp.float32(params.epsilon * params.epsilon * h * w)
  l_t = jnp.float32(params.lambda_ * params.theta)
  taut = jnp.float32(params.tau / params.theta)
  theta = jnp.float32(params.theta)
  tiny = jnp.float32(np.finfo(np.float32).eps)
  i1x, i1y = centered_gradient(i1)
  stack = jnp.stack([i1, i1x, i1y], axis=-1)
  mask = lambda active: active[:, None, None]  # noqa: E731

  def inner_step(state):
    u1, u2, p11, p12, p21, p22, err, k, consts = state
    i1wx, i1wy, grad, rho_c = consts
    active = err > scaled_eps
    rho = rho_c + (i1wx * u1 + i1wy * u2)
    thr = l_t * grad
    fi = jnp.where(grad > tiny, -rho / jnp.where(grad > tiny, grad, 1.0), 0.0)
    d1 = jnp.where(rho < -thr, l_t * i1wx, jnp.where(rho > thr, -l_t * i1wx, fi * i1wx))
    d2 = jnp.where(rho < -thr, l_t * i1wy, jnp.where(rho > thr, -l_t * i1wy, fi * i1wy))
    v1, v2 = u1 + d1, u2 + d2
    nu1 = v1 + theta * divergence(p11, p12)
    nu2 = v2 + theta * divergence(p21, p22)
    new_err = jnp.sum(jnp.square(nu1 - u1) + jnp.square(nu2 - u2), axis=(1, 2))
    u1x, u1y = forward_gradient(nu1)
    u2x, u2y = forward_gradient(nu2)
    ng1 = 1.0 + taut * jnp.sqrt(u1x * u1x + u1y * u1y)
    ng2 = 1.0 + taut * jnp.sqrt(u2x * u2x + u2y * u2y)
    m = mask(active)
    out = (jnp.where(m, nu1, u1), jnp.where(m, nu2, u2),
           jnp.where(m, (p11 + taut * u1x) / ng1, p11), jnp.where(m, (p12 + taut * u1y) / ng1, p12),
           jnp.where(m, (p21 + taut * u2x) / ng2, p21), jnp.where(m, (p22 + taut * u2y) / ng2, p22),
           jnp.where(active, new_err, err), k + 1, consts)
    return out

  def inner_cond(state):
    err, k = state[6], state[7]
    return jnp.logical_and(k < params.inner_iterations, jnp.any(err > scaled_eps))

  def outer_step(state):
    u1, u2, p11, p12, p21, p22, err, k, consts = state
    if params.median_filtering > 1:
      m = mask(err > scaled_eps)
      u1 = jnp.where(m, median_filter(u1, params.median_filtering), u1)
      u2 = jnp.where(m, median_filter(u2, params.median_filtering), u2)
    inner = jax.lax.while_loop(inner_cond, inner_step, (u1, u2, p11, p12, p21, p22, err, jnp.int32(0), consts))
    return inner[:7] + (k + 1, consts)

  def outer_cond(state):
    err, k = state[6], state[7]
    return jnp.logical_and(k < params.outer_iterations, jnp.any(err > scaled_eps))

  def warp_step(_, carry):
    u1, u2, p11, p12, p21, p22 = carry
    warped = warp_bicubic(stack, u1, u2)
    i1w, i1wx, i1wy = warped[..., 0], warped[..., 1], warped[..., 2]
    grad = i1wx * i1wx + i1wy * i1wy
    rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
    err = jnp.full((n,), jnp.inf, jnp.float32)
    state = jax.lax.while_loop(outer_cond, outer_step,
                               (u1, u2, p11, p12, p21, p22, err, jnp.int32(0), (i1wx, i1wy, grad, rho_c)))
    return state[:6]

  zeros = jnp.zeros_like(u1)
  carry = jax.lax.fori_loop(0, int(params.warps), warp_step, (u1, u2, zeros, zeros, zeros, zeros))
  return carry[0], carry[1]


def _check_params(params: TVL1Params) -> None:
  if params.gamma != 0:
    raise ValueError(f"tvl1_batch: gamma={params.gamma} (OpenCV's illumination term) is not implemented in the JAX "
                     "backend; use gamma=0 or the opencv backend")
  if params.nscales < 1 or params.warps < 1 or params.inner_iterations < 1 or params.outer_iterations < 1:
    raise ValueError(f"tvl1_batch: nscales, warps, inner_iterations and outer_iterations must be >= 1, got {params}")
  if not 0 < params.scale_step < 1:
    raise ValueError(f"tvl1_batch: scale_step must be in (0, 1), got {params.scale_step}")
  if params.median_filtering > 1 and params.median_filtering % 2 == 0:
    raise ValueError(f"tvl1_batch: median_filtering must be odd (or <= 1 for none), got {params.median_filtering}")


@functools.partial(jax.jit, static_argnames=("params",))
def _tvl1(prev: jax.Array, nxt: jax.Array, params: TVL1Params) -> jax.Array:
  n, h, w = prev.shape
  sizes = pyramid_sizes(h, w, params)
  i0s, i1s = [prev.astype(jnp.float32)], [nxt.astype(jnp.float32)]
  inv = 1.0 / params.scale_step
  for size in sizes[1:]:
    i0s.append(_resize(i0s[-1], size, (inv, inv)))
    i1s.append(_resize(i1s[-1], size, (inv, inv)))
  u1 = jnp.zeros((n,) + sizes[-1], jnp.float32)
  u2 = jnp.zeros_like(u1)
  for s in range(len(sizes) - 1, -1, -1):
    u1, u2 = _one_scale(i0s[s], i1s[s], u1, u2, params)
    if s == 0:
      break
    (sh, sw), (th, tw) = sizes[s], sizes[s - 1]
    u1 = _resize(u1, (th, tw), (sh / th, sw / tw)) * jnp.float32(inv)
    u2 = _resize(u2, (th, tw), (sh / th, sw / tw)) * jnp.float32(inv)
  return jnp.stack([u1, u2], axis=-1)


def tvl1_batch(prev, next, params: TVL1Params = DEFAULT_TVL1, mesh: Optional[Mesh] = None,  # noqa: A002
               axis: str = "data") -> jax.Array:
  """Dual TV-L1 flow of N frame pairs at once.

  Args:
    prev, next: float32 (or uint8) grey frames [N, H, W], values 0..255 (H, W >= 3).
    params: `TVL1Params` (defaults = OpenCV's); `gamma` must be 0.
    mesh: optional mesh; the pairs are split over its `axis` (padded to a multiple of its size, padding dropped).
    axis: the mesh axis that shards the batch.

  Returns:
    float32 [N, H, W, 2]: (x, y) displacement in px on prev's grid, OpenCV's convention (pixel (x, y) of prev moves
    to (x + u, y + v) in next).
  """
  _check_params(params)
  if np.ndim(prev) != 3 or np.shape(prev) != np.shape(next):
    raise ValueError(f"tvl1_batch: prev and next must both be [N, H, W], got {np.shape(prev)} and {np.shape(next)}")
  n, h, w = np.shape(prev)
  if h < 3 or w < 3:
    raise ValueError(f"tvl1_batch: frames must be at least 3x3 px, got {h}x{w}")
  if n == 0:
    return jnp.zeros((0, h, w, 2), jnp.float32)
  if mesh is None:
    return _tvl1(jnp.asarray(prev, jnp.float32), jnp.asarray(next, jnp.float32), params)
  shards = mesh.shape[axis]
  total = -(-n // shards) * shards
  sharding = NamedSharding(mesh, P(axis))

  def put(x):
    x = np.asarray(x, np.float32)
    if total != n:
      x = np.concatenate([x, np.repeat(x[-1:], total - n, axis=0)])
    return jax.device_put(x, sharding)

  return _tvl1(put(prev), put(next), params)[:n]
