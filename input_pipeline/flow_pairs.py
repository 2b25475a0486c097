"""Frame pairs with known dense motion, to measure optical flow against ground truth.

The frames are sampled from a continuous texture (a sum of random plane waves), so a moved frame is exact (no
interpolation error): frame 0 is T(x), frame 1 is T(x - d(x)) for a motion d, and the flow from frame 0 to frame 1 at
pixel x is d(x) (x then y, in px, OpenCV's convention). Frames are rounded to uint8 like decoded video.

Motions (`MOTIONS`): a sub-pixel translation, a rotation and a zoom about the centre, and two independently moving
textured regions (a disc moving over a background that moves another way; the disc occludes part of the
background).
"""

from __future__ import annotations

import numpy as np

MOTIONS = ("translation", "rotation", "zoom", "two_regions")


def _texture(rng: np.random.Generator, size: float, waves: int = 24):
  """A smooth random texture T(x, y) -> 0..255, wavelengths size/40 .. size/6 (at least 4 px)."""
  lo = max(4.0, size / 40.0)
  hi = max(lo * 1.5, size / 6.0)
  wavelength = np.exp(rng.uniform(np.log(lo), np.log(hi), waves))
  angle = rng.uniform(0, 2 * np.pi, waves)
  kx, ky = 2 * np.pi / wavelength * np.cos(angle), 2 * np.pi / wavelength * np.sin(angle)
  phase = rng.uniform(0, 2 * np.pi, waves)
  amp = rng.uniform(0.5, 1.0, waves)
  amp *= 40.0 / np.sqrt(np.sum(amp ** 2) / 2)  # grey-level standard deviation 40 around 128

  def tex(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    v = np.zeros(np.shape(x), np.float64)
    for i in range(waves):
      v += amp[i] * np.sin(kx[i] * x + ky[i] * y + phase[i])
    return 128.0 + v

  return tex


def _quantise(v: np.ndarray) -> np.ndarray:
  return np.clip(np.round(v), 0, 255).astype(np.uint8)


def motion_pair(motion: str, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(frame0, frame1, flow): uint8 [H, W] frames and the true float32 [H, W, 2] flow from frame0 to frame1.

  Motion sizes scale with the frame (at 256 px short side: translation (2.6, -1.4) px, rotation 3 degrees, zoom 4%,
  regions (-3.1, 2.1) and (1.1, 0.6) px; at 64 px a quarter of that, the rotation and zoom stay).
  """
  if motion not in MOTIONS:
    raise ValueError(f"motion_pair: unknown motion {motion!r}; known: {', '.join(MOTIONS)}")
  rng = np.random.default_rng([seed, MOTIONS.index(motion)])
  s = min(h, w) / 256.0
  y, x = np.mgrid[0:h, 0:w].astype(np.float64)
  cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
  tex = _texture(rng, min(h, w))
  if motion == "translation":
    d = np.array([2.6, -1.4]) * s * rng.uniform(0.8, 1.2)
    fx, fy = np.full_like(x, d[0]), np.full_like(y, d[1])
  elif motion in ("rotation", "zoom"):
    if motion == "rotation":
      a = np.deg2rad(3.0)
      m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    else:
      m = np.eye(2) * 1.04
    # pixel x of frame 0 moves to m (x - c) + c in frame 1
    fx = m[0, 0] * (x - cx) + m[0, 1] * (y - cy) + cx - x
    fy = m[1, 0] * (x - cx) + m[1, 1] * (y - cy) + cy - y
  else:
    fg_tex = _texture(rng, min(h, w) / 2)
    d_bg = np.array([1.1, 0.6]) * s
    d_fg = np.array([-3.1, 2.1]) * s
    r = 0.28 * min(h, w)
    inside0 = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    frame0 = np.where(inside0, fg_tex(x, y), tex(x, y))
    inside1 = (x - d_fg[0] - cx) ** 2 + (y - d_fg[1] - cy) ** 2 < r * r
    frame1 = np.where(inside1, fg_tex(x - d_fg[0], y - d_fg[1]), tex(x - d_bg[0], y - d_bg[1]))
    flow = np.stack([np.where(inside0, d_fg[0], d_bg[0]), np.where(inside0, d_fg[1], d_bg[1])], axis=-1)
    return _quantise(frame0), _quantise(frame1), flow.astype(np.float32)
  frame0 = tex(x, y)
  # frame1(x + f(x)) = frame0(x): invert the motion to sample frame1 on its grid.
  if motion == "translation":
    sx, sy = x - fx, y - fy
  else:
    inv = np.linalg.inv(m)
    sx = inv[0, 0] * (x - cx) + inv[0, 1] * (y - cy) + cx
    sy = inv[1, 0] * (x - cx) + inv[1, 1] * (y - cy) + cy
  frame1 = tex(sx, sy)
  return _quantise(frame0), _quantise(frame1), np.stack([fx, fy], axis=-1).astype(np.float32)


def endpoint_error(flow: np.ndarray, truth: np.ndarray, margin: int = 0) -> float:
  """Mean |flow - truth| (Euclidean, px) over [..., H, W, 2], leaving out `margin` px at each border."""
  diff = np.linalg.norm(np.asarray(flow, np.float64) - np.asarray(truth, np.float64), axis=-1)
  if margin:
    diff = diff[..., margin:-margin, margin:-margin]
  return float(diff.mean())
