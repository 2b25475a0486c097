#!/usr/bin/env python
"""Writes the synthetic motion-class video dataset (H.264 mp4 + CtP JSON / txt annotations + classInd.txt).

Example:
  python scripts/make_synthetic_videos.py --out /tmp/synthetic --preset demo --workers 2
  python scripts/make_synthetic_videos.py --out /tmp/tiny --preset test --num_classes 6 --num_frames 48
"""

from __future__ import annotations

import json
import sys
import time

from fedvssl_jax import cli
from input_pipeline import synthetic


def main(argv=None) -> int:
  parser = cli.ArgumentParser(description=__doc__)
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--preset", choices=sorted(synthetic.PRESETS), default="demo", help="base parameters")
  parser.add_argument("--num_classes", type=int, help=f"motion classes (<= {synthetic.MAX_CLASSES})")
  parser.add_argument("--videos_per_class_train", type=int)
  parser.add_argument("--videos_per_class_test", type=int)
  parser.add_argument("--num_frames", type=int)
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
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
