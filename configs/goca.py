"""GOCA: two-stream (RGB + optical flow) pretraining with guided online cluster assignment. The main config.

  python -m fedvssl_jax.main --config=configs/goca.py:demo --workdir=DIR             # synthetic videos, CPU, minutes
  python -m fedvssl_jax.main --config=configs/goca.py --workdir=DIR --config.data.root=/data/kinetics400
  python -m fedvssl_jax.main --config=configs/goca.py:demo,federated --workdir=DIR   # GOCA through Flower

Source: Coskun et al., "GOCA: Guided Online Cluster Assignment for Self-Supervised Video Representation Learning"
(ECCV 2022) and its code, Seleucia/goca (`ssv_main.py`, `opt_aug.py`, the released launch script;
../shared/reference/goca.md and docs/goca.md, which name each value's line). Flow videos are expected beside the RGB
tree (`videos/` -> `videos_flow/`, made by scripts/extract_flow.py); the demo extracts them itself.
`goca.prior_sign=1` is the KL-regularised prior the paper describes; `-1` reproduces the released code's sign.

Variants (docs/goca.md names each one's source in GOCA's code):
  demo                see `demo` below: what it changes and why
  modality=rgb|flow   single-stream SwAV with GOCA's fixed prototypes (`--video_channels rgb`: the released script)
  merge=avg           AvgRgbFlow: one SwAV loss on the averaged streams (`--video_modal_merge_algo 0`)
  federated           the same through Flower with FedVSSL's federated block (= configs/fedvssl.py:task=goca)
  e.g. --config=configs/goca.py:demo,modality=rgb ; `--config.goca.sinkhorn_cycle=2` repeats the guided Sinkhorn.
"""

import ml_collections

from fedvssl_jax.config_utils import (DEMO_EVAL_VIEWS, add_run_settings, check_choice, data_config, federated_config,
                                      knn_config, parse_arg)


def get_config(arg=None):
  arg = parse_arg(arg, demo=False, federated=False, modality="rgb_flow", merge="prior")
  check_choice("modality", arg.modality, ("rgb_flow", "rgb", "flow"))
  check_choice("merge", arg.merge, ("prior", "avg"))
  config = ml_collections.ConfigDict()
  config.runner = "goca"
  config.seed = 31  # the launch script's
  config.mesh = [("data", -1)]

  config.data = data_config("kinetics400")
  config.data.with_flow = arg.modality != "rgb"
  # Optical flow: Dual TV-L1 at short side 256, +-20 px clipped into 8 bits (GOCA's flow extraction).
  config.flow = ml_collections.ConfigDict(dict(
      extract_missing=False,  # make missing flow videos before training (always on for the synthetic demo)
      short_side=256,        # GOCA computed flow at 256 px
      bound=20.0,            # +-px range of the 8-bit flow encoding (GOCA: 20 at 256 px)
      backend="auto",        # TV-L1: "jax" (batched, input_pipeline/tvl1.py), "opencv", or "auto" (jax on an
                             # accelerator, else the faster on a CPU: input_pipeline.flow.CPU_BACKEND)
      batch_size=0,          # frame pairs per call of the jax backend; 0 = flow.default_batch_size(H, W)
      workers=0,             # processes of the opencv backend; 0 = every core
      # Dual TV-L1 (OpenCV's defaults; other fields of input_pipeline.flow.TVL1Params keep their defaults too).
      tvl1=ml_collections.ConfigDict(dict(nscales=5, warps=5, inner_iterations=30, outer_iterations=10)),
  ))

  # Two R(2+1)D-18 backbones (RGB, flow) pooled to 1x2x2 (2048-d, GOCA's r2plus1d_18_new_avg); one projection head
  # 2048-2048-128 shared by both streams; K = 1000 fixed hyperspherical prototypes of 128 dims (prots/prototypes.py,
  # 50000 steps), shared by both streams.
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
      rgb_residual_frames=False,  # True: the RGB backbone sees x[t+1] - x[t] (residual frames; docs/goca.md)
  ))
  # Temporal multi-crop (launch script): 2 x 32 + 4 x 16 frames at stride 2, starts >= 16 frames apart; short side
  # U[128,160], crop 112, flip 0.5, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2.
  config.views = ml_collections.ConfigDict(dict(
      clip_lens=(32, 16), num_clips=(2, 4), stride=2, min_start_distance=16, crop_size=112,
      short_side_range=(128, 160), flip_p=0.5, jitter=(0.4, 0.4, 0.2, 0.1, 0.8), grayscale_p=0.2,
  ))
  # SwAV with the cross-stream prior: codes from the two 32-frame clips, temperature 0.1, Sinkhorn epsilon 0.02 and
  # prior epsilon2 0.03 (the launch script; defaults 0.05 / 0.01), 3 iterations, prior from epoch 0, no queue.
  config.goca = ml_collections.ConfigDict(dict(
      assign_views=(0, 1), temperature=0.1, epsilon=0.02, epsilon2=0.03, sinkhorn_iters=3,
      use_prior=True, prior_start_epoch=0, prior_sign=1, divide_twice=False,
      modality=arg.modality,  # GOCA's --video_channels: rgb_flow | rgb | flow (single-stream SwAV, fixed prototypes)
      merge=arg.merge,        # --video_modal_merge_algo: prior (PriorRgbFlow, GOCA) | avg (AvgRgbFlow)
      sinkhorn_cycle=1,       # --sinkhorn_cycle: rounds of prior-guided Sinkhorn (1 or 2 in GOCA)
      queue_length=0,          # SwAV queue of past embeddings (global rows; 0 = off, as GOCA's script)
      epoch_queue_starts=10.0,  # the queue joins the Sinkhorn step from this epoch on (once it is full)
  ))

  # Optimisation (ssv_main.py + launch script): 8 nodes x 8 GPUs x 10 = 640 videos per step, 500 epochs; SGD momentum
  # 0.9, wd 1e-4 in apex LARC (trust 0.001, no clip); peak lr 0.15 * sqrt(global batch) after a linear warm-up from
  # 0.3 over 10 epochs, then cosine to 0.0006.
  config.batch_size = 640
  config.num_epochs = 500
  config.num_steps = -1  # > 0 overrides num_epochs
  config.optim = ml_collections.ConfigDict(dict(
      base_lr=0.15, start_warmup=0.3, final_lr=0.0006, warmup_epochs=10.0, momentum=0.9, weight_decay=1e-4,
      trust=0.001))

  # Evaluation: on real data run configs/knn.py after pretraining. GOCA's KNN_emb_prot / KNN_all (model_aug.py
  # forward_head) also retrieve with the L2-normalised projection ("head") or the prototype scores ("prototypes")
  # of the pretrained model, besides the backbone feature (the protocol).
  config.knn = knn_config()
  config.knn.enabled = False
  config.knn.feature = "backbone"
  add_run_settings(config, log_every=20)

  if arg.demo:
    demo(config)
  if arg.federated:
    # FedVSSL's federated block (configs/fedvssl.py); GOCA keeps its own optimiser on each client.
    config.federated = federated_config(arg.demo)
    config.federated.trainer = "goca"
    config.runner = "federated"
  return config


def demo(config: ml_collections.ConfigDict) -> None:
  """`:demo`: the synthetic videos on a CPU in minutes; every change from the recipe above and why."""
  config.data = data_config("synthetic")
  config.data.with_flow = config.goca.modality != "rgb"
  config.data.num_workers = 1
  # A coarse single-scale TV-L1 at 48 px keeps the first demo run's flow extraction to about a minute.
  # The bound scaled with the frame size (20 px at 256 -> 3.75 at 48), a little tighter so that the synthetic
  # videos' slowest motions (~0.3 px per frame at 48 px) span ~13 of the 256 levels instead of ~2.
  config.flow.update(dict(extract_missing=True, short_side=48, workers=2, bound=3.0))
  config.flow.tvl1.update(dict(nscales=1, warps=1, inner_iterations=10, outer_iterations=2))
  # Small: backbones at 1/8 width, 64 prototypes of 32 dims (made in 300 steps), head 128 wide; 2 x 8 + 2 x 4 frames
  # at 48 px.
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
  # kNN on the synthetic test split at the end of the run (2 clips x 1 crop of 8 frames at 48 px).
  config.knn.enabled = True
  config.knn.update(DEMO_EVAL_VIEWS, short_side=48, crop_size=48, three_crop=False)
  config.log_every = 5
  config.checkpoint_every = 50
