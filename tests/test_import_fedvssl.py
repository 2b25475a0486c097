"""scripts/import_fedvssl_checkpoint.py on synthetic FedVSSL round-*.npz files (tiny R3D-18, width 1/16)."""

import importlib.util
import os

import numpy as np
import pytest

from fedvssl_jax.models import export, torch_names

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts",
                      "import_fedvssl_checkpoint.py")
KWARGS = {"bn_epsilon": 1e-3, "width_multiplier": 0.0625}


@pytest.fixture(scope="module")
def script():
  spec = importlib.util.spec_from_file_location("import_fedvssl_checkpoint", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def checkpoint(script):
  """(our flat backbone, the CtP-ordered unnamed arrays incl. 6 head arrays) of a random tiny R3D-18."""
  template = export.backbone_template("r3d_18", **KWARGS)
  rng = np.random.default_rng(0)
  flat = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in template.items()}
  for k in flat:
    if k.endswith("/var"):
      flat[k] = np.abs(flat[k]) + 0.5
  state = torch_names.flat_to_torch_state(flat, "r3d_18", "ctp")
  names = script.ctp_r3d18_backbone_names()
  assert len(names) == 120 and sorted(names) == sorted(state)  # our order lists exactly CtP's backbone keys
  head = [rng.standard_normal(s).astype(np.float32) for s in ((32, 32, 2, 1, 1), (32,), (64, 800), (64,), (64, 64),
                                                              (64,))]
  return flat, [state[n] for n in names] + head


def _check_export(out, flat):
  meta, backbone, fc = export.load_state(out)
  assert meta["arch"] == "r3d_18" and meta["backbone_kwargs"]["bn_epsilon"] == 1e-3 and fc is None
  assert sorted(backbone) == sorted(flat)
  for k in flat:
    np.testing.assert_array_equal(backbone[k], flat[k], err_msg=k)


def test_import_plain_npz(script, checkpoint, tmp_path):
  flat, arrays = checkpoint
  src = tmp_path / "round-540.npz"
  np.savez(src, *arrays)
  out = tmp_path / "exported"
  assert script.main(["--src", str(src), "--out", str(out), "--backbone_kwargs", '{"width_multiplier": 0.0625}']) == 0
  _check_export(out, flat)


def test_pickled_parameters_refused_without_flag(script, checkpoint, tmp_path, capsys):
  from flwr.common import ndarrays_to_parameters

  flat, arrays = checkpoint
  src = tmp_path / "round-540-pickled.npz"
  np.savez(src, ndarrays_to_parameters(arrays))  # what the FedVSSL server writes: a pickled Parameters
  out = tmp_path / "exported"
  assert script.main(["--src", str(src), "--out", str(out), "--backbone_kwargs", '{"width_multiplier": 0.0625}']) == 2
  assert "--allow_pickle" in capsys.readouterr().err and not out.exists()
  with pytest.warns(UserWarning, match="unpickling"):
    assert script.main(["--src", str(src), "--out", str(out), "--allow_pickle",
                        "--backbone_kwargs", '{"width_multiplier": 0.0625}']) == 0
  _check_export(out, flat)


def test_wrong_order_or_too_few_arrays_is_an_error(script, checkpoint, tmp_path):
  _, arrays = checkpoint
  swapped = list(arrays)
  swapped[0], swapped[1] = swapped[1], swapped[0]
  with pytest.raises(ValueError, match="array 0 .*backbone.stem.conv.weight"):
    script.backbone_state_dict(swapped, "x.npz")
  with pytest.raises(ValueError, match="119 arrays"):
    script.backbone_state_dict(arrays[:119], "x.npz")
  single = tmp_path / "single.npz"
  np.savez(single, np.zeros(3))
  with pytest.raises(ValueError, match="single plain array"):
    script.read_fedvssl_npz(str(single))
