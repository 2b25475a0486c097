"""Converts a video folder + annotations into ArrayRecord shards (one record per video, original encoded bytes).

  python scripts/prepare_dataset.py --annotations ucf101/annotations/train_split_1.json \
      --data_root ucf101 --path_template "videos/{name}.mp4" --out ucf101/arrayrecord/train --num_shards 8

Reads the annotations with `input_pipeline.annotations.load_annotations` (`--format` auto / json / txt /
kinetics_csv / ucf101 / hmdb51), checks that every video opens (frame count stored in the record; unreadable videos
are skipped and listed in `<out>/<prefix>.json`), and writes `<out>/<prefix>-XXXXX-of-YYYYY.array_record`.
Train on them with `input_pipeline.shards.ArrayRecordVideoSource(out)` in place of the record list.

`--tfds CONFIG` instead writes the prepared-clip format built for throughput: the TFDS dataset
`fedvssl_videos/<config>` (fedvssl_jax/tfds_videos.py), every frame re-encoded as a JPEG at short side
`--short_side` (default 128), one example per video in ArrayRecord files, decoded frame by frame with libjpeg-turbo at
training time (`--config.data.source=tfds --config.data.tfds_name=fedvssl_videos/<config>`). No TensorFlow needed.

  python scripts/prepare_dataset.py --tfds ucf101 --manual_dir /data/ucf101 --data_dir ~/tensorflow_datasets
  python scripts/prepare_dataset.py --tfds kinetics400 --manual_dir /data/k400 --data_format ctp
  python scripts/prepare_dataset.py --tfds synthetic --data_dir ~/tensorflow_datasets      # the demo videos

CONFIG is kinetics400, ucf101, hmdb51 or synthetic (the `--manual_dir` layouts of fedvssl_jax/datasets.py). Options
that differ from the predeclared config (`--short_side`, `--with_flow`, `--split`, ...) give the dataset the config
name `--name` (default `<config>_<hash of the options>`). Resumable: rerun the same command after an interruption
(the frames of every finished video are cached under `<data-dir>/downloads/fedvssl_videos_frames/`). Unreadable
videos are named in a warning, skipped, and listed in `skipped_<split>.json` in that cache.
"""

from __future__ import annotations

import json
import logging
import sys

from fedvssl_jax import cli


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--annotations", help="annotation file (or the HMDB-51 splits directory)")
  p.add_argument("--data_root", help="directory the annotation's video paths are relative to")
  p.add_argument("--out", help="output directory for the shards")
  t = p.add_argument_group("--tfds: JPEG frames as the TFDS dataset fedvssl_videos/<config> (ArrayRecord)")
  t.add_argument("--tfds", default="", help="kinetics400, ucf101, hmdb51 or synthetic")
  t.add_argument("--manual_dir", default="", help="the dataset's root (as config.data.root)")
  t.add_argument("--data_dir", default="~/tensorflow_datasets", help="TFDS data directory")
  t.add_argument("--name", default="", help="config name when the options differ from the predeclared config")
  t.add_argument("--short_side", type=int, default=128, help="frames are scaled down to this short side")
  t.add_argument("--quality", type=int, default=90, help="JPEG quality")
  t.add_argument("--data_format", default="official", help="official or ctp (fedvssl_jax/datasets.py)")
  t.add_argument("--with_flow", action="store_true", help="also store the flow videos (GOCA)")
  t.add_argument("--synthetic_preset", default="demo", help="--tfds synthetic: demo or test")
  p.add_argument("--format", default="auto", help="annotation format: auto, json, txt, kinetics_csv, ucf101, hmdb51")
  p.add_argument("--num_shards", type=int, default=1)
  p.add_argument("--prefix", default="videos", help="shard file name prefix")
  p.add_argument("--path_template", default=None, help="video path template, e.g. 'videos/{name}.mp4'")
  p.add_argument("--flow_template", default=None, help="flow video path template (GOCA), e.g. 'flow/{name}.mp4'")
  p.add_argument("--class_index", default=None, help="classInd.txt (UCF-101) / label order (Kinetics)")
  p.add_argument("--split", type=int, default=1, help="HMDB-51 split")
  p.add_argument("--subset", default="train", help="HMDB-51 subset: train or test")
  p.add_argument("--strict", action="store_true", help="fail on the first unreadable video instead of skipping it")
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

  if args.tfds:
    return _prepare_tfds(args)
  if not (args.annotations and args.data_root and args.out):
    p.error("--annotations, --data_root and --out are required (or use --tfds)")
  from input_pipeline import annotations, shards

  records = annotations.load_annotations(
      args.annotations, data_root=args.data_root, fmt=args.format, path_template=args.path_template,
      flow_template=args.flow_template, class_index=args.class_index, split=args.split, subset=args.subset)
  if not records:
    print(f"{args.annotations}: no records", file=sys.stderr)
    return 1
  logging.info("%d records from %s; writing %d shard(s) to %s", len(records), args.annotations, args.num_shards,
               args.out)
  index = shards.write_shards(records, args.out, num_shards=args.num_shards, prefix=args.prefix,
                              skip_bad=not args.strict)
  summary = {k: index[k] for k in ("num_records", "records_per_shard", "bytes", "seconds")}
  summary["skipped"] = len(index["skipped"])
  print(json.dumps(summary, indent=2))
  return 0


def _prepare_tfds(args) -> int:
  from fedvssl_jax import tfds_videos
  from fedvssl_jax.config_utils import ConfigError

  options = dict(short_side=args.short_side, quality=args.quality, data_format=args.data_format,
                 with_flow=args.with_flow, split=args.split, path_template=args.path_template or "",
                 flow_template=args.flow_template or "")
  if args.tfds == "synthetic":
    options["synthetic_preset"] = args.synthetic_preset
  try:
    out = tfds_videos.prepare(args.tfds, data_dir=args.data_dir, manual_dir=args.manual_dir, name=args.name,
                              **options)
  except (ConfigError, ValueError) as e:
    print(f"prepare_dataset.py --tfds {args.tfds}: {e}", file=sys.stderr)
    return 1
  name = "/".join(out.rstrip("/").split("/")[-3:-1])
  print(json.dumps({"dataset_dir": out, "tfds_name": name, "train_with": f"--config.data.source=tfds "
                    f"--config.data.tfds_name={name} --config.data.data_dir={args.data_dir}"}, indent=2))
  return 0


if __name__ == "__main__":
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
