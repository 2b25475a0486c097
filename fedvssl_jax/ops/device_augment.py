"""Colour jitter + normalisation of uint8 clips inside the jitted step (the device half of a uint8 input pipeline).

A host pipeline that ends in uint8 clips (`input_pipeline.transforms.random_short_side_crop`, e.g.
`input_pipeline.benchmark.CtPUint8Builder`) ships 4x fewer bytes to the device and leaves the float work, which costs
the host more than decoding the prepared JPEG frames (docs/benchmarks.md), to the accelerator:

    video = jitter_and_normalize(batch["video"], rng, jitter=(0.4, 0.4, 0.4, 0.1, 0.8))   # in the loss function

The pretext recipes switch to it with `config.task.device_augment` (`pretext.base.PretextTask.train_loss_fn`).

The ops are those of `input_pipeline.transforms.color_jitter` (torchvision ColorJitter semantics: brightness,
contrast with the frame's mean luma, saturation with the pixel's luma, hue rotation; clamped to [0, 255] after each),
with one set of factors per clip, applied with probability p, in the fixed order brightness, contrast, saturation,
hue (the host version draws a random order per clip). Pure function of arrays; jit / vmap friendly.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GRAY = jnp.array([0.299, 0.587, 0.114], jnp.float32)


def _luma(x: jax.Array) -> jax.Array:
  return (x @ _GRAY)[..., None]


def _rgb_to_hsv(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """x in [0, 1] -> (h in [0, 1) turns, s, v)."""
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  v = jnp.max(x, axis=-1)
  c = v - jnp.min(x, axis=-1)
  s = jnp.where(v > 0, c / jnp.where(v > 0, v, 1.0), 0.0)
  safe = jnp.where(c > 0, c, 1.0)
  h = jnp.where(v == r, (g - b) / safe, jnp.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
  h = jnp.where(c > 0, jnp.mod(h / 6.0, 1.0), 0.0)
  return h, s, v


def _hsv_to_rgb(h: jax.Array, s: jax.Array, v: jax.Array) -> jax.Array:
  k = jnp.mod(jnp.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0, 6.0)
  return v[..., None] - v[..., None] * s[..., None] * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def _jitter_clip(x: jax.Array, key: jax.Array, jitter: Sequence[float]) -> jax.Array:
  """float [T, H, W, 3] in [0, 255] -> jittered, one draw of factors for the clip."""
  brightness, contrast, saturation, hue, p = (float(v) for v in jitter)
  kp, kb, kc, ks, kh = jax.random.split(key, 5)

  def factor(k, amount):
    return jax.random.uniform(k, (), minval=max(0.0, 1.0 - amount), maxval=1.0 + amount)

  y = x
  if brightness > 0:
    y = jnp.clip(y * factor(kb, brightness), 0.0, 255.0)
  if contrast > 0:
    c = factor(kc, contrast)
    mean = _luma(y).mean(axis=(1, 2, 3), keepdims=True)  # per frame, as torchvision on [T, C, H, W]
    y = jnp.clip(c * y + (1.0 - c) * mean, 0.0, 255.0)
  if saturation > 0:
    s = factor(ks, saturation)
    y = jnp.clip(s * y + (1.0 - s) * _luma(y), 0.0, 255.0)
  if hue > 0:
    h, sat, val = _rgb_to_hsv(y / 255.0)
    h = jnp.mod(h + jax.random.uniform(kh, (), minval=-hue, maxval=hue), 1.0)
    y = jnp.clip(_hsv_to_rgb(h, sat, val) * 255.0, 0.0, 255.0)
  return jnp.where(jax.random.uniform(kp, ()) < p, y, x)


def jitter_and_normalize(video: jax.Array, key: jax.Array, *,
                         jitter: Sequence[float] | None = (0.4, 0.4, 0.4, 0.1, 0.8),
                         mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                         dtype=jnp.float32) -> jax.Array:
  """uint8 [B, T, H, W, 3] clips -> `dtype` [B, T, H, W, 3], colour-jittered per clip and normalised.

  Args:
    video: uint8 (or float in [0, 255]) clips.
    key: PRNG key (split per clip).
    jitter: (brightness, contrast, saturation, hue, p) as `transforms.color_jitter`; None = normalise only.
    mean, std: per-channel statistics in [0, 1] units (ImageNet by default), as `transforms.normalize`.
    dtype: output dtype (e.g. bfloat16 when the backbone computes in bf16).
  """
  x = video.astype(jnp.float32)
  if jitter is not None:
    keys = jax.random.split(key, x.shape[0])
    x = jax.vmap(lambda c, k: _jitter_clip(c, k, jitter))(x, keys)
  m = jnp.asarray(mean, jnp.float32)
  inv = 1.0 / jnp.asarray(std, jnp.float32)
  return ((x * (1.0 / 255.0) - m) * inv).astype(dtype)
