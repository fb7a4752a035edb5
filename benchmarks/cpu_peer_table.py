"""CPU, one thread: golf_fast's ``auto`` against the record-script code it replaces, at peer shapes.

    PYTHONPATH=. python benchmarks/cpu_peer_table.py [--reps 15]

For each peer row of the softcapped-CE, LeakyReLU² MLP and Newton-Schulz benchmarks (the cases
whose shape ends in "(peer)" or starts with "peer"), times three things on the same inputs,
interleaved (one call of each per round, so load from other processes hits all three alike):
the record script's eager code (the case's baseline), ``auto`` (what a user gets on CPU), and
``backend="reference"`` (the precise reference, what ``auto`` ran on CPU before the composite
backends). Prints min and median milliseconds. CPU timings: they say nothing about the GPU kernels.
"""

from __future__ import annotations

import argparse
import time

import torch

from golf_fast.bench.cases import fused_mlp, newton_schulz, softcapped_ce
from golf_fast.ops.fused_mlp import leaky_relu_square_mlp
from golf_fast.ops.newton_schulz import newton_schulz as ns
from golf_fast.ops.softcapped_ce import softcapped_cross_entropy


def _reference_fn(family: str):
    if family == "softcapped_ce":
        return softcapped_ce._fwd_bwd(lambda z, t: softcapped_cross_entropy(z, t, softcapped_ce.SOFTCAP,
                                                                            backend="reference"))
    if family == "fused_mlp":
        return fused_mlp._fwd_bwd(lambda x, u, w: leaky_relu_square_mlp(x, u, w, fused_mlp.SLOPE, backend="reference"))
    return lambda g: ns(g, newton_schulz.STEPS, "quintic", backend="reference")


def _time(fns: dict, reps: int) -> dict:
    for f in fns.values():
        f()
    times: dict = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: (min(v) * 1e3, sorted(v)[len(v) // 2] * 1e3) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    print("CPU, 1 thread; ms as min / median of", args.reps, "interleaved rounds")
    print(f"{'family':14s} {'shape':34s} {'record script':>16s} {'auto':>16s} {'reference':>16s}")
    for family, bench in (("softcapped_ce", softcapped_ce.BENCHMARK), ("fused_mlp", fused_mlp.BENCHMARK),
                          ("newton_schulz", newton_schulz.BENCHMARK)):
        for case in bench.cases(cpu):
            if not (case.shape.endswith("(peer)") or case.shape.startswith("peer")):
                continue
            torch.manual_seed(0)
            inputs = case.make_inputs(cpu)
            ref = _reference_fn(family)
            got = _time({"peer": lambda: case.eager(inputs), "auto": lambda: case.ours(inputs),
                         "reference": lambda: ref(inputs)}, args.reps)
            cells = [f"{got[k][0]:7.1f} / {got[k][1]:6.1f}" for k in ("peer", "auto", "reference")]
            print(f"{family:14s} {case.shape:34s} " + " ".join(f"{c:>16s}" for c in cells))


if __name__ == "__main__":
    main()
