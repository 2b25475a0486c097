"""`config.task.device_augment`: the pretext builders end at uint8 clips and the jitted step jitters + normalises them
(`PretextTask.train_loss_fn`, `fedvssl_jax.ops.device_augment`)."""

import json

import jax
import numpy as np
import pytest

from conftest import DATA_SHRINK, run_main
from fedvssl_jax.pretext import PRETEXT_TASKS
from input_pipeline import transforms

CTP_TASK = dict(name="ctp", clip_len=4, crop_size=32, short_side_sizes=(32, 40), strides=(1, 2),
                patch_mask=dict(scales=(6, 8, 12)), hue_saturation=(0.0, 12.0, 0.1),
                dynamic_brightness=(0.0, 30.0), dynamic_contrast=(0.0, 0.12))
VCOP_TASK = dict(name="vcop", clip_len=2, tuple_len=3, interval=1, resize_wh=(40, 32), crop_size=32)


class _Frames:
  """A `ClipReader` over random frames in memory."""

  def __init__(self, seed, n=12, h=36, w=48):
    self.frames = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    self.num_frames = n

  def read(self, indices):
    return self.frames[np.asarray(indices).reshape(-1)]


def _host_normalize(video):
  """uint8 [..., H, W, 3] -> the builders' float32 normalisation (`transforms.normalize`, ImageNet statistics)."""
  return transforms.normalize(video.reshape((-1,) + video.shape[-3:])).reshape(video.shape)


def _batch(task, task_config, seeds):
  builder = task.make_builder(task_config)
  examples = [builder.build(_Frames(s), {"label": 0}, np.random.default_rng(s)) for s in seeds]
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


@pytest.mark.parametrize("task_config", [CTP_TASK, VCOP_TASK], ids=["ctp", "vcop"])
def test_uint8_builder_is_the_float_builder_before_normalisation(task_config):
  task = PRETEXT_TASKS.get(task_config["name"])
  host = _batch(task, task_config, [0, 1])  # CtP: colour ops at probability 0
  dev = _batch(task, dict(task_config, device_augment=True), [0, 1])
  assert dev["video"].dtype == np.uint8 and host["video"].dtype == np.float32
  assert task.batch_spec(dict(task_config, device_augment=True))["video"][1] == np.uint8
  for k in host:
    if k != "video":
      np.testing.assert_array_equal(dev[k], host[k])
  np.testing.assert_allclose(_host_normalize(dev["video"]), host["video"], atol=1e-6)
  with pytest.raises(ValueError, match="device_augment must be True or False"):
    task.make_builder(dict(task_config, device_augment="yes"))


def _step(task, task_config, batch, loss_fn):
  import optax
  from flax import nnx

  from fedvssl_jax.core import mesh as mesh_lib
  from fedvssl_jax.core import state as state_lib

  model_config = dict(arch="r3d_18", backbone_kwargs=dict(width_multiplier=0.0625), clip_len=task_config["clip_len"],
                      fc_init="fan_in")
  model = task.make_model(model_config, rngs=nnx.Rngs(0))
  model.train()
  mesh = mesh_lib.make_mesh([("data", 1)])  # one device: compiles faster than the test session's 8
  tx = optax.sgd(0.1)
  graphdef, state = state_lib.create_train_state(model, tx, mesh)
  step = state_lib.make_train_step(graphdef, tx, loss_fn, mesh, donate=False)
  new_state, metrics = step(state, mesh_lib.put_batch(batch, mesh), jax.random.key(3))
  return jax.device_get(metrics), jax.device_get(new_state.params)


def test_uint8_ctp_step_with_device_augment_at_jitter_zero_equals_the_host_normalised_step():
  task = PRETEXT_TASKS.get("ctp")
  dev_config = dict(CTP_TASK, device_augment=True, device_jitter=(0.0, 0.0, 0.0, 0.0, 1.0))
  u8 = _batch(task, dev_config, [0, 1])
  host = dict(u8, video=_host_normalize(u8["video"]))
  m_host, p_host = _step(task, CTP_TASK, host, task.train_loss_fn(CTP_TASK))
  m_dev, p_dev = _step(task, dev_config, u8, task.train_loss_fn(dev_config))
  assert np.isfinite(m_host["loss"]) and m_host["grad_norm"] > 0
  for k in ("loss", "loss_ctr", "loss_size", "grad_norm"):
    np.testing.assert_allclose(m_dev[k], m_host[k], rtol=1e-4, atol=1e-6, err_msg=k)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), p_dev, p_host)


def test_device_video_fn_jitters_vcop_tuples_and_normalises_for_eval():
  from fedvssl_jax.pretext.base import device_video_fn

  task = PRETEXT_TASKS.get("vcop")
  cfg = dict(VCOP_TASK, device_augment=True, device_jitter=(0.4, 0.4, 0.4, 0.1, 1.0))
  u8 = _batch(task, cfg, [0, 1])["video"]  # [B, tuple, T, H, W, 3]
  builder = task.make_builder(cfg)
  host = _host_normalize(u8)
  evaluated = np.asarray(device_video_fn(builder, cfg, train=False)(u8, None))
  np.testing.assert_allclose(evaluated, host, atol=1e-5)
  jittered = np.asarray(device_video_fn(builder, cfg, train=True)(u8, jax.random.key(0)))
  assert jittered.shape == host.shape and np.abs(jittered - host).mean() > 0.05
  assert device_video_fn(task.make_builder(VCOP_TASK), VCOP_TASK, train=True) is None  # switch off: host path
  with pytest.raises(ValueError, match="device_jitter must be"):
    task.train_loss_fn(dict(cfg, device_jitter=(0.1, 0.1)))


def test_ctp_demo_trains_with_device_augment(synthetic_videos, tmp_path):
  workdir = tmp_path / "ctp_dev"
  run_main("--config=configs/ctp.py:demo", f"--workdir={workdir}", f"--config.data.cache_dir={synthetic_videos}",
           *DATA_SHRINK, "--config.task.device_augment=True", "--config.batch_size=4", "--config.num_steps=3",
           "--config.log_every=1", "--config.knn.enabled=False", "--config.task.clip_len=8",
           "--config.task.crop_size=32", "--config.task.short_side_sizes=(32,40)",
           "--config.task.patch_mask.scales=(6,8,12)")
  config = json.loads((workdir / "config.json").read_text())
  assert config["task"]["device_augment"] is True
  losses = [json.loads(line)["loss"] for line in (workdir / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line]
  assert len(losses) >= 3 and all(np.isfinite(losses))
  results = json.loads((workdir / "results.json").read_text())
  assert results["steps"] == 3
  assert 0.0 <= results["ctp_trajectory_iou"]["pretrained"]["mean"] <= 1.0  # evaluated from uint8 clips


class _ThreadsBuilder:
  """Reports the OpenCV thread count of the process that builds the example (a grain worker)."""

  min_frames = 1

  def build(self, reader, record, rng):
    import cv2

    return {"threads": np.int32(cv2.getNumThreads())}

  __call__ = build


def test_grain_workers_run_opencv_on_one_thread(synthetic_videos):
  from input_pipeline import pipeline
  from input_pipeline.annotations import VideoRecord

  paths = sorted(synthetic_videos.rglob("*.mp4"))[:4]
  records = [VideoRecord(path=str(p), label=0, name=p.stem) for p in paths]
  it = iter(pipeline.make_train_dataset(records, _ThreadsBuilder(), batch_size=2, seed=0, num_workers=1))
  try:
    assert next(it)["threads"].tolist() == [1, 1]
  finally:
    it.close()
