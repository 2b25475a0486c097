"""Helpers shared by the `configs/*.py` files.

Each config file has `get_config(arg)`; `arg` is the text after the colon of `--config=configs/x.py:arg`, parsed by
`parse_arg` in the style of big_vision: comma-separated flags and `key=value` pairs, e.g. `demo,federated` or
`demo,task=vcop`.
"""

from __future__ import annotations

import ast
from typing import Any

import ml_collections

from fedvssl_jax.errors import UserError


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses a config variant string against a set of known keys with defaults.

  Args:
    arg: e.g. "demo,federated" or "demo,task=vcop". Bare words set a boolean key to True.
    **defaults: every accepted key and its default; the type of a value given as `key=value` follows the default.

  Returns:
    A ConfigDict with every key of `defaults`.

  Raises:
    ValueError: for an unknown key, naming it and the accepted ones.
  """
  result = ml_collections.ConfigDict(dict(defaults))
  if not arg:
    return result
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, sep, value = item.partition("=")
    if key not in defaults:
      known = ", ".join(sorted(defaults))
      raise ValueError(f"unknown config variant {key!r} in {arg!r}; known: {known}")
    if not sep:
      result[key] = True
      continue
    default = defaults[key]
    if isinstance(default, bool):
      result[key] = value.lower() in ("1", "true", "yes", "on")
    elif isinstance(default, (int, float)):
      result[key] = type(default)(value)
    elif isinstance(default, str):
      result[key] = value
    else:
      result[key] = ast.literal_eval(value)
  return result


class ConfigError(UserError, ValueError):
  """A config value that cannot work (a missing data root, a wrong path); `main` prints it as one line."""


def data_config(dataset: str) -> ml_collections.ConfigDict:
  """The `config.data` block shared by every recipe (see fedvssl_jax/datasets.py for each key)."""
  return ml_collections.ConfigDict(dict(
      source=dataset,          # ucf101 | hmdb51 | kinetics400 | json | synthetic | tfds
      root="",                 # data root; required for real datasets
      format="official",       # official (video files + the dataset's split lists) | ctp (zips + CtP annotations)
      split=1,                 # official split index (UCF-101 / HMDB-51)
      train_annotations="",    # source=json: annotation files (CtP JSON / txt / Kinetics CSV)
      test_annotations="",
      path_template="",        # source=json: how a name becomes a path, e.g. "videos/{name}.mp4" (default by format)
      synthetic_preset="demo",  # source=synthetic
      cache_dir="",            # source=synthetic: where the videos are made (default ~/.cache/fedvssl_jax/synthetic)
      with_flow=False,         # two-stream runs: attach the optical-flow video of each record
      flow_template="",        # flow path template; default: the video path with videos/ -> videos_flow/
      num_workers=2,           # grain worker processes (0 = in-process)
      # source=tfds: a prepared TFDS video dataset in ArrayRecord format (scripts/prepare_dataset.py --tfds, or
      # your own, e.g. "ucf101"), read without TensorFlow, decoding only the frames a clip needs
      tfds_name="",            # e.g. "fedvssl_videos/ucf101" ("fedvssl_videos/synthetic*" is prepared on first use)
      data_dir="",             # TFDS data dir ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets)
      train_split="train",
      test_split="test",
      tfds_video_key="video",  # features: encoded frames, label, flow frames ("" = "flow" when with_flow)
      tfds_label_key="label",
      tfds_flow_key="",
      percent_per_class=1.0,   # low-data runs: keep this fraction of each class's train videos (GOCA percent_per_cls)
      percent_seed=0,          # seed of that draw
  ))


def add_run_settings(config: ml_collections.ConfigDict, log_every: int = 20, checkpoint_every: int = 1000) -> None:
  """The run-control keys every recipe has: logging / checkpoint intervals, early stop, JAX settings."""
  config.log_every = log_every                # steps between metric lines / TensorBoard points
  config.checkpoint_every = checkpoint_every  # steps between Orbax checkpoints (and one at the end)
  config.keep_checkpoints = 3
  config.max_steps_this_run = -1              # > 0: stop (with a checkpoint) after this many steps this run
  config.compilation_cache_dir = ""           # "" = ~/.cache/fedvssl_jax/jax_compilation_cache
  config.matmul_precision = ""                # e.g. "highest" for parity checks
  config.compute_dtype = "float32"            # "bfloat16": backbone compute in bf16, params / optimiser state float32
  config.prefetch_to_device = 2               # host batches put on the devices ahead of the step (0 = none)


# Test-time views of the synthetic demo videos (kNN, fine-tuning test, linear-probe features): 2 uniform 8-frame clips
# at stride 2, centre crop 64 of short side 64.
DEMO_EVAL_VIEWS = dict(clip_len=8, stride=2, num_clips=2, short_side=64, crop_size=64, batch_size=16)
# Test-time views of the real datasets (fine-tuning test, linear-probe features): 10 uniform 16-frame clips at stride
# 2, centre crop 112 of short side 128, 8 videos per batch.
TEST_VIEWS = dict(clip_len=16, stride=2, num_clips=10, short_side=128, crop_size=112, three_crop=False, batch_size=8)


def knn_config(batch_size: int = 8) -> ml_collections.ConfigDict:
  """`config.knn`: kNN retrieval after pretraining (fedvssl_jax/evaluation/knn.py)."""
  return ml_collections.ConfigDict(dict(
      enabled=True, clip_len=16, stride=2, num_clips=5, short_side=112, crop_size=112, three_crop=True,
      batch_size=batch_size, mean_center=False,
      clip_placement="ctp",  # "goca": 5 clips from frame 0 at a ceil step (GOCA's get_clips_uniformly)
      data=ml_collections.ConfigDict(),  # empty: the run's own data (train split = gallery, test = queries)
  ))


def pretext_config(task: str, demo: bool) -> ml_collections.ConfigDict:
  """The shared part of the CtP / VCOP / Speed recipes (R3D-18, 16x112x112, SGD, wd 1e-4, clip 40, step lr).

  The original K400 runs: global batch 32 (4 per GPU x 8), 90 epochs, lr x0.1 at epochs 30 and 60, BN eps 1e-3.
  """
  config = ml_collections.ConfigDict()
  config.runner = "pretext"
  config.seed = 0
  config.mesh = [("data", -1)]
  config.data = data_config("synthetic" if demo else "kinetics400")
  if not demo:
    config.data.format = "ctp"
  config.model = ml_collections.ConfigDict(dict(
      arch="r3d_18", backbone_kwargs=ml_collections.ConfigDict(dict(width_multiplier=1.0, bn_epsilon=1e-3))))
  config.task = ml_collections.ConfigDict(dict(name=task, clip_len=16, crop_size=112))
  config.batch_size = 32
  config.num_epochs = 90
  config.num_steps = -1
  config.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=1e-4, grad_clip_norm=40.0,
      schedule="step", step_epochs=(30, 60), step_factor=0.1, warmup_epochs=0.0, warmup_start_lr=0.0, final_lr=0.0))
  config.knn = knn_config()
  config.knn.enabled = demo  # on real data, evaluate with the knn runner on UCF-101 / HMDB-51 instead
  add_run_settings(config, log_every=50)
  if demo:
    config.data.num_workers = 1
    config.model.backbone_kwargs.width_multiplier = 0.125
    config.task.update(clip_len=8, crop_size=64)
    config.batch_size = 16
    config.num_epochs = 4
    config.optim.update(lr=0.05, schedule="warmup_cosine", warmup_epochs=0.5, final_lr=0.0)
    config.knn.update(DEMO_EVAL_VIEWS, three_crop=False)
    config.log_every = 5
    config.checkpoint_every = 50
  # Videos with fewer frames than one clip are replaced by the pipeline (counted as num_replaced in metrics.jsonl and
  # results.json) instead of being clamped to repeated frames; 1 accepts any video.
  config.task.min_frames = config.task.clip_len
  _TASK_RECIPES[task](config, demo)
  return config


def _ctp_recipe(config: ml_collections.ConfigDict, demo: bool) -> None:
  """CtP: 16 frames at stride 1..5 with jitter, short side {112,128,144}, crop 112, flip, PatchMask; lr 0.01."""
  config.task.update(dict(strides=(1, 2, 3, 4, 5), temporal_jitter=True, short_side_sizes=(112, 128, 144),
                          flip_prob=0.5))
  config.task.patch_mask = ml_collections.ConfigDict(dict(
      num_rois=3, scales=(16, 24, 28, 32, 48, 64), ratios=(0.5, 0.67, 0.75, 1.0, 1.33, 1.5, 2.0), scale_jitter=0.18,
      key_frame_probs=(0.5, 0.3, 0.2), loc_velocity=3.0, size_velocity=0.025, label_prob=0.8,
      patch_source="clip", noise_block=4))
  config.model.fc_init = "ctp"  # the fcs' init: "ctp" (N(0, 0.001), the original) | "fan_in" (pretext/ctp.py)
  if demo:
    config.task.update(dict(short_side_sizes=(64, 72, 80), strides=(1, 2, 3)))
    # Patch sizes and speeds scaled with the 64 px crop (the originals are for 112 px).
    config.task.patch_mask.update(dict(scales=(9, 14, 16, 18, 27, 36), loc_velocity=1.7))
    # Three departures from CtP that make the task learnable in a CPU demo at every seed (docs/pretext.md):
    # - a patch cut from the synthetic videos' smooth backgrounds is nearly invisible, so the demo pastes
    #   colour-block textures instead (same trajectories, alphas, visibility and targets);
    # - CtP's N(0, 0.001) init of both fcs is a saddle (each fc's gradient scales with the other's tiny weights);
    #   fc_init="fan_in" (He-normal fc1, zero fc2) starts off it;
    # - SGD (and at some seeds AdamW at 2e-3) falls back to the zero predictor; AdamW at 5e-4 did not at 3 seeds.
    config.model.fc_init = "fan_in"
    config.task.patch_mask.patch_source = "noise"
    config.num_epochs = 20
    config.optim.update(dict(name="adamw", lr=0.0005))
  # CtP's forward_test after pretraining: trajectory IoU on one clip of every test video -> results.json.
  config.trajectory_iou = ml_collections.ConfigDict(dict(enabled=True, batch_size=8))


def _vcop_recipe(config: ml_collections.ConfigDict, demo: bool) -> None:
  """VCOP: 3 clips of 16 frames 8 apart, resize 171x128, crop 112; lr 0.001."""
  config.task.update(dict(tuple_len=3, interval=8, resize_wh=(171, 128)))
  config.optim.lr = 0.001
  if demo:
    config.task.update(dict(interval=4, resize_wh=(80, 64)))
    config.optim.lr = 0.02


def _speed_recipe(config: ml_collections.ConfigDict, demo: bool) -> None:
  """Speed: strides [-4,-2,-1,0,1,2,4] (7 classes), short side {112,128,144}, flip, crop 112; lr 0.01."""
  config.task.update(dict(strides=(-4, -2, -1, 0, 1, 2, 4), short_side_sizes=(112, 128, 144), flip_prob=0.5))
  if demo:
    config.task.update(dict(short_side_sizes=(64, 72, 80)))


_TASK_RECIPES = {"ctp": _ctp_recipe, "vcop": _vcop_recipe, "speed": _speed_recipe}


def federated_config(demo: bool, strategy: str = "fedvssl", alpha: float = 0.9, beta: int = 1
                     ) -> ml_collections.ConfigDict:
  """`config.federated`: FedVSSL's setting (fedvssl.md): 100 non-IID K400 clients, 5 per round, 1 local epoch, 540
  rounds, aggregation alpha / beta. Clients read `client_dist{k}.json` from `partitions.dir`."""
  fed = ml_collections.ConfigDict(dict(
      trainer="pretext",
      trainer_module="",
      strategy=strategy,          # fedvssl (backbone-only client update) | fedavg (full model) | flower_baseline
      alpha=float(alpha),         # weight of the loss-based average (softmax of -loss)
      beta=int(beta),             # 1: 0.5 moving average with the previous global model
      ema_factor=0.5,
      mix_coeff=0.9,              # flower_baseline only (reproduces the Flower baseline's list concatenation)
      num_clients=100,
      ray_num_cpus=0,             # CPUs given to Ray in the in-process simulation; 0 = those this process may use
      num_rounds=540,
      fraction_train=0.05,
      min_train_nodes=2,
      min_available_nodes=0,
      local_epochs=1,
      max_steps_per_round=-1,
      round_timeout_s=7200.0,     # includes each client's JAX compile in its first round (docs/federated.md)
      wait_timeout_s=600.0,       # how long to wait for min_available_nodes to connect / partition-id replies
      progress_every_s=5.0,       # server: seconds between "waiting for N nodes" / "k/n clients replied" lines
      sampling_seed=0,
      client_resources=ml_collections.ConfigDict(dict(num_cpus=2, num_gpus=1.0)),
      # dir: FedVSSL client_dist{k}.json files; without it the train split is cut by `scheme` (FedVSSL's non-IID
      # sliding window; iid with seed 7 as published) and the files are written to <workdir>/partitions/.
      partitions=ml_collections.ConfigDict(dict(dir="", scheme="fedvssl-noniid", seed=7, alpha=0.5,
                                                classes_per_side=0)),
  ))
  if demo:
    fed.partitions.update(dict(scheme="iid", seed=0))  # 3 clients of a 10-class set: the demos' measured split
    fed.update(dict(num_clients=3, num_rounds=3, fraction_train=1.0, min_train_nodes=2, local_epochs=2,
                    round_timeout_s=1800.0))
    fed.client_resources.update(dict(num_cpus=1, num_gpus=0.0))
  return fed


def goca_config(demo: bool) -> ml_collections.ConfigDict:
  """GOCA (goca.md): two-stream R(2+1)D-18 (2048-d pooled), fixed hyperspherical prototypes K=1000 x 128, views
  2 x 32 + 4 x 16 frames at stride 2, prior-guided Sinkhorn (epsilon 0.02 / epsilon2 0.03 as the released run), LARC
  SGD with peak lr 0.15 * sqrt(global batch), warm-up 10 epochs then cosine to 0.0006, 500 epochs, batch 640."""
  config = ml_collections.ConfigDict()
  config.runner = "goca"
  config.seed = 31
  config.mesh = [("data", -1)]
  config.data = data_config("synthetic" if demo else "kinetics400")
  config.data.with_flow = True
  config.flow = ml_collections.ConfigDict(dict(
      extract_missing=demo,  # make missing flow videos before training (always on for the synthetic demo)
      short_side=256,        # GOCA computed flow at 256 px
      bound=20.0,            # +-px range of the 8-bit flow encoding (GOCA: 20 at 256 px)
      backend="auto",        # TV-L1: "jax" (batched, input_pipeline/tvl1.py), "opencv", or "auto" (jax on an
                             # accelerator, else the faster on a CPU: input_pipeline.flow.CPU_BACKEND)
      batch_size=0,          # frame pairs per call of the jax backend; 0 = flow.default_batch_size(H, W)
      workers=0,             # processes of the opencv backend; 0 = every core
      # Dual TV-L1 (OpenCV's defaults; other fields of input_pipeline.flow.TVL1Params keep their defaults too).
      tvl1=ml_collections.ConfigDict(dict(nscales=5, warps=5, inner_iterations=30, outer_iterations=10)),
  ))
  config.model = ml_collections.ConfigDict(dict(
      arch="r2plus1d_18",
      # BN eps 1e-5 for both archs: GOCA's my_r2plus1d_18.py and s3dg.py use nn.BatchNorm3d's default (our S3D's
      # own default is the TF port's 1e-3). For arch="s3d" also set pool_size=None (global pool, 1024-d).
      backbone_kwargs=ml_collections.ConfigDict(dict(width_multiplier=1.0, pool_size=(1, 2, 2), bn_epsilon=1e-5)),
      num_prototypes=1000, embed_dim=128, hidden_dim=2048, share_head=True,
      prototypes_path="",         # .npy from scripts/make_prototypes.py; "" = make them (cached) on first use
      prototype_steps=50000,      # optimisation steps when making them
      learn_prototypes=False,     # fixed, as GOCA; True trains them with the separation loss
      separation_weight=1.0,
  ))
  config.views = ml_collections.ConfigDict(dict(
      clip_lens=(32, 16), num_clips=(2, 4), stride=2, min_start_distance=16, crop_size=112,
      short_side_range=(128, 160), flip_p=0.5, jitter=(0.4, 0.4, 0.2, 0.1, 0.8), grayscale_p=0.2,
  ))
  config.goca = ml_collections.ConfigDict(dict(
      assign_views=(0, 1), temperature=0.1, epsilon=0.02, epsilon2=0.03, sinkhorn_iters=3,
      use_prior=True, prior_start_epoch=0, prior_sign=1, divide_twice=False,
      modality="rgb_flow",  # GOCA's --video_channels: rgb_flow | rgb | flow (single-stream SwAV, fixed prototypes)
      merge="prior",        # --video_modal_merge_algo: prior (PriorRgbFlow, GOCA) | avg (AvgRgbFlow)
      sinkhorn_cycle=1,     # --sinkhorn_cycle: rounds of prior-guided Sinkhorn (1 or 2 in GOCA)
      queue_length=0,          # SwAV queue of past embeddings (global rows; 0 = off, as GOCA's script)
      epoch_queue_starts=10.0,  # the queue joins the Sinkhorn step from this epoch on (once it is full)
  ))
  config.batch_size = 640
  config.num_epochs = 500
  config.num_steps = -1
  config.optim = ml_collections.ConfigDict(dict(
      base_lr=0.15, start_warmup=0.3, final_lr=0.0006, warmup_epochs=10.0, momentum=0.9, weight_decay=1e-4,
      trust=0.001))
  config.knn = knn_config()
  config.knn.enabled = demo
  # GOCA's KNN_emb_prot / KNN_all (model_aug.py forward_head): also retrieve with the L2-normalised projection ("head")
  # or the prototype scores ("prototypes") of the pretrained model, besides the backbone feature (the protocol).
  config.knn.feature = "backbone"
  add_run_settings(config, log_every=20)
  if demo:
    config.data.num_workers = 1
    # A coarse single-scale TV-L1 at 48 px keeps the first demo run's flow extraction to about a minute.
    # The bound scaled with the frame size (20 px at 256 -> 3.75 at 48), a little tighter so that the synthetic
    # videos' slowest motions (~0.3 px per frame at 48 px) span ~13 of the 256 levels instead of ~2.
    config.flow.update(dict(short_side=48, workers=2, bound=3.0))
    config.flow.tvl1.update(dict(nscales=1, warps=1, inner_iterations=10, outer_iterations=2))
    config.model.backbone_kwargs.width_multiplier = 0.125
    config.model.update(dict(num_prototypes=64, embed_dim=32, hidden_dim=128, prototype_steps=300))
    config.views.update(dict(clip_lens=(8, 4), num_clips=(2, 2), stride=2, min_start_distance=8, crop_size=48,
                             short_side_range=(48, 56)))
    # No flip: a mirrored synthetic video is another class (move_left <-> move_right, rotate_cw <-> rotate_ccw).
    config.views.flip_p = 0.0
    config.batch_size = 8
    config.num_epochs = 2
    # 74 steps instead of ~10^5: LARC's per-step relative update (lr x trust) is raised 10x, and a queue of the last
    # 96 embeddings (12 batches) joins the Sinkhorn step after 0.3 epochs so that 8-clip batches are not split over
    # 64 prototypes on their own (SwAV's remedy for small batches).
    config.optim.update(dict(base_lr=0.05, start_warmup=0.02, final_lr=0.001, warmup_epochs=0.3, trust=0.01))
    config.goca.update(dict(epsilon=0.05, epsilon2=0.03, queue_length=96, epoch_queue_starts=0.3))
    config.knn.update(DEMO_EVAL_VIEWS, short_side=48, crop_size=48, three_crop=False)
    config.log_every = 5
    config.checkpoint_every = 50
  return config


# ------------------------------------------------------------------------------------ supervised and evaluation

NUM_CLASSES = {"ucf101": 101, "hmdb51": 51, "kinetics400": 400}
EVAL_DATASETS = ("ucf101", "hmdb51")


def _check_choice(key: str, value: Any, choices) -> None:
  if value not in choices:
    raise ValueError(f"config variant {key}={value!r}: expected one of {', '.join(map(str, choices))}")


def supervised_config(dataset: str = "ucf101", demo: bool = False) -> ml_collections.ConfigDict:
  """Supervised training / fine-tuning (the TSN recipe of CtP and FedVSSL, `runner = "supervised"`).

  R3D-18 -> pooled feature -> dropout 0.5 -> fc; one 16-frame clip at stride 2, random short side {112,128,144}, crop
  112, flip, colour jitter; SGD lr 0.01, momentum 0.9, weight decay 5e-4, clip 40; 150 epochs with x0.1 steps at 60
  and 120; test on 10 uniform clips (centre crop 112 of short side 128), logits averaged, top-1 / top-5 / mean class.
  `demo`: the synthetic videos, R3D at width 1/8, 8-frame 64 px clips, a few minutes on 2 CPU cores.
  """
  config = ml_collections.ConfigDict()
  config.runner = "supervised"
  config.seed = 0
  config.mesh = [("data", -1)]

  config.data = data_config("synthetic" if demo else dataset)
  config.model = ml_collections.ConfigDict(dict(
      arch="r3d_18",
      backbone_kwargs=ml_collections.ConfigDict(dict(width_multiplier=1.0, bn_epsilon=1e-3)),
      num_classes=NUM_CLASSES.get(dataset, 101),
      dropout=0.5,
  ))
  # Initial weights: an exported backbone directory (ours, an imported torchvision / FedVSSL one), or "" = random.
  config.init = ml_collections.ConfigDict(dict(backbone_checkpoint=""))

  config.train = ml_collections.ConfigDict(dict(
      clip_len=16, stride=2, crop_size=112, flip_p=0.35,
      augment="colorjitter",  # "colorjitter": short_side_sizes + jitter; "ctp": scales_wh + ctp_color (CtP's own)
      short_side_sizes=(112, 128, 144),
      jitter=(0.125, 0.2, 0.2, 0.05, 0.2),  # brightness (+-32/255), contrast, saturation, hue, probability
      scales_wh=((149, 112), (171, 128), (192, 144)),  # augment="ctp": resize to one (width, height) pair
      ctp_color=(32.0, 0.2, 12.0, 0.1, 0.2),  # augment="ctp": brightness +-32, contrast / saturation log-deltas,
                                              # hue +-12 OpenCV units, p of each op (transforms.ctp_color_augment)
  ))
  config.test = ml_collections.ConfigDict(dict(TEST_VIEWS, resize_wh=()))  # resize_wh (w, h): instead of short_side
  config.batch_size = 32  # global
  config.num_epochs = 150
  config.num_steps = -1   # > 0 overrides num_epochs
  config.optim = ml_collections.ConfigDict(dict(
      name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4, grad_clip_norm=40.0,
      schedule="step", step_epochs=(60, 120), step_factor=0.1,
      warmup_epochs=0.0, warmup_start_lr=0.0, final_lr=0.0,
  ))
  add_run_settings(config, log_every=20)

  if demo:
    config.data.synthetic_preset = "demo"
    config.data.num_workers = 1
    config.model.backbone_kwargs.width_multiplier = 0.125
    config.model.num_classes = -1  # taken from the dataset
    config.train.update(clip_len=8, stride=2, crop_size=64, short_side_sizes=(64, 72, 80))
    # No flip: a mirrored synthetic video is another class (move_left <-> move_right, rotate_cw <-> rotate_ccw).
    config.train.flip_p = 0.0
    config.test.update(DEMO_EVAL_VIEWS)
    config.batch_size = 16
    config.num_epochs = 3
    config.optim.update(lr=0.05, schedule="warmup_cosine", warmup_epochs=0.5, final_lr=0.0)
    config.log_every = 5
    config.checkpoint_every = 20
  return config


def finetune_config(dataset: str, demo: bool = False, split: int = 1, init: str = "") -> ml_collections.ConfigDict:
  """Fine-tuning a pretrained backbone on UCF-101 / HMDB-51 (FedVSSL / CtP, fedvssl.md section 5).

  The supervised recipe (`supervised_config`) with `config.init.backbone_checkpoint` = `init`: an exported-backbone
  directory (ours, or made by scripts/import_torch_weights.py / scripts/import_fedvssl_checkpoint.py). The loaded
  backbone keeps the architecture recorded with it; the fc is always fresh (`num_classes` of the dataset).

  Args:
    dataset: "ucf101" or "hmdb51".
    demo: the synthetic videos at demo size instead (as `supervised_config(demo=True)`).
    split: official split 1, 2 or 3 (the papers report split 1).
    init: the backbone checkpoint ("" = random init, i.e. training from scratch).
  """
  _check_choice("dataset", dataset, EVAL_DATASETS)
  _check_choice("split", split, (1, 2, 3))
  config = supervised_config(dataset, demo)
  config.data.split = split
  config.init.backbone_checkpoint = init
  if not demo:
    # CtP's fine-tuning augmentation (its recognizer configs): (w, h) scales + its three colour ops with p=0.2 each;
    # test views resized to (171, 128). train.augment="colorjitter" is the torchvision-style alternative.
    config.train.augment = "ctp"
    config.test.resize_wh = (171, 128)
  config.optim.backbone_lr_ratio = 1.0  # > 1: the backbone's lr is lr / ratio (GOCA recipe: 10)
  return config


def goca_finetune_recipe(config: ml_collections.ConfigDict) -> None:
  """GOCA's fine-tuning (ViCC-style, `--use_vicc_opt`; helper/train_utils.py setup_optimization_finetune,
  get_wicc_val): SGD momentum 0.9 without Nesterov, the backbone at lr / 10 (`--backbone_ratio 10`), lr x0.1 at
  epochs 60 and 80 (`--lr_milestones`), GOCA's `--weight_decay` default 1e-4. The peak lr (`config.optim.lr`) and
  the number of epochs stay the recipe's: GOCA released no fine-tuning command that sets them."""
  config.optim.update(dict(name="sgd", momentum=0.9, nesterov=False, schedule="step", step_epochs=(60, 80),
                           step_factor=0.1, weight_decay=1e-4, backbone_lr_ratio=10.0))


def goca_linear_probe_recipe(config: ml_collections.ConfigDict) -> None:
  """GOCA's linear evaluation (helper/eval_helper.py set_eval_params, my_models/LinearEvalModels.py RegLog): BN
  (no affine learning here: standardised with the train statistics) then a linear layer, SGD momentum 0.9 at
  `--eval_lr` 0.3 with a cosine schedule to 0, `--eval_wd` 1e-6, 100 epochs."""
  config.probe.update(dict(optimizer="sgd", lr=0.3, weight_decay=1e-6, epochs=100, standardize=True))


def eval_config(runner: str, dataset: str = "ucf101", demo: bool = False, split: int = 1, init: str = "",
                flow_init: str = "") -> ml_collections.ConfigDict:
  """The shared part of the frozen-backbone evaluations (`runner` "knn" or "linear_probe").

  `config.init.backbone_checkpoint` is the exported backbone to evaluate; `config.init.flow_backbone_checkpoint`
  (optional) a second, flow stream (GOCA's `export/flow_backbone`): each view's feature is then the average of the
  two streams' pooled features (GOCA's `Avg`), and the flow videos are read beside the RGB ones
  (`config.data.flow_template`, default videos/ -> videos_flow/). Features are written to
  `<workdir>/features_{train,test}.npz`; `config.features_dir` reads them from an earlier run instead.
  """
  _check_choice("dataset", dataset, EVAL_DATASETS + ("json", "synthetic"))
  _check_choice("split", split, (1, 2, 3))
  demo = demo or dataset == "synthetic"
  config = ml_collections.ConfigDict()
  config.runner = runner
  config.seed = 0
  config.mesh = [("data", -1)]
  config.data = data_config("synthetic" if demo else dataset)
  config.data.split = split
  config.init = ml_collections.ConfigDict(dict(backbone_checkpoint=init, flow_backbone_checkpoint=flow_init))
  config.features_dir = ""  # a workdir holding features_{train,test}.npz to reuse (no backbone is run then)
  config.compilation_cache_dir = ""
  config.matmul_precision = ""
  if demo:
    config.data.synthetic_preset = "demo"
    config.data.num_workers = 1
  return config


def knn_eval_config(dataset: str = "ucf101", demo: bool = False, split: int = 1, init: str = "",
                    flow_init: str = "") -> ml_collections.ConfigDict:
  """kNN retrieval of a frozen exported backbone (`runner = "knn"`, fedvssl_jax/evaluation/knn.py).

  Protocol (VCOP / CtP / FedVSSL; GOCA's with 5 clips): 10 uniform 16-frame clips at stride 2 x 3 crops of 112 after
  resizing the short side to 112; each view's pooled feature L2-normalised, views averaged; cosine similarity, train
  split = gallery, test split = queries; R@1/5/10/20/50. `config.knn.mean_center` subtracts the gallery mean (CoCLR).
  """
  config = eval_config("knn", dataset, demo, split, init, flow_init)
  config.knn = knn_config(batch_size=8)
  config.knn.num_clips = 10
  del config.knn["enabled"]  # the runner always evaluates; the data is config.data
  del config.knn["data"]
  if config.data.source == "synthetic":
    config.knn.update(DEMO_EVAL_VIEWS, three_crop=False)
  return config


def linear_probe_config(dataset: str = "ucf101", demo: bool = False, split: int = 1, init: str = "",
                        flow_init: str = "") -> ml_collections.ConfigDict:
  """Linear probe of a frozen exported backbone (`runner = "linear_probe"`, evaluation/linear_probe.py).

  Features: 10 uniform 16-frame clips at stride 2 per video, centre crop 112 of short side 128 (the fine-tuning test
  views; `three_crop=True` adds left / right crops), each view L2-normalised, views averaged. Classifier: multinomial
  logistic regression on the standardised train-split features, Adam with a cosine schedule, L2 penalty on the
  weights, a fixed number of epochs; top-1 / top-5 / mean-class accuracy on the test split.
  """
  config = eval_config("linear_probe", dataset, demo, split, init, flow_init)
  config.features = ml_collections.ConfigDict(dict(TEST_VIEWS))
  config.probe = ml_collections.ConfigDict(dict(
      epochs=100, batch_size=256,  # batch_size <= 0: full batch
      optimizer="adam",            # adam | sgd (momentum 0.9)
      lr=1e-3, weight_decay=1e-4,  # L2 penalty 0.5 * weight_decay * |W|^2 (not on the bias)
      standardize=True, seed=0))
  if config.data.source == "synthetic":
    config.features.update(DEMO_EVAL_VIEWS)
    config.probe.lr = 0.01  # 300 training videos: about 2 steps per epoch
  return config


COMPUTE_DTYPES = ("float32", "bfloat16")


def apply_compute_dtype(config: ml_collections.ConfigDict) -> None:
  """`config.compute_dtype` -> `config.model.backbone_kwargs.dtype` (the backbones' compute dtype, a dtype name).

  Parameters stay `param_dtype` (float32), so the optimiser state is float32 too; heads and losses promote the
  backbone's bf16 features to float32. No-op for float32 or configs without a model block.
  """
  dtype = config.get("compute_dtype", "float32") or "float32"
  if dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"config.compute_dtype={dtype!r}; known: {', '.join(COMPUTE_DTYPES)}")
  if dtype == "float32" or "model" not in config:
    return
  with config.unlocked():
    if "backbone_kwargs" not in config.model or config.model.backbone_kwargs is None:
      config.model.backbone_kwargs = ml_collections.ConfigDict()
    config.model.backbone_kwargs.dtype = dtype
