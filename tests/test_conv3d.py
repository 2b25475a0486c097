"""The CPU path of `layers.conv_general_dilated`: 3-D convolutions as sums of per-frame 2-D convolutions.

It must equal `lax.conv_general_dilated` (values and gradients) for every kernel / stride / padding the backbones
use, and must actually be taken on CPU (a silently skipped fast path would only show as slow demos).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fedvssl_jax.models import layers

# (input [N, T, H, W, Cin], kernel (kT, kH, kW), Cout, strides, padding): R3D stem, basic block, downsample,
# R(2+1)D spatial / temporal factors, S3D-style, CtP's head (T' x 1 x 1, VALID), odd sizes.
CASES = [
    ((2, 8, 20, 20, 3), (3, 7, 7), 4, (1, 2, 2), ((1, 1), (3, 3), (3, 3))),
    ((2, 8, 10, 10, 4), (3, 3, 3), 5, (1, 1, 1), ((1, 1), (1, 1), (1, 1))),
    ((2, 8, 10, 10, 4), (3, 3, 3), 6, (2, 2, 2), ((1, 1), (1, 1), (1, 1))),
    ((2, 7, 9, 11, 4), (1, 1, 1), 6, (2, 2, 2), ((0, 0), (0, 0), (0, 0))),
    ((2, 6, 10, 10, 4), (1, 3, 3), 5, (1, 2, 2), ((0, 0), (1, 1), (1, 1))),
    ((2, 6, 5, 5, 4), (3, 1, 1), 5, (2, 1, 1), ((1, 1), (0, 0), (0, 0))),
    ((2, 2, 6, 6, 4), (2, 1, 1), 3, (1, 1, 1), "VALID"),
    ((1, 5, 7, 7, 2), (3, 3, 3), 2, (1, 1, 1), ((2, 0), (1, 2), (0, 1))),
]


def _native(x, w, strides, padding):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def _ours(x, w, strides, padding):
  dims = lax.conv_dimension_numbers(x.shape, w.shape, ("NDHWC", "DHWIO", "NDHWC"))
  return layers.conv_general_dilated(x, w, strides, padding, dimension_numbers=dims)


def _conv_ranks(fn, *args):
  """Spatial ranks of every convolution in `fn`'s jaxpr (forward and backward)."""
  return [eqn.invars[0].aval.ndim - 2 for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns
          if eqn.primitive.name == "conv_general_dilated"]


@pytest.mark.parametrize("shape,kernel,cout,strides,padding", CASES)
def test_per_frame_conv_equals_native(monkeypatch, shape, kernel, cout, strides, padding):
  monkeypatch.setenv(layers.CONV3D_ENV, "per_frame")
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, shape)
  w = jax.random.normal(kw, (*kernel, shape[-1], cout)) * 0.2
  want = _native(x, w, strides, padding)
  got = _ours(x, w, strides, padding)
  assert got.shape == want.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)

  def loss(f):
    return lambda x, w: jnp.sum(jnp.sin(f(x, w, strides, padding)))

  gx_want, gw_want = jax.grad(loss(_native), argnums=(0, 1))(x, w)
  gx_got, gw_got = jax.grad(loss(_ours), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(np.asarray(gx_got), np.asarray(gx_want), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(gw_got), np.asarray(gw_want), rtol=1e-4, atol=1e-4)


def test_path_taken_on_cpu_and_native_switch(monkeypatch):
  """Default ("auto") on the CPU backend: only 2-D convolutions in the program; "native": one 3-D convolution."""
  assert jax.default_backend() == "cpu"
  x = jnp.ones((1, 4, 8, 8, 2))
  w = jnp.ones((3, 3, 3, 2, 3))
  pad = ((1, 1), (1, 1), (1, 1))
  monkeypatch.delenv(layers.CONV3D_ENV, raising=False)
  assert set(_conv_ranks(lambda x, w: _ours(x, w, (1, 1, 1), pad), x, w)) == {2}
  monkeypatch.setenv(layers.CONV3D_ENV, "native")
  assert _conv_ranks(lambda x, w: _ours(x, w, (1, 1, 1), pad), x, w) == [3]
  monkeypatch.setenv(layers.CONV3D_ENV, "fast")
  with pytest.raises(ValueError, match="FEDVSSL_CONV3D"):
    _ours(x, w, (1, 1, 1), pad)


def test_unsupported_cases_fall_back_to_native(monkeypatch):
  """Dilated or grouped 3-D convolutions, and 2-D ones, go to lax unchanged (and still give its answer)."""
  monkeypatch.setenv(layers.CONV3D_ENV, "per_frame")
  x = jax.random.normal(jax.random.key(1), (1, 6, 8, 8, 4))
  w = jax.random.normal(jax.random.key(2), (3, 3, 3, 2, 4))
  dims = lax.conv_dimension_numbers(x.shape, w.shape, ("NDHWC", "DHWIO", "NDHWC"))
  pad = ((1, 1), (1, 1), (1, 1))
  grouped = lambda x, w: layers.conv_general_dilated(x, w, (1, 1, 1), pad, dimension_numbers=dims,
                                                     feature_group_count=2)
  assert _conv_ranks(grouped, x, w) == [3]
  want = lax.conv_general_dilated(x, w, (1, 1, 1), pad, dimension_numbers=dims, feature_group_count=2)
  np.testing.assert_allclose(np.asarray(grouped(x, w)), np.asarray(want), rtol=1e-5, atol=1e-5)
  w4 = jax.random.normal(jax.random.key(3), (3, 3, 3, 4, 4))
  dims4 = lax.conv_dimension_numbers(x.shape, w4.shape, ("NDHWC", "DHWIO", "NDHWC"))
  f = lambda x, w: layers.conv_general_dilated(x, w, (1, 1, 1), pad, rhs_dilation=(2, 1, 1), dimension_numbers=dims4)
  assert _conv_ranks(f, x, w4) == [3]
  x2 = jnp.ones((1, 8, 8, 4))
  w2 = jnp.ones((3, 3, 4, 4))
  dims2 = lax.conv_dimension_numbers(x2.shape, w2.shape, ("NHWC", "HWIO", "NHWC"))
  g = lambda x, w: layers.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims2)
  assert _conv_ranks(g, x2, w2) == [2]
