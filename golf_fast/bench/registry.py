"""The benchmark modules ``golf-fast bench`` knows; one line per kernel family."""

from __future__ import annotations

import importlib

from golf_fast.bench.case import Benchmark

BENCH_MODULES = (
    "golf_fast.bench.cases.int6_pack",
    "golf_fast.bench.cases.int6_matmul",
    "golf_fast.bench.cases.newton_schulz",
    "golf_fast.bench.cases.hessian",
    "golf_fast.bench.cases.gptq",
    "golf_fast.bench.cases.muon_step",
    "golf_fast.bench.cases.int6_eval",
    "golf_fast.bench.cases.softcapped_ce",
    "golf_fast.bench.cases.fused_mlp",
)


def benchmarks() -> dict[str, Benchmark]:
    out: dict[str, Benchmark] = {}
    for mod in BENCH_MODULES:
        bench = importlib.import_module(mod).BENCHMARK
        out[bench.name] = bench
    return out
