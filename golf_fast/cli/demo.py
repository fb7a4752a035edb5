"""``golf-fast demo``: a short tour of the kernels that exist, on whatever device is here.

Quantizes a random weight to int6 with SDClip scales, packs it into the kernels' layout, unpacks
it, checks the round trip bit for bit, and prints the backends that ran and what the installation
can do. On CPU the packing runs the C++ kernels of golf_fast._C (or the references).
"""

from __future__ import annotations

import argparse
import time

import torch

import golf_fast
from golf_fast.ops.dispatch import resolved_backends
from golf_fast.quant.formats import quantize_rtn
from golf_fast.quant.recipe import RECORD_RECIPE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rows", type=int, default=2048, help="rows of the demo weight (default 2048)")
    p.add_argument("--cols", type=int, default=512, help="columns of the demo weight (default 512)")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    print(golf_fast.status())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(args.seed)
    w = (torch.randn(args.rows, args.cols, generator=g) * 0.02).to(device)
    k = RECORD_RECIPE.default_clip_sigmas
    q = quantize_rtn(w, bits=RECORD_RECIPE.default_bits, clip_sigmas=k)
    t0 = time.perf_counter()
    packed = golf_fast.pack_int6(q.codes)
    back = golf_fast.unpack_int6(packed, args.cols)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) * 1e3
    exact = torch.equal(back, q.codes)
    err = float((q.dequantize() - w.float()).norm() / w.float().norm())
    print(f"\nint6 weight {args.rows}x{args.cols} on {device}: {q.codes.numel():,} codes -> "
          f"{packed.numel():,} packed bytes ({packed.numel() / q.codes.numel():.3f} byte/code)")
    print(f"pack + unpack: {dt:.2f} ms (first call, includes backend resolution)")
    print(f"round trip bit-exact: {exact}; relative error of the int6 weight (SDClip k={k}): {err:.4f}")
    print("backends used:", ", ".join(f"{k}={v}" for k, v in resolved_backends().items()))
    return 0 if exact else 1
