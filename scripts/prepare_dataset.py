"""Converts a video folder + annotations into ArrayRecord shards (one record per video, original encoded bytes).

  python scripts/prepare_dataset.py --annotations ucf101/annotations/train_split_1.json \
      --data-root ucf101 --path-template "videos/{name}.mp4" --out ucf101/arrayrecord/train --num-shards 8

Reads the annotations with `input_pipeline.annotations.load_annotations` (`--format` auto / json / txt /
kinetics_csv / ucf101 / hmdb51), checks that every video opens (frame count stored in the record; unreadable videos
are skipped and listed in `<out>/<prefix>.json`), and writes `<out>/<prefix>-XXXXX-of-YYYYY.array_record`.
Train on them with `input_pipeline.shards.ArrayRecordVideoSource(out)` in place of the record list.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--annotations", required=True, help="annotation file (or the HMDB-51 splits directory)")
  p.add_argument("--data-root", required=True, help="directory the annotation's video paths are relative to")
  p.add_argument("--out", required=True, help="output directory for the shards")
  p.add_argument("--format", default="auto", help="annotation format: auto, json, txt, kinetics_csv, ucf101, hmdb51")
  p.add_argument("--num-shards", type=int, default=1)
  p.add_argument("--prefix", default="videos", help="shard file name prefix")
  p.add_argument("--path-template", default=None, help="video path template, e.g. 'videos/{name}.mp4'")
  p.add_argument("--flow-template", default=None, help="flow video path template (GOCA), e.g. 'flow/{name}.mp4'")
  p.add_argument("--class-index", default=None, help="classInd.txt (UCF-101) / label order (Kinetics)")
  p.add_argument("--split", type=int, default=1, help="HMDB-51 split")
  p.add_argument("--subset", default="train", help="HMDB-51 subset: train or test")
  p.add_argument("--strict", action="store_true", help="fail on the first unreadable video instead of skipping it")
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

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


if __name__ == "__main__":
  sys.exit(main())
