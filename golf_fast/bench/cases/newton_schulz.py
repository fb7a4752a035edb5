"""Benchmark of Newton-Schulz (5 Polar Express steps, bf16) at parameter-golf's bank shapes.

Shapes (GPU): the per-rank shards of the 8-GPU record — qo (3, 512, 512), kv (3, 256, 512),
mlp_up (2, 2048, 512), mlp_down (2, 512, 2048) — one case per bank plus "per-rank step" (all
four banks, what one rank runs per optimizer step), and the whole unsharded banks — (22, 512,
512), (22, 256, 512), (11, 2048, 512), (11, 512, 2048) — as a single GPU would run them.
Baselines: eager PyTorch (``newton_schulz_ref``, the records' function) and the same function
under ``torch.compile(dynamic=False, fullgraph=True)`` (what R0611 runs).

Counts per matrix (wide orientation m <= n), 5 steps: FLOPs of the plain algorithm
``5·(2m²n + 2m³ + 2m²n)`` (the symmetric kernels skip about half of the first two products, so
% of roofline can exceed what a plain GEMM could reach); bytes: the unavoidable input read
(fp32, 4 B) and output write (bf16, 2 B).

Launches per call: ours ``2 + 3·steps`` = 17 for any batch; eager: ``eager_launches()``
counts the reference's non-view aten ops (one CUDA kernel each in eager mode).

On CPU 'ours' is the eager reference too (no CPU kernel; Triton runs only on GPUs or in the
slow interpreter), at quarter-size shapes: the CPU rows time the reference against
torch.compile, not our kernels. The reference is the R0611 function op for op, so ``auto`` on CPU
is that function (bit-identical). The peer rows (CPU only, ``PEER_CPU_SHAPES``) time
``newton_schulz(G, 5, "quintic")`` against the root train_gpt.py's ``zeropower_via_newtonschulz5``
(``root_zeropower``), the function a user swaps out, on single matrices.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from golf_fast.bench.case import Benchmark, BenchCase
from golf_fast.ops.newton_schulz import launches_per_call, newton_schulz, newton_schulz_ref

STEPS = 5
PER_RANK = {"qo": (3, 512, 512), "kv": (3, 256, 512), "mlp_up": (2, 2048, 512), "mlp_down": (2, 512, 2048)}
FULL_BANKS = {"qo": (22, 512, 512), "kv": (22, 256, 512), "mlp_up": (11, 2048, 512), "mlp_down": (11, 512, 2048)}
CPU_PER_RANK = {"qo": (3, 128, 128), "kv": (3, 64, 128), "mlp_up": (2, 512, 128), "mlp_down": (2, 128, 512)}
PEER_CPU_SHAPES = ((512, 512), (2048, 512))


def root_zeropower(G: torch.Tensor, steps: int = 10, eps: float = 1e-7) -> torch.Tensor:
    """The root train_gpt.py's ``zeropower_via_newtonschulz5`` (openai/parameter-golf), verbatim."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16()
    X /= X.norm() + eps
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if transposed else X


def _peer_case(shape: tuple[int, int]) -> BenchCase:
    return BenchCase(f"peer {shape} quintic", lambda dev: torch.randn(shape, device=dev),
                     lambda g: newton_schulz(g, STEPS, "quintic"), lambda g: root_zeropower(g, STEPS),
                     flops=ns_flops((1, *shape)), bytes_moved=ns_bytes((1, *shape)), baseline="eager PyTorch")


def ns_flops(shape: tuple[int, int, int], steps: int = STEPS) -> float:
    b, r, c = shape
    m, n = min(r, c), max(r, c)
    return float(b * steps * (4 * m * m * n + 2 * m ** 3))


def ns_bytes(shape: tuple[int, int, int]) -> float:
    b, r, c = shape
    return float(b * r * c * (4 + 2))


def eager_launches(shape: tuple[int, int, int], steps: int = STEPS) -> int:
    """Non-view aten ops of one eager ``newton_schulz_ref`` call (= CUDA launches in eager mode)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view and func.overloadpacket.__name__ != "_unsafe_view":  # views launch nothing
                Count.n += 1
            return func(*args, **(kwargs or {}))

    g = torch.randn(shape[0], 8, 16) if shape[1] <= shape[2] else torch.randn(shape[0], 16, 8)  # same op list
    with Count():
        newton_schulz_ref(g, steps)
    return Count.n


@lru_cache(maxsize=None)
def _compiled_ref():
    return torch.compile(lambda g: newton_schulz_ref(g, STEPS), dynamic=False, fullgraph=True)


def _case(name: str, shapes: list[tuple[int, int, int]], compiled: bool) -> BenchCase:
    def make(dev):
        return [torch.randn(s, device=dev, dtype=torch.float32) for s in shapes]

    def ours(inputs):
        return [newton_schulz(g, STEPS) for g in inputs]

    if compiled:
        def base(inputs):
            fn = _compiled_ref()
            return [fn(g) for g in inputs]
    else:
        def base(inputs):
            return [newton_schulz_ref(g, STEPS) for g in inputs]

    return BenchCase(name, make, ours, base, flops=sum(ns_flops(s) for s in shapes),
                     bytes_moved=sum(ns_bytes(s) for s in shapes),
                     baseline="torch.compile" if compiled else "eager PyTorch")


def _cases(device: torch.device) -> list[BenchCase]:
    per_rank = PER_RANK if device.type == "cuda" else CPU_PER_RANK
    cases = []
    for compiled in (False, True):
        for bank, shape in per_rank.items():
            cases.append(_case(f"{bank} {shape}", [shape], compiled))
        cases.append(_case("per-rank step (4 banks)", list(per_rank.values()), compiled))
        if device.type == "cuda":
            for bank, shape in FULL_BANKS.items():
                cases.append(_case(f"{bank} full {shape}", [shape], compiled))
    if device.type != "cuda":
        cases.extend(_peer_case(s) for s in PEER_CPU_SHAPES)
    return cases


BENCHMARK = Benchmark(
    name="newton_schulz",
    cases=_cases,
    description="Newton-Schulz orthogonalization, 5 Polar Express steps in bf16, batched per parameter bank",
    notes=[f"launches per call: ours {launches_per_call(STEPS)} (2 + 3 x steps) for any batch; eager "
           "PyTorch: see eager_launches() (non-view aten ops of the reference)",
           "on CPU 'ours' runs the eager reference (no CPU kernel): CPU rows compare the reference with "
           "torch.compile at quarter-size shapes"],
)
