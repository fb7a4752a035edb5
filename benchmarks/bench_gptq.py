"""GPTQ benchmarks: the record's matrix shapes, ours vs the per-column PyTorch loop (same threads).

pytest-benchmark (one shape per test, few rounds):
    PYTHONPATH=. python -m pytest benchmarks/bench_gptq.py --benchmark-only
The 67-matrix total with a breakdown (factorization vs column loop), printed as a table:
    PYTHONPATH=. python benchmarks/bench_gptq.py --threads 2
"""

from __future__ import annotations

import argparse
import time

import pytest
import torch

from golf_fast.bench.cases.gptq import BENCHMARK, record_matrices
from golf_fast.quant.formats import sdclip_scales
from golf_fast.quant.gptq import gptq_quantize, gptq_quantize_ref, prepare_hessians, run_gptq
from golf_fast.quant.quantize_model import quantize_model
from golf_fast.quant.recipe import RECORD_RECIPE

_CASES = BENCHMARK.cases(torch.device("cpu"))


@pytest.mark.parametrize("case", _CASES, ids=[c.shape for c in _CASES])
@pytest.mark.parametrize("impl", ["ours", "eager"])
def test_gptq(benchmark, case, impl):
    inputs = case.make_inputs(torch.device("cpu"))
    fn = case.ours if impl == "ours" else case.eager
    benchmark.pedantic(fn, args=(inputs,), rounds=2, warmup_rounds=1)


def _loop_only(w, h, bits, clip, per_column: bool) -> float:
    """Seconds of the blocked column loop alone, with the factorization done beforehand."""
    factor = prepare_hessians(h[None], 0.01, True)
    s16 = sdclip_scales(w, bits, clip)[None]
    t0 = time.perf_counter()
    run_gptq(w[None], factor, h[None], s16, bits, 128, backend="reference" if per_column else "auto")
    return time.perf_counter() - t0


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions; the minimum is reported")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mats = record_matrices("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, min of {args.reps} interleaved runs")
    gptq_quantize(mats[0][1][:16], mats[0][2])  # warm up both paths
    gptq_quantize_ref(mats[0][1][:16], mats[0][2], dtype=torch.float32, compute_loss=False)

    ours = [float("inf")] * len(mats)
    eager = [float("inf")] * len(mats)
    model = float("inf")
    state = {name: w for name, w, _, _, _ in mats}
    hess = {name: h for name, _, h, _, _ in mats}
    for _ in range(args.reps):
        for i, (name, w, h, bits, clip) in enumerate(mats):
            ours[i] = min(ours[i], _timed(lambda: gptq_quantize(w, h, bits=bits, clip_sigmas=clip)))
            eager[i] = min(eager[i], _timed(lambda: gptq_quantize_ref(w, h, bits=bits, clip_sigmas=clip,
                                                                      dtype=torch.float32, compute_loss=False)))
        model = min(model, _timed(lambda: quantize_model(state, hess, RECORD_RECIPE)))

    print("\n| shape | count | ours s (each) | per-column eager s (each) | speedup | ours loop-only s | eager loop-only s |")
    print("|---|---|---|---|---|---|---|")
    shapes: dict = {}
    for i, (name, w, h, bits, clip) in enumerate(mats):
        shapes.setdefault(tuple(w.shape), []).append(i)
    for shape, idx in shapes.items():
        _, w, h, bits, clip = mats[idx[0]]
        lo = min(_loop_only(w, h, bits, clip, False) for _ in range(args.reps))
        le = min(_loop_only(w, h, bits, clip, True) for _ in range(args.reps))
        o, e = min(ours[i] for i in idx), min(eager[i] for i in idx)
        print(f"| {shape[0]}x{shape[1]} | {len(idx)} | {o:.3f} | {e:.3f} | {e / o:.2f}x | {lo:.3f} | {le:.3f} |")
    est_o = sum(len(idx) * min(ours[i] for i in idx) for idx in shapes.values())
    est_e = sum(len(idx) * min(eager[i] for i in idx) for idx in shapes.values())
    print(f"\n67 matrices, count x per-shape minimum: ours {est_o:.2f} s, per-column eager {est_e:.2f} s "
          f"-> {est_e / est_o:.2f}x  (least disturbed by other load on the machine)")
    t_ours, t_eager = sum(ours), sum(eager)
    print(f"67 matrices, per-column eager (record's loop), sum of per-matrix minima: {t_eager:.2f} s")
    print(f"67 matrices, gptq_quantize one by one, sum of per-matrix minima:      {t_ours:.2f} s "
          f"-> {t_eager / t_ours:.2f}x")
    print(f"67 matrices, quantize_model (q/k/v share a factorization), min total:  {model:.2f} s "
          f"-> {t_eager / model:.2f}x")


if __name__ == "__main__":
    main()
