r"""kNN retrieval (R@1/5/10/20/50) of an exported backbone, without writing a config file.

  python scripts/knn_eval.py --checkpoint runs/ctp/export/backbone --dataset ucf101 --data_root /data/ucf101 \
      --split 1 --out runs/knn_ucf
  python scripts/knn_eval.py --checkpoint runs/goca/export/backbone --flow_checkpoint runs/goca/export/flow_backbone \
      --dataset hmdb51 --data_root /data/hmdb51 --num_clips 5 --mean_center --out runs/knn_goca_hmdb
  python scripts/knn_eval.py --checkpoint DIR --dataset synthetic --out runs/knn_demo     # the demo's synthetic videos

It builds the config of configs/knn.py (`knn_eval_config` there), applies the options below and
runs the same `knn` runner as `python -m fedvssl_jax.main --config=configs/knn.py`; results in `<out>/results.json`
(+ knn_recall.png, config.json) and the per-video features in `<out>/features_{train,test}.npz`. Options left out
keep the config's values (10 clips x 3 crops of 16 frames at stride 2, 112 px; the synthetic demo: 2 x 1 of 8 at 64).
"""

from __future__ import annotations

import argparse
import os
import sys

from fedvssl_jax import cli
from fedvssl_jax.config_utils import EVAL_DATASETS, load_recipe

DATASETS = EVAL_DATASETS + ("synthetic", "json")


def parse_args(argv=None) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--checkpoint", required=True, help="exported backbone directory (the RGB stream)")
  p.add_argument("--flow_checkpoint", default="", help="exported flow backbone (two-stream: features averaged)")
  p.add_argument("--out", required=True, help="output directory (results.json, features_{train,test}.npz)")
  data = p.add_argument_group("data")
  data.add_argument("--dataset", choices=DATASETS, default="ucf101")
  data.add_argument("--data_root", default=None, help="dataset root (ucf101 / hmdb51; json: the path prefix)")
  data.add_argument("--split", type=int, choices=(1, 2, 3), default=1, help="official split (ucf101 / hmdb51)")
  data.add_argument("--format", choices=("official", "ctp"), default=None, help="dataset layout (config.data.format)")
  data.add_argument("--train_annotations", default=None, help="json: the gallery annotation file")
  data.add_argument("--test_annotations", default=None, help="json: the query annotation file")
  data.add_argument("--path_template", default=None, help="how a name becomes a path (config.data.path_template)")
  data.add_argument("--flow_template", default=None, help="flow video paths (default: videos/ -> videos_flow/)")
  data.add_argument("--synthetic_preset", default=None, help="synthetic: the preset (demo)")
  data.add_argument("--cache_dir", default=None, help="synthetic: where the videos are made")
  data.add_argument("--num_workers", type=int, default=None, help="video decoding processes (0 = in-process)")
  views = p.add_argument_group("views")
  views.add_argument("--num_clips", type=int, default=None, help="uniform clips per video")
  views.add_argument("--clip_len", type=int, default=None, help="frames per clip")
  views.add_argument("--stride", type=int, default=None, help="frame stride within a clip")
  views.add_argument("--short_side", type=int, default=None, help="short side the frames are resized to")
  views.add_argument("--crop_size", type=int, default=None, help="square crop size")
  views.add_argument("--three_crop", action=argparse.BooleanOptionalAction, default=None,
                     help="left / centre / right crops (else the centre crop only)")
  views.add_argument("--batch_size", type=int, default=None, help="videos per step (a multiple of the devices)")
  p.add_argument("--mean_center", action="store_true", help="subtract the gallery mean before the cosine (CoCLR)")
  p.add_argument("--features_dir", default="", help="reuse features_{train,test}.npz of an earlier run")
  return p.parse_args(argv)


def build_config(args: argparse.Namespace):
  """The configs/knn.py config with the command-line options applied."""
  config = load_recipe("knn").knn_eval_config(args.dataset, split=args.split, init=args.checkpoint,
                                              flow_init=args.flow_checkpoint)
  data = {"root": args.data_root, "format": args.format, "train_annotations": args.train_annotations,
          "test_annotations": args.test_annotations, "path_template": args.path_template,
          "flow_template": args.flow_template, "synthetic_preset": args.synthetic_preset, "cache_dir": args.cache_dir,
          "num_workers": args.num_workers}
  config.data.update({k: v for k, v in data.items() if v is not None})
  views = {"num_clips": args.num_clips, "clip_len": args.clip_len, "stride": args.stride,
           "short_side": args.short_side, "crop_size": args.crop_size, "three_crop": args.three_crop,
           "batch_size": args.batch_size}
  config.knn.update({k: v for k, v in views.items() if v is not None})
  config.knn.mean_center = bool(args.mean_center)
  config.features_dir = args.features_dir
  return config


def main(argv=None) -> int:
  args = parse_args(argv)
  from fedvssl_jax import runners

  out = os.path.abspath(args.out)

  def summary(results):
    best = next(iter(results["knn"]))
    print(f"{best}: " + ", ".join(f"{k} {v:.2f}" for k, v in results["knn"][best].items()) + f" -> {out}/results.json")

  return runners.run_cli(build_config(args), out, on_results=summary)


if __name__ == "__main__":
  sys.exit(main())
