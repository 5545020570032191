"""PyTorch reference for bench/attention: attention forward + backward, timed the same way.

Not part of the build or the tests (the project needs no Python). bench/attention --torch runs
it after its own sizes, with the engine's thread count, once in PyTorch's default setting and
once with GOMP_SPINCOUNT=0, and reports the faster beside its own figures; by hand:

    GOMP_SPINCOUNT=0 OMP_NUM_THREADS=2 python3 bench/reference/attention_torch.py [--sizes 512 1024]
        [--heads 8] [--head-dim 64] [--reps 3] [--threads 2] [--max-unfused-bytes B] [--json F]

For q, k, v of [1, heads, N, head_dim] in f32, requiring their gradients, and a fixed r of the
same shape, each variant computes o, the loss (o * r).sum() and its backward (dq, dk, dv):

    sdpa     o = F.scaled_dot_product_attention(q, k, v)   (no mask, not causal, no dropout)
    unfused  o = softmax(q @ kᵀ · scale) @ v               (written out: what bench/attention's
                                                            unfused graph computes)

Each is run once to warm up, then timed --reps times, the two interleaved; the median is
reported. The unfused variant holds [heads, N, N] tensors (the scores, the probabilities and
their two gradients, counted as four) and is skipped when they would exceed --max-unfused-bytes.
GFLOP/s counts the nominal work of bench/attention.cpp: 12·H·N²·D per forward + backward.

JSON keys, per size N: nN_sdpa_ms, nN_sdpa_gflops, nN_unfused_ms and nN_unfused_gflops (null when
skipped), nN_unfused_skipped; and torch_version, threads, heads, head_dim, reps.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F


def inputs(heads, n, head_dim):
    """q, k, v (requiring gradients) and r, uniform in [-1, 1), the same every run."""
    generator = torch.Generator().manual_seed(1)
    make = lambda: torch.rand(1, heads, n, head_dim, generator=generator) * 2 - 1
    q, k, v, r = make(), make(), make(), make()
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), r


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)


def unfused(q, k, v):
    scale = 1.0 / math.sqrt(q.shape[-1])
    return ((q @ k.transpose(-1, -2)) * scale).softmax(-1) @ v


def run_ms(attention, q, k, v, r):
    """One forward + backward, in milliseconds."""
    for x in (q, k, v):
        x.grad = None
    start = time.perf_counter()
    (attention(q, k, v) * r).sum().backward()
    return 1000 * (time.perf_counter() - start)


def measure(n, args):
    """The figures of one size, as JSON keys."""
    q, k, v, r = inputs(args.heads, n, args.head_dim)
    flops = 12.0 * args.heads * n * n * args.head_dim
    score_bytes = 4 * args.heads * n * n * 4
    variants = {"sdpa": sdpa}
    if score_bytes <= args.max_unfused_bytes:
        variants["unfused"] = unfused
    times = {name: [] for name in variants}
    for attention in variants.values():
        run_ms(attention, q, k, v, r)  # warm-up
    for _ in range(args.reps):
        for name, attention in variants.items():
            times[name].append(run_ms(attention, q, k, v, r))
    figures = {f"n{n}_unfused_skipped": "unfused" not in variants}
    for name in ("sdpa", "unfused"):
        ms = statistics.median(times[name]) if name in times else None
        figures[f"n{n}_{name}_ms"] = ms
        figures[f"n{n}_{name}_gflops"] = flops / ms / 1e6 if ms else None
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-unfused-bytes", type=float, default=6.0 * (1 << 30))
    parser.add_argument("--json")
    args = parser.parse_args()
    args.reps = max(args.reps, 3)  # as bench/attention does
    torch.set_num_threads(args.threads)
    report = {"torch_version": torch.__version__, "threads": args.threads, "heads": args.heads,
              "head_dim": args.head_dim, "reps": args.reps}
    print(f"{'N':>6}  {'sdpa ms':>10} {'unfused ms':>10}  {'sdpa GF/s':>9} {'unfus GF/s':>10}")
    for n in args.sizes:
        figures = measure(n, args)
        report.update(figures)
        sdpa_ms, unfused_ms = figures[f"n{n}_sdpa_ms"], figures[f"n{n}_unfused_ms"]
        unfused_text = f"{unfused_ms:10.1f}" if unfused_ms else f"{'-':>10}"
        unfused_rate = f"{figures[f'n{n}_unfused_gflops']:10.1f}" if unfused_ms else f"{'-':>10}"
        print(f"{n:>6}  {sdpa_ms:10.1f} {unfused_text}  {figures[f'n{n}_sdpa_gflops']:9.1f} {unfused_rate}", flush=True)
    print(json.dumps(report, indent=2, sort_keys=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
