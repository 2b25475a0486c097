"""Benchmarks whose figures go into docs/benchmarks.md.

  # train steps/s of r3d_18 (ours, jax.jit) next to torchvision's r3d_18 (eager, optionally torch.compile), same run
  python scripts/benchmark.py --mode=train --batch=2 --frames=8 --size=56 --steps=10
  python scripts/benchmark.py --mode=train --batch=16 --frames=16 --size=112 --dtypes=float32,bfloat16 --torch_compile
  # input pipeline clips/s (16x112x112 CtP training clips and GOCA RGB+flow examples from 340x256 videos): the naive
  # reader, the mp4 files, ArrayRecord-of-mp4 and the prepared JPEG frames (TFDS), at 1 and 2 grain workers
  python scripts/benchmark.py --mode=pipeline --out /tmp/bench_pipeline.json
  # Flower deployment (docs/federated.md section 3a, run as written: TLS SuperLink + 2 SuperNodes on 127.0.0.1) on
  # the demo: the share of each round spent outside local training, warm workers vs Flower's process per message
  python scripts/benchmark.py --mode=federated --rounds=5 --variants=warm,subprocess --lab_dir=/tmp/fedvssl_bench
  # TV-L1 flow pairs/s at 256x340 (OpenCV's defaults): OpenCV per pair vs the batched JAX version at batch 1, 8, 32,
  # with each one's mean end-point error against the true flow of the generated pairs
  python scripts/benchmark.py --mode=flow --flow_pairs=32 --flow_batches=1,8,32

Train mode times full SGD steps (forward, backward, update; momentum 0.9, weight decay) of the classifier (backbone + fc
over 400 classes) on random clips, after warm-up/compilation, and reports steps/s, clips/s and achieved TFLOP/s (from
XLA's cost analysis of our step; torchvision is credited with the same FLOPs per step). `--out FILE.json` writes the
figures.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time

import numpy as np

from fedvssl_jax import cli


def _machine() -> str:
  import jax

  dev = jax.devices()[0]
  return f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs; jax {jax.__version__} on {dev.device_kind}"


def bench_jax(batch: int, frames: int, size: int, steps: int, warmup: int, dtype: str, arch: str) -> dict:
  import jax
  import jax.numpy as jnp
  import ml_collections
  import optax
  from flax import nnx

  from fedvssl_jax.models import layers
  from fedvssl_jax.models.classifier import VideoClassifier
  from fedvssl_jax.core import mesh as mesh_lib
  from fedvssl_jax.core import optim
  from fedvssl_jax.core import state as state_lib

  mesh = mesh_lib.make_mesh([("data", 1)])
  kwargs = {"dtype": jnp.bfloat16} if dtype == "bfloat16" else {}
  model = VideoClassifier(arch, kwargs, 400, 0.5, rngs=nnx.Rngs(0))
  model.train()
  cfg = ml_collections.ConfigDict(dict(lr=0.01, momentum=0.9, weight_decay=1e-4, grad_clip_norm=40.0,
                                       schedule="constant"))
  tx = optim.make_optimizer(cfg, optim.make_schedule(cfg, 1, 1))
  graphdef, state = state_lib.create_train_state(model, tx, mesh)

  def loss_fn(m, b, rng):
    logits = m(b["video"]).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, b["label"]).mean(), {}

  step = state_lib.make_train_step(graphdef, tx, loss_fn, mesh)
  rng = np.random.default_rng(0)
  clips = mesh_lib.put_batch({"video": rng.normal(size=(batch, frames, size, size, 3)).astype(np.float32),
                              "label": rng.integers(0, 400, size=(batch,)).astype(np.int32)}, mesh)
  key = jax.random.key(0)
  t0 = time.perf_counter()
  compiled = step.lower(state, clips, key).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", 0.0)) if cost else 0.0
  for _ in range(warmup):
    state, m = step(state, clips, key)
  jax.block_until_ready(m["loss"])
  t0 = time.perf_counter()
  for _ in range(steps):
    state, m = step(state, clips, key)
  jax.block_until_ready(m["loss"])
  dt = (time.perf_counter() - t0) / steps
  conv = "3-D convs per frame" if layers.conv3d_per_frame() else "native 3-D convs"
  return {"impl": f"fedvssl_jax {arch} (jax.jit, {conv})", "dtype": dtype, "steps_per_s": 1.0 / dt,
          "clips_per_s": batch / dt, "step_ms": 1000 * dt, "compile_s": compile_s, "flops_per_step": flops,
          "tflops": flops / dt / 1e12 if flops else None}


def bench_torch(batch: int, frames: int, size: int, steps: int, warmup: int, dtype: str, compile_model: bool,
                flops: float) -> dict:
  import torch
  import torchvision

  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.backends.cudnn.benchmark = True
  model = torchvision.models.video.r3d_18(num_classes=400).to(device).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
  fwd = torch.compile(model) if compile_model else model
  x = torch.randn(batch, 3, frames, size, size, device=device)
  y = torch.randint(0, 400, (batch,), device=device)
  autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      loss = torch.nn.functional.cross_entropy(fwd(x).float(), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 40.0)
    opt.step()
    return loss

  for _ in range(warmup):
    step()
  if device == "cuda":
    torch.cuda.synchronize()
  t0 = time.perf_counter()
  for _ in range(steps):
    loss = step()
  loss.item()
  if device == "cuda":
    torch.cuda.synchronize()
  dt = (time.perf_counter() - t0) / steps
  name = f"torchvision r3d_18 ({'torch.compile' if compile_model else 'eager'}) torch {torch.__version__}"
  return {"impl": name, "dtype": dtype, "steps_per_s": 1.0 / dt, "clips_per_s": batch / dt, "step_ms": 1000 * dt,
          "tflops": flops / dt / 1e12 if flops else None}


def bench_federated(rounds: int, variants: list[str], lab_root: str, extra_run_config: str, timeout_s: float
                    ) -> list[dict]:
  """Runs the documented one-machine deployment once per variant ("warm": SuperNodes with `--isolation process` and
  the ClientApp worker, as the doc; "subprocess": Flower's default, a fresh ClientApp process per message), one after
  the other, and returns each run's round overhead (`fedvssl_jax.federated.lab.round_overhead`, rounds >= 2)."""
  import shutil
  import subprocess

  from fedvssl_jax.federated import lab

  out = []
  for variant in variants:
    if variant not in ("warm", "subprocess"):
      raise ValueError(f"--variants: unknown {variant!r} (warm | subprocess)")
    lab_dir = os.path.join(os.path.abspath(lab_root), variant)
    for sub in ("run", "nodes", "state.db"):  # a fresh run; certificates and the Flower home are kept
      path = os.path.join(lab_dir, sub)
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)
    env = dict(os.environ, PYTHONPATH=lab.repo_root() + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    script = lab.lab_script(rounds, extra_run_config, warm=variant == "warm",
                            wait_for="$LAB/run/federated_summary.json")  # the doc's run workdir
    t0 = time.time()
    proc = lab.start_lab(script, lab_dir, lab.free_base_port(), env)
    print(f"[benchmark] {variant}: lab in {lab_dir}", flush=True)
    try:
      proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      pass
    finally:
      lab.stop_lab(proc)
    metrics = os.path.join(lab_dir, "run", "federated_metrics.jsonl")
    if not os.path.exists(metrics):
      raise RuntimeError(f"{variant}: no {metrics}\n{lab.log_tails(lab_dir)}")
    res = lab.round_overhead(metrics)
    res.update(variant=variant, wall_s=time.time() - t0, lab_dir=lab_dir)
    print(json.dumps(res), flush=True)
    out.append(res)
  return out


def bench_flow(pairs: int, batches: list[int], height: int, width: int) -> list[dict]:
  """Pairs/s of OpenCV's Dual TV-L1 (one pair per call, this process) and of `tvl1_batch` at each batch size, on the
  same `pairs` generated pairs (the four motions of `flow_pairs` in turn), OpenCV's default parameters."""
  import cv2
  import jax

  from input_pipeline import flow as flow_lib
  from input_pipeline import flow_pairs
  from input_pipeline import tvl1

  made = [flow_pairs.motion_pair(flow_pairs.MOTIONS[i % len(flow_pairs.MOTIONS)], height, width, seed=i)
          for i in range(pairs)]
  a = np.stack([m[0] for m in made])
  b = np.stack([m[1] for m in made])
  truth = np.stack([m[2] for m in made])
  results = []
  t0 = time.perf_counter()
  ref = np.stack([flow_lib.tvl1_flow(x, y) for x, y in zip(a, b)])
  dt = time.perf_counter() - t0
  row = {"impl": f"OpenCV {cv2.__version__} DualTVL1 (CPU, 1 process, {cv2.getNumThreads()} threads), per pair",
         "batch": 1, "pairs_per_s": pairs / dt, "epe": flow_pairs.endpoint_error(ref, truth, 4)}
  results.append(row)
  print(json.dumps(row), flush=True)
  af, bf = a.astype(np.float32), b.astype(np.float32)
  for batch in batches:
    t0 = time.perf_counter()
    jax.block_until_ready(tvl1.tvl1_batch(af[:batch], bf[:batch]))  # compile + warm-up
    compile_s = time.perf_counter() - t0
    out = []
    t0 = time.perf_counter()
    for start in range(0, pairs - batch + 1, batch):
      out.append(np.asarray(tvl1.tvl1_batch(af[start:start + batch], bf[start:start + batch])))
    dt = time.perf_counter() - t0
    got = np.concatenate(out)
    n = len(got)
    row = {"impl": f"fedvssl_jax tvl1_batch (jax {jax.__version__}, {jax.devices()[0].device_kind})", "batch": batch,
           "pairs_per_s": n / dt, "epe": flow_pairs.endpoint_error(got, truth[:n], 4),
           "diff_to_opencv": flow_pairs.endpoint_error(got, ref[:n]), "first_call_s": compile_s}
    results.append(row)
    print(json.dumps(row), flush=True)
  return results


def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__)
  p.add_argument("--mode", choices=["train", "pipeline", "federated", "flow"], default="train")
  p.add_argument("--arch", default="r3d_18")
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--frames", type=int, default=8)
  p.add_argument("--size", type=int, default=56)
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--dtypes", default="float32", help="comma-separated: float32,bfloat16")
  p.add_argument("--torch_compile", action="store_true", help="also time torchvision under torch.compile")
  p.add_argument("--no_torch", action="store_true")
  p.add_argument("--data_dir", default=os.path.join(os.path.expanduser("~"), ".cache", "fedvssl_jax", "bench_videos"))
  p.add_argument("--num_videos", type=int, default=24)
  p.add_argument("--seconds", type=float, default=20.0, help="pipeline: measuring time per reader")
  p.add_argument("--workers", default="0,1,2", help="pipeline: grain worker counts (0: in process, one thread)")
  p.add_argument("--no_goca", action="store_true", help="pipeline: CtP clips only (no GOCA RGB + flow examples)")
  p.add_argument("--rounds", type=int, default=5, help="federated: num-server-rounds")
  p.add_argument("--variants", default="warm,subprocess", help="federated: comma-separated warm,subprocess")
  p.add_argument("--lab_dir", default="/tmp/fedvssl_bench", help="federated: one lab directory per variant in here")
  p.add_argument("--run_config", default="", help="federated: more --run_config keys, escaped for a \"...\" string")
  p.add_argument("--timeout_s", type=float, default=3600.0, help="federated: limit per variant")
  p.add_argument("--flow_pairs", type=int, default=32, help="flow mode: frame pairs timed per setting")
  p.add_argument("--flow_batches", default="1,8,32", help="flow mode: comma-separated JAX batch sizes")
  p.add_argument("--flow_size", default="256x340", help="flow mode: HxW of the frames")
  p.add_argument("--out", default="", help="write the figures as JSON here")
  args = p.parse_args(argv)

  record = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(sys.argv),
            "machine": _machine(), "load_before": os.getloadavg(), "results": []}
  if args.mode == "federated":
    record["results"] = bench_federated(args.rounds, args.variants.split(","), args.lab_dir, args.run_config,
                                        args.timeout_s)
    record["load_after"] = os.getloadavg()
  elif args.mode == "flow":
    h, w = (int(v) for v in args.flow_size.lower().split("x"))
    batches = [int(v) for v in args.flow_batches.split(",")]
    if any(bs > args.flow_pairs for bs in batches):
      p.error(f"--flow_batches {args.flow_batches}: each batch must be at most --flow_pairs={args.flow_pairs}")
    record["results"].extend(bench_flow(args.flow_pairs, batches, h, w))
  elif args.mode == "pipeline":
    from input_pipeline import benchmark as pipeline_benchmark

    result = pipeline_benchmark.pipeline_benchmark(
        args.data_dir, num_videos=args.num_videos, seconds=args.seconds,
        workers=tuple(int(w) for w in args.workers.split(",")), goca=not args.no_goca)
    del record["results"]
    record.update(result)  # readers + best_clips_per_s_per_core / mp4_clips_per_s_per_core at the top level
  else:
    for dtype in args.dtypes.split(","):
      ours = bench_jax(args.batch, args.frames, args.size, args.steps, args.warmup, dtype, args.arch)
      record["results"].append(ours)
      print(json.dumps(ours), flush=True)
      if args.no_torch:
        continue
      try:
        import torch  # noqa: F401
      except ImportError:
        print("torch not installed: skipping the torchvision comparison", flush=True)
        continue
      variants = [False, True] if args.torch_compile else [False]
      for compile_model in variants:
        theirs = bench_torch(args.batch, args.frames, args.size, args.steps, args.warmup, dtype, compile_model,
                             ours["flops_per_step"])
        record["results"].append(theirs)
        print(json.dumps(theirs), flush=True)
  print(json.dumps(record, indent=2))
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(record, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
