"""Benchmark of ``hessian_accumulate_`` (H += XᵀX) against the eager full GEMM the records use.

Baseline ("eager"): ``H.addmm_(X.float().T, X.float())`` — upcast, then both triangles; on CUDA
with TF32 allowed (``torch.set_float32_matmul_precision("high")``, as parameter-golf does).
"ours": ``golf_fast.hessian_accumulate_`` (the C++ kernel on CPU, the tensor-core kernel on CUDA).

Analytic counts of the operation: FLOPs ``T·K·(K+1)`` (one triangle plus the diagonal: the
symmetric update's arithmetic; a full GEMM counts ``2·T·K²``, about twice that), bytes
``T·K·itemsize(X) + 2·K²·4`` (X read once, H read and written).
CPU shapes: K ∈ {512, 2048}, T = 65,536 (the issue's CPU comparison, fp32 and bf16 X).
GPU shapes: K ∈ {512, 2048}, T = 1,572,864 (R0611's calibration tokens per rank), bf16 X.
"""

from __future__ import annotations

import torch

from golf_fast.bench.case import Benchmark, BenchCase
from golf_fast.ops.hessian import hessian_accumulate_

CPU_SHAPES = ((512, 65_536, torch.float32), (512, 65_536, torch.bfloat16),
              (2048, 65_536, torch.float32), (2048, 65_536, torch.bfloat16))
GPU_SHAPES = ((512, 1_572_864, torch.bfloat16), (2048, 1_572_864, torch.bfloat16))


def make_inputs(device: torch.device, k: int, t: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero fp32 (k, k) H and a (t, k) X of ``dtype``."""
    x = torch.randn(t, k, device=device, dtype=torch.float32).to(dtype)
    return torch.zeros(k, k, device=device), x


def eager_hessian(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The records' accumulation: upcast to fp32, full GEMM (TF32 allowed on CUDA)."""
    if h.is_cuda:
        old = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("high")
        try:
            xf = x.float()
            return h.addmm_(xf.T, xf)
        finally:
            torch.set_float32_matmul_precision(old)
    xf = x.float()
    return h.addmm_(xf.T, xf)


def _cases(device: torch.device) -> list[BenchCase]:
    cases = []
    for k, t, dtype in GPU_SHAPES if device.type == "cuda" else CPU_SHAPES:
        name = str(dtype).replace("torch.", "")
        cases.append(BenchCase(
            f"K={k} T={t} {name}",
            lambda dev, k=k, t=t, dtype=dtype: make_inputs(dev, k, t, dtype),
            lambda a: hessian_accumulate_(a[0], a[1]),
            lambda a: eager_hessian(a[0], a[1]),
            flops=float(t) * k * (k + 1),
            bytes_moved=float(t) * k * torch.finfo(dtype).bits / 8 + 2.0 * k * k * 4,
            baseline="H.addmm_(X.float().T, X.float())" + (" TF32" if device.type == "cuda" else "")))
    return cases


BENCHMARK = Benchmark(
    name="hessian",
    cases=_cases,
    description="GPTQ Hessian accumulation H += X^T X (symmetric rank-k update, fp32 H)",
    notes=["FLOPs counted as T*K*(K+1) (the symmetric update); a full GEMM does 2*T*K^2",
           "CPU: same thread count for both (torch.get_num_threads()); CPU timings are CPU timings",
           "GPU eager baseline allows TF32 (parameter-golf's setting)"],
)
