"""FedVSSL pretext tasks (CtP, VCOP, Speed) and their registry.

`PRETEXT_TASKS.get(name)` returns a task object (see `base.PretextTask`) with
`make_builder(task_config)`, `make_model(model_config, *, rngs)` and `loss_fn(model, batch, rng)`.
Registered names: "ctp", "vcop", "speed". The config keys each task reads are listed in the docstrings of
`pretext/ctp.py`, `pretext/vcop.py` and `pretext/speed.py`. `pretext/runner.py` is the runner "pretext" (one machine:
train, export, kNN), `pretext/federated.py` the `pretext` local trainer of a federated run; neither is imported here.
"""

from __future__ import annotations

from fedvssl_jax.pretext.base import ClipBuilder, PretextModel, PretextTask
from fedvssl_jax.pretext.ctp import CtPBuilder, CtPHead, CtPModel, CtPTask
from fedvssl_jax.pretext.ctp_patch_mask import patch_mask
from fedvssl_jax.pretext.speed import SpeedBuilder, SpeedHead, SpeedModel, SpeedTask
from fedvssl_jax.pretext.vcop import VCOPBuilder, VCOPHead, VCOPModel, VCOPTask
from fedvssl_jax.registry import Registry

PRETEXT_TASKS: Registry[PretextTask] = Registry("pretext task")
PRETEXT_TASKS.register("ctp")(CtPTask())
PRETEXT_TASKS.register("vcop")(VCOPTask())
PRETEXT_TASKS.register("speed")(SpeedTask())


def get_task(name: str) -> PretextTask:
  """The registered task `name` (KeyError listing the known names if unknown)."""
  return PRETEXT_TASKS.get(name)


__all__ = [
    "PRETEXT_TASKS", "get_task", "PretextTask", "PretextModel", "ClipBuilder", "patch_mask",
    "CtPTask", "CtPBuilder", "CtPHead", "CtPModel",
    "VCOPTask", "VCOPBuilder", "VCOPHead", "VCOPModel",
    "SpeedTask", "SpeedBuilder", "SpeedHead", "SpeedModel",
]
