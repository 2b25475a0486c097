#!/usr/bin/env python
"""Scans every video of an annotation file and writes a clean annotation file without the bad ones.

Each video is opened, its frames counted, and its first and last frame decoded (``--exact``: every frame). Bad videos
(missing, unreadable / corrupt, truncated, shorter than --min_frames) are listed with their reason. The clean file has
the input's format. Exit code 0 (also when bad videos are found); 2 for bad arguments / unreadable annotations.

Example:
  python scripts/verify_dataset.py --annotations ann/train.json --data_root /data/ucf101 \
      --path_template 'zips/{name}.zip' --out ann/train_clean.json --min_frames 16 --workers 2
"""

from __future__ import annotations

import json
import sys

from fedvssl_jax import cli
from input_pipeline import annotations
from input_pipeline import verify


def main(argv=None) -> int:
  parser = cli.ArgumentParser(description=__doc__)
  parser.add_argument("--annotations", required=True, help="annotation file (or HMDB-51 splits directory)")
  parser.add_argument("--data_root", default=None, help="directory the video paths are relative to")
  parser.add_argument("--format", default="auto", choices=("auto",) + annotations.FORMATS + ("csv",))
  parser.add_argument("--path_template", default=None,
                      help="video path template, e.g. 'zips/{name}.zip', '{name}/RGB_frames.zip', 'videos/{name}.mp4'")
  parser.add_argument("--flow_template", default=None, help="optional flow video path template")
  parser.add_argument("--class_index", default=None, help="classInd.txt (UCF-101 lists, Kinetics label order)")
  parser.add_argument("--split", type=int, default=1, help="HMDB-51 split")
  parser.add_argument("--subset", default="train", choices=("train", "test"), help="HMDB-51 subset")
  parser.add_argument("--out", default=None, help="clean annotation file to write (same format)")
  parser.add_argument("--min_frames", type=int, default=1)
  parser.add_argument("--workers", type=int, default=1)
  parser.add_argument("--exact", action="store_true", help="decode every frame (slow, finds mid-file corruption)")
  parser.add_argument("--report", default=None, help="optional JSON file for the full summary")
  args = parser.parse_args(argv)
  try:
    summary = verify.verify_dataset(
        args.annotations, data_root=args.data_root, out_path=args.out, fmt=args.format,
        path_template=args.path_template, flow_template=args.flow_template, class_index=args.class_index,
        min_frames=args.min_frames, workers=args.workers, exact=args.exact, split=args.split, subset=args.subset,
        progress=True)
  except (annotations.AnnotationError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(verify.format_summary(summary))
  if args.report:
    with open(args.report, "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
  return 0


if __name__ == "__main__":
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
