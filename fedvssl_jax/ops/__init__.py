"""Array operators used by the models (pure JAX, differentiable, jit-able)."""

from fedvssl_jax.ops.roi_align import roi_align

__all__ = ["roi_align"]
