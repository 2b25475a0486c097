"""Test setup: 8 emulated CPU devices, CPU only, absl flags parsed (grain's mp_prefetch reads them)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

from absl import flags  # noqa: E402

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_videos(tmp_path_factory):
  """A tiny synthetic video dataset (real H.264 mp4 files + annotations), made once per test session."""
  from input_pipeline import synthetic

  out = tmp_path_factory.mktemp("synthetic_videos")
  synthetic.make_dataset(out, **synthetic.TEST_PRESET)
  return out
