"""Extracts TV-L1 optical-flow videos for GOCA (one `.mp4` per RGB video, same relative path).

The flow frames are GOCA's 8-bit encoding (R, G, B) = (128, v, u), +-20 px, at short side 256 by default; flow
frame i is the flow from RGB frame i to i+1 (see `input_pipeline/flow.py`). Resumable: rerun the same command after
an interruption and finished videos are skipped.

Backends (--backend): opencv (OpenCV's CPU Dual TV-L1, one video per worker process), jax (the same algorithm
batched over a video's frame pairs on the default JAX device, input_pipeline/tvl1.py) or auto (the default: jax on an
accelerator, else the faster of the two on a CPU as measured, `input_pipeline.flow.CPU_BACKEND`). Both write the same
files, so a folder made with one can be resumed with the other. The jax backend keeps its compiled programs in JAX's
compilation cache (~/.cache/fedvssl_jax/jax_compilation_cache), so only the first run per frame size compiles.

Examples:
  # GOCA setting (OpenCV default TV-L1 parameters), every core:
  python scripts/extract_flow.py --videos data/ucf101/videos --out data/ucf101/videos_flow
  # quick demo setting:
  python scripts/extract_flow.py --videos demo/videos --out demo/videos_flow --short_side 64 --fast
  # force OpenCV on 8 processes:
  python scripts/extract_flow.py --videos data/ucf101/videos --out data/ucf101/videos_flow --backend opencv --workers 8
  # Kinetics-400 in CtP's format (<name>/RGB_frames.zip): flow as <root>/flow/<name>/RGB_frames.mp4, then run with
  # --config.data.flow_template=flow/{name}/RGB_frames.mp4
  python scripts/extract_flow.py --videos data/k400 --out data/k400/flow --exts .zip
"""

import dataclasses
import os
import sys

from fedvssl_jax import cli
from input_pipeline import flow
from input_pipeline import video as video_lib


def main(argv=None) -> int:
  parser = cli.ArgumentParser(description=__doc__)
  parser.add_argument("--videos", required=True, help="directory of RGB videos (searched recursively)")
  parser.add_argument("--out", required=True, help="output directory of flow videos (mirrors --videos)")
  parser.add_argument("--short_side", type=int, default=256,
                      help="resize so the short side is this many pixels (default 256; 0 = keep the size)")
  parser.add_argument("--backend", choices=flow.BACKENDS, default="auto",
                      help="TV-L1 implementation (default auto: jax on an accelerator, else the faster on a CPU)")
  parser.add_argument("--batch_size", type=int, default=None,
                      help="frame pairs per call of the jax backend (default: about 256x340 px per call on a CPU, "
                           f"{flow.JAX_BATCH_ACCELERATOR} pairs on an accelerator)")
  parser.add_argument("--workers", type=int, default=None,
                      help="processes of the opencv backend (default: every core)")
  parser.add_argument("--crf", type=int, default=flow.DEFAULT_CRF,
                      help=f"x264 CRF of the flow videos (default {flow.DEFAULT_CRF}, lower = better)")
  parser.add_argument("--max_frames", type=int, default=None, help="only the first N frames of each video")
  parser.add_argument("--bound", type=float, default=flow.FLOW_BOUND,
                      help="clip the flow to +-BOUND px before the 8-bit encoding (default 20, GOCA's at short side "
                           "256; scale it with --short_side)")
  parser.add_argument("--exts", default=",".join(video_lib.VIDEO_EXTENSIONS),
                      help="comma-separated extensions of the RGB videos to pick up (default: the video containers; "
                           "'.zip' for CtP's frame zips, e.g. Kinetics-400 in CtP's format)")
  parser.add_argument("--overwrite", action="store_true",
                      help="recompute videos whose flow already exists (needed to change the settings of a folder)")
  parser.add_argument("--fast", action="store_true",
                      help="cheap TV-L1 setting for demos (2 scales, 2 warps, 10x3 iterations)")
  parser.add_argument("--nscales", type=int, default=None, help="TV-L1 pyramid scales (default 5)")
  parser.add_argument("--warps", type=int, default=None, help="TV-L1 warps per scale (default 5)")
  parser.add_argument("--inner_iterations", type=int, default=None, help="TV-L1 inner iterations (default 30)")
  parser.add_argument("--outer_iterations", type=int, default=None, help="TV-L1 outer iterations (default 10)")
  args = parser.parse_args(argv)

  params = flow.FAST_TVL1 if args.fast else flow.DEFAULT_TVL1
  overrides = {k: getattr(args, k) for k in ("nscales", "warps", "inner_iterations", "outer_iterations")
               if getattr(args, k) is not None}
  params = dataclasses.replace(params, **overrides)
  exts = tuple(e.strip() if e.strip().startswith(".") else "." + e.strip() for e in args.exts.split(",") if e.strip())
  if not exts:
    parser.error("--exts names no extension")
  if args.batch_size is not None and args.batch_size < 1:
    parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
  if flow.resolve_backend(args.backend) == "jax":
    import jax

    jax.config.update("jax_compilation_cache_dir", os.path.join(
        os.path.expanduser("~"), ".cache", "fedvssl_jax", "jax_compilation_cache"))
  summary = flow.extract_flow_folder(args.videos, args.out, short_side=args.short_side or None,
                                     workers=args.workers, params=params, crf=args.crf, max_frames=args.max_frames,
                                     overwrite=args.overwrite, bound=args.bound, backend=args.backend,
                                     batch_size=args.batch_size, exts=exts)
  return 1 if summary["failed"] else 0


if __name__ == "__main__":
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
