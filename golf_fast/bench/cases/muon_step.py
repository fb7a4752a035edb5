"""Benchmark of one Muon step over a rank's bank shards: CUDA-graph replay vs eager vs torch.compile.

Shapes (GPU): the per-rank shards of the 8-GPU record, qo (3, 512, 512), kv (3, 256, 512),
mlp_up (2, 2048, 512), mlp_down (2, 512, 2048), stepped as one single-process Muon (momentum,
MuonEq-R, Newton-Schulz, weight decay, apply; no collectives) with the record's settings.

* ours: :class:`golf_fast.optim.GraphedOptimizerStep` (warmed up and captured in
  ``make_inputs``): two ``fill_`` launches and one graph replay per step;
* ``vs eager``: ``Muon.step()`` eagerly (the same Triton Newton-Schulz, ~100 launches from Python);
* ``vs torch.compile``: the records' way, the reference step with Newton-Schulz under
  ``torch.compile(dynamic=False, fullgraph=True)`` and the rest eager.

Prediction (H100; arithmetic, not measured): Newton-Schulz FLOPs per rank 63 GFLOP
(``newton_schulz.ns_flops``: qo 12.1 + kv 2.5 + mlp 2×24.2) → 0.1–0.3 ms of GPU time at
200–600 TFLOP/s on these small matrices; the eager step issues 4 × 17 Triton launches
(~8 µs of Python each) + ~32 torch ops (~5 µs) ≈ 0.7 ms of host time, so it is host-bound at
≈ 0.7 ms; the graphed step costs ~20 µs of host time and is GPU-bound at ≈ 0.2–0.4 ms
(kernels plus ~1 µs gaps between ~100 graph nodes); torch.compile'd NS ≈ 0.4–0.6 ms
(cuBLAS bmm per NS line, fused elementwise, ~20 launches per bank from a compiled graph).

On CPU there is no CUDA graph: 'ours' is the eager step with device hyperparameters (the same
tensor work) at quarter-size shapes; CPU rows say nothing about the GPU.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from golf_fast.bench.case import Benchmark, BenchCase
from golf_fast.bench.cases.newton_schulz import CPU_PER_RANK, PER_RANK, ns_flops
from golf_fast.ops.newton_schulz import newton_schulz_ref
from golf_fast.optim import GraphedOptimizerStep, Muon, shape_scale

SETTINGS = dict(lr=0.026, momentum=0.97, weight_decay=0.095, row_normalize=True)


def _params(shapes, dev):
    params = [torch.nn.Parameter(torch.randn(s, device=dev) * 0.02) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def _ours_inputs(shapes):
    def make(dev):
        params = _params(shapes, dev)
        opt = Muon(params, **SETTINGS)
        if dev.type == "cuda":
            step = GraphedOptimizerStep(opt, warmup_steps=2)
            for _ in range(3):  # two eager warm-up steps, then capture
                step.step()
            return step.step
        opt.enable_device_hyperparameters()
        return opt.step
    return make


@lru_cache(maxsize=None)
def _compiled_ns():
    return torch.compile(lambda u: newton_schulz_ref(u, 5), dynamic=False, fullgraph=True)


def _reference_step(params, bufs, compiled):
    """The records' Muon step (reference §4.1) with NS eager or compiled."""
    ns = _compiled_ns() if compiled else (lambda u: newton_schulz_ref(u, 5))
    lr, mu, wd = SETTINGS["lr"], SETTINGS["momentum"], SETTINGS["weight_decay"]
    with torch.no_grad():
        for p, buf in zip(params, bufs):
            g = p.grad
            buf.mul_(mu).add_(g)
            u = g.add(buf, alpha=mu)
            u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-7)
            u = ns(u)
            p.mul_(1 - lr * wd)
            p.add_(u.to(p.dtype), alpha=-lr * shape_scale(p.shape[-2], p.shape[-1]))


def _case(name: str, shapes, baseline: str) -> BenchCase:
    flops = sum(ns_flops(s) for s in shapes)
    moved = float(sum(torch.Size(s).numel() for s in shapes) * 4 * 5)  # p r/w, grad r, momentum r/w (fp32)

    def make(dev):
        ours = _ours_inputs(shapes)(dev)
        if baseline == "eager":
            opt = Muon(_params(shapes, dev), **SETTINGS)
            return ours, opt.step
        params = _params(shapes, dev)
        bufs = [torch.zeros_like(p) for p in params]
        return ours, (lambda: _reference_step(params, bufs, compiled=True))

    return BenchCase(f"{name} vs {baseline}", make, lambda a: a[0](), lambda a: a[1](), flops=flops, bytes_moved=moved,
                     baseline={"eager": "eager Muon.step (our Triton NS)",
                               "torch.compile": "records' step, NS under torch.compile"}[baseline])


def _cases(device: torch.device) -> list[BenchCase]:
    shapes = list((PER_RANK if device.type == "cuda" else CPU_PER_RANK).values())
    return [_case("per-rank Muon step (4 banks)", shapes, b) for b in ("eager", "torch.compile")]


BENCHMARK = Benchmark(
    name="muon_step",
    cases=_cases,
    description="one Muon step over a rank's four bank shards: CUDA-graph replay vs eager vs torch.compile'd NS",
    notes=["predicted on H100 (not measured): graphed 0.2-0.4 ms, eager 0.7 ms (host-bound), "
           "torch.compile'd NS 0.4-0.6 ms; see the case module's docstring for the arithmetic",
           "on CPU 'ours' is the eager step (no CUDA graphs): CPU rows time PyTorch only"],
)
