"""Matmul rates of this machine at the shapes SmolLM2-135M trains with, against the square reference.

Run (on a quiet machine):  uv run --no-sync python bench/matmul_shapes.py [--tokens 730] [--dtype bfloat16]

bench/train_speed.py divides ft's achieved FLOP/s by a 2048 x 2048 matmul rate (its MFU). This script measures
torch.matmul at the products of one training step of a row: the frozen projections forward and their input
gradients, the LoRA factors forward and backward, and the LM head at the trained positions. It weighs each shape's rate by its share of the
step's matmul FLOPs, which gives the MFU a step would reach if it did nothing but these products, with no attention,
element-wise work or framework overhead. Writes bench/results/matmul_shapes.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
# SmolLM2-135M: hidden 576, 9 query heads and 3 key/value heads of 64, MLP 1536, 30 layers, vocabulary 49,152;
# LoRA rank 16 on every projection.
HIDDEN, KV, MLP, RANK, LAYERS, VOCAB = 576, 192, 1536, 16, 30, 49152
PROJECTIONS = {"q_proj": (HIDDEN, HIDDEN), "k_proj": (HIDDEN, KV), "v_proj": (HIDDEN, KV), "o_proj": (HIDDEN, HIDDEN),
               "gate_proj": (HIDDEN, MLP), "up_proj": (HIDDEN, MLP), "down_proj": (MLP, HIDDEN)}
SQUARE = 2048
SECONDS_PER_SHAPE = 1.0


def products(tokens: int, trained: int) -> list[tuple[str, int, int, int, int]]:
    """Return (name, m, k, n, times per step) of the matmuls of a row of `tokens` tokens, forward and backward."""
    shapes = []
    for name, (inputs, outputs) in PROJECTIONS.items():
        shapes += [
            (f"{name} forward", tokens, inputs, outputs, LAYERS),
            (f"{name} input gradient", tokens, outputs, inputs, LAYERS),
            (f"{name} LoRA A forward", tokens, inputs, RANK, LAYERS),
            (f"{name} LoRA B forward", tokens, RANK, outputs, LAYERS),
            (f"{name} LoRA B input gradient", tokens, outputs, RANK, LAYERS),
            (f"{name} LoRA B weight gradient", RANK, tokens, outputs, LAYERS),
            (f"{name} LoRA A input gradient", tokens, RANK, inputs, LAYERS),
            (f"{name} LoRA A weight gradient", inputs, tokens, RANK, LAYERS),
        ]
    shapes += [("lm_head forward (trained positions)", trained, HIDDEN, VOCAB, 1),
               ("lm_head input gradient", trained, VOCAB, HIDDEN, 1)]
    return shapes


def rate(torch, m: int, k: int, n: int, dtype) -> float:
    """Return the best FLOP/s of torch.matmul on (m x k) @ (k x n) over about SECONDS_PER_SHAPE seconds."""
    a = torch.randn(m, k, dtype=dtype)
    b = torch.randn(k, n, dtype=dtype)
    torch.matmul(a, b)  # warm-up: kernel selection
    best_s, spent = float("inf"), 0.0
    while spent < SECONDS_PER_SHAPE:
        started = time.perf_counter()
        torch.matmul(a, b)
        elapsed = time.perf_counter() - started
        best_s, spent = min(best_s, elapsed), spent + elapsed
    return 2 * m * k * n / best_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=730, help="row length (default: the speed benchmark's mean)")
    parser.add_argument("--trained", type=int, default=130, help="trained positions of the row (default: 18%%)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = parser.parse_args()

    import torch

    dtype = getattr(torch, args.dtype)
    square = rate(torch, SQUARE, SQUARE, SQUARE, dtype)
    rows, total_flops, total_seconds = [], 0.0, 0.0
    for name, m, k, n, times in products(args.tokens, args.trained):
        flops = 2 * m * k * n * times
        measured = rate(torch, m, k, n, dtype)
        total_flops += flops
        total_seconds += flops / measured
        rows.append({"product": name, "m": m, "k": k, "n": n, "times": times, "tflops": round(measured / 1e12, 3),
                     "share_of_square": round(measured / square, 3)})
    ceiling = total_flops / total_seconds / square
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "dtype": args.dtype,
        "tokens": args.tokens, "trained": args.trained, "square_tflops": round(square / 1e12, 3), "matmul_only_mfu_ceiling": round(ceiling, 3),
        "products": rows,
    }
    lines = [
        "# Matmul rates at SmolLM2-135M's training shapes",
        "",
        f"Command: `uv run --no-sync python bench/matmul_shapes.py --tokens {args.tokens} --trained {args.trained} "
        f"--dtype {args.dtype}` "
        f"({result['date']}), {result['logical_cores']} logical cores, {result['torch_threads']} torch threads.",
        "",
        f"Reference: {SQUARE} x {SQUARE} matmul, {result['square_tflops']:.3f} TFLOP/s. If a training step did nothing "
        f"but the products below, its MFU against that reference would be {ceiling:.3f}. Attention, element-wise work "
        "and framework overhead come on top in a real step.",
        "",
        "| product | m x k x n | times per step | TFLOP/s | share of the reference |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {r['product']} | {r['m']} x {r['k']} x {r['n']} | {r['times']} | {r['tflops']:.3f} | "
              f"{r['share_of_square']:.2f} |" for r in rows]
    RESULTS.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "src"))
    from ft.outputs import write_json_atomic, write_text_atomic

    write_json_atomic(RESULTS / "matmul_shapes.json", result)
    write_text_atomic(RESULTS / "matmul_shapes.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
