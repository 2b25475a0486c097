#!/usr/bin/env python
"""Writes the synthetic motion-class video dataset (H.264 mp4 + CtP JSON / txt annotations + classInd.txt).

Example:
  python scripts/make_synthetic_videos.py --out /tmp/synthetic --preset demo --workers 2
  python scripts/make_synthetic_videos.py --out /tmp/tiny --preset test --num-classes 6 --num-frames 48
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from input_pipeline import synthetic


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--preset", choices=sorted(synthetic.PRESETS), default="demo", help="base parameters")
  parser.add_argument("--num-classes", type=int, help=f"motion classes (<= {synthetic.MAX_CLASSES})")
  parser.add_argument("--videos-per-class-train", type=int)
  parser.add_argument("--videos-per-class-test", type=int)
  parser.add_argument("--num-frames", type=int)
  parser.add_argument("--height", type=int)
  parser.add_argument("--width", type=int)
  parser.add_argument("--seed", type=int)
  parser.add_argument("--fps", type=float, default=25)
  parser.add_argument("--workers", type=int, default=1, help="rendering / encoding threads")
  parser.add_argument("--reuse", action="store_true",
                      help="keep an existing complete dataset made with the same parameters (dataset.json)")
  args = parser.parse_args(argv)
  kwargs = dict(synthetic.PRESETS[args.preset])
  for key in ("num_classes", "videos_per_class_train", "videos_per_class_test", "num_frames", "height", "width",
              "seed"):
    value = getattr(args, key)
    if value is not None:
      kwargs[key] = value
  kwargs["fps"] = args.fps
  start = time.time()
  print(f"synthetic dataset -> {args.out}: {json.dumps(kwargs)}", flush=True)
  if args.reuse and synthetic.is_complete(args.out, **kwargs):
    info = synthetic.load_manifest(args.out)
    print("reusing the existing complete dataset")
  else:
    info = synthetic.make_dataset(args.out, workers=args.workers, progress=True, **kwargs)
  print(f"classes: {', '.join(info['classes'])}")
  print(f"videos: {info['counts']} in {time.time() - start:.1f}s")
  print(f"train annotations: {info['train_annotations']}\ntest annotations: {info['test_annotations']}\n"
        f"path template: {info['path_template']} (relative to {info['data_root']})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
