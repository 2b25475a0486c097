"""GOCA (Coskun et al., ECCV 2022): two-stream RGB + optical-flow SwAV with a cross-stream Sinkhorn prior.

Submodules:
  model       `GOCAModel`: RGB and flow backbones, projection head(s), shared prototypes C.
  larc        apex-LARC transform `larc.larc`, `goca_optimizer`, `goca_schedule`.
  prototypes  hyperspherical prototypes (`make_prototypes`, `load_prototypes`, `separation_loss`).
  data        `GOCAClipBuilder`: temporal multi-crop RGB + flow clips for the grain pipeline.
  runner      the runner "goca": flow, prototypes, training, export, kNN (`train_and_evaluate`).
  federated   registers the `goca` local trainer of a federated run.
The loss and Sinkhorn live in `fedvssl_jax.losses.goca`. Submodules are imported lazily so that importing
`fedvssl_jax.goca.larc` does not pull in the backbones or the input pipeline.
"""

import importlib

_SUBMODULES = ("model", "larc", "prototypes", "data")
_EXPORTS = {
    "GOCAModel": "model",
    "goca_optimizer": "larc",
    "goca_schedule": "larc",
    "make_prototypes": "prototypes",
    "load_prototypes": "prototypes",
    "separation_loss": "prototypes",
    "GOCAClipBuilder": "data",
}


def __getattr__(name):
  if name in _EXPORTS:
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, name)
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
