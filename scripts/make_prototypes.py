"""Pre-computes GOCA's fixed hyperspherical prototypes and saves them as a float32 `.npy`.

Example (GOCA's file `prototypes-128d-1000c_50000.npy`):
  python scripts/make_prototypes.py --num_prototypes 1000 --dim 128 --steps 50000 --seed 300 \
      --out prototypes-128d-1000c_50000.npy
"""

import sys

from fedvssl_jax import cli
from fedvssl_jax.goca import prototypes


def main(argv=None) -> int:
  parser = cli.ArgumentParser(description=__doc__)
  parser.add_argument("--num_prototypes", type=int, default=1000, help="K (default 1000)")
  parser.add_argument("--dim", type=int, default=128, help="embedding size d (default 128)")
  parser.add_argument("--steps", type=int, default=50000, help="SGD steps (default 50000)")
  parser.add_argument("--seed", type=int, default=300, help="initialisation seed (default 300)")
  parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default 0.1)")
  parser.add_argument("--log_every", type=int, default=1000, help="steps between progress lines")
  parser.add_argument("--out", required=True, help="output .npy file")
  args = parser.parse_args(argv)
  c = prototypes.make_prototypes(args.num_prototypes, args.dim, args.steps, args.seed, lr=args.lr,
                                 log_every=args.log_every)
  prototypes.save_prototypes(args.out, c)
  print(f"wrote {args.out}: {c.shape} float32, max pairwise cosine "
        f"{float(prototypes.max_pairwise_cosine(c)):.4f}")
  return 0


if __name__ == "__main__":
  from fedvssl_jax.errors import run_script

  sys.exit(run_script(main))
