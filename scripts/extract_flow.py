"""Extracts TV-L1 optical-flow videos for GOCA (one `.mp4` per RGB video, same relative path).

The flow frames are GOCA's 8-bit encoding (R, G, B) = (128, v, u), +-20 px, at short side 256 by default; flow
frame i is the flow from RGB frame i to i+1 (see `input_pipeline/flow.py`). Resumable: rerun the same command after
an interruption and finished videos are skipped.

Examples:
  # GOCA setting (OpenCV default TV-L1 parameters), every core:
  python scripts/extract_flow.py --videos data/ucf101/videos --out data/ucf101/videos_flow
  # quick demo setting:
  python scripts/extract_flow.py --videos demo/videos --out demo/videos_flow --short-side 64 --fast
"""

import argparse
import dataclasses
import sys

from input_pipeline import flow


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--videos", required=True, help="directory of RGB videos (searched recursively)")
  parser.add_argument("--out", required=True, help="output directory of flow videos (mirrors --videos)")
  parser.add_argument("--short-side", type=int, default=256,
                      help="resize so the short side is this many pixels (default 256; 0 = keep the size)")
  parser.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
  parser.add_argument("--crf", type=int, default=flow.DEFAULT_CRF,
                      help=f"x264 CRF of the flow videos (default {flow.DEFAULT_CRF}, lower = better)")
  parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each video")
  parser.add_argument("--bound", type=float, default=flow.FLOW_BOUND,
                      help="clip the flow to +-BOUND px before the 8-bit encoding (default 20, GOCA's at short side "
                           "256; scale it with --short-side)")
  parser.add_argument("--overwrite", action="store_true",
                      help="recompute videos whose flow already exists (needed to change the settings of a folder)")
  parser.add_argument("--fast", action="store_true",
                      help="cheap TV-L1 setting for demos (2 scales, 2 warps, 10x3 iterations)")
  parser.add_argument("--nscales", type=int, default=None, help="TV-L1 pyramid scales (default 5)")
  parser.add_argument("--warps", type=int, default=None, help="TV-L1 warps per scale (default 5)")
  parser.add_argument("--inner-iterations", type=int, default=None, help="TV-L1 inner iterations (default 30)")
  parser.add_argument("--outer-iterations", type=int, default=None, help="TV-L1 outer iterations (default 10)")
  args = parser.parse_args(argv)

  params = flow.FAST_TVL1 if args.fast else flow.DEFAULT_TVL1
  overrides = {k: getattr(args, k) for k in ("nscales", "warps", "inner_iterations", "outer_iterations")
               if getattr(args, k) is not None}
  params = dataclasses.replace(params, **overrides)
  summary = flow.extract_flow_folder(args.videos, args.out, short_side=args.short_side or None,
                                     workers=args.workers, params=params, crf=args.crf, max_frames=args.max_frames,
                                     overwrite=args.overwrite, bound=args.bound)
  return 1 if summary["failed"] else 0


if __name__ == "__main__":
  sys.exit(main())
