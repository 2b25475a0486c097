"""Test setup: 8 emulated CPU devices, CPU only, absl flags parsed (grain's mp_prefetch reads them); `run_main` and
the flags that shrink the demo configs for the end-to-end tests (`from conftest import ...`)."""

import os
import subprocess
import sys

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


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Flags of the end-to-end tests: the test videos, a tiny backbone, kNN on small views, a short federated run.
DATA_SHRINK = ["--config.data.synthetic_preset=test", "--config.data.num_workers=0",
               "--config.model.backbone_kwargs.width_multiplier=0.0625"]
KNN_SHRINK = ["--config.knn.clip_len=4", "--config.knn.num_clips=1", "--config.knn.short_side=32",
              "--config.knn.crop_size=32", "--config.knn.batch_size=4"]
FEDERATED_SHRINK = ["--config.federated.num_rounds=2", "--config.federated.local_epochs=1",
                    "--config.federated.max_steps_per_round=2", "--config.federated.round_timeout_s=600"]


def run_main(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
  """Runs `python -m fedvssl_jax.main *args` in the repository on the CPU; fails the test (with the output's tail)
  when it exits non-zero."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "fedvssl_jax.main", *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  return proc


# End-to-end files that run whole recipes, several processes or a Flower deployment: the newest-stack CI leg
# (.ci/run, leg 2) leaves them out (`-m "not slow"`) to fit CI's time; leg 1 runs everything. The modules they
# exercise are also covered by the faster unit tests of the other files.
SLOW_FILES = {"test_layouts.py", "test_multiprocess.py", "test_goca_demo.py", "test_federated_demo.py",
              "test_flower_deployment.py"}


def pytest_collection_modifyitems(config, items):
  for item in items:
    if item.path.name in SLOW_FILES:
      item.add_marker(pytest.mark.slow)
