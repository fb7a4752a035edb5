"""Benchmark of GPTQ at the record's 67 matrix shapes.

Shapes (parameter_golf.md §5.1, 11 layers): c_q 512×512, c_k 256×512, c_v 256×512, attn proj
512×512, mlp fc 2048×512, mlp proj 512×2048 per layer, plus the tied embedding 8192×512 (int7).
Baseline: ``gptq_quantize_ref`` in fp32 — the record's loop, one Python iteration per column,
with its chol → cholesky_inverse → chol factorization — at the same thread count.

Analytic cost of GPTQ on an N×K matrix with blocks of bs columns (``gptq_flops``): the in-block
updates N·K·bs flops, the lazy trailing updates N·K·(K − bs) flops, the factorization of H
(Cholesky K³/3 + triangular inverse K³/3 flops) — the 67 matrices total ≈ 104 GFLOP, 68 of them in the factorizations. Bytes:
W and H read in fp32, codes (int8) and scales (fp16) written.

Inputs are synthetic: W ~ N(0, 0.02²); H = S·(M·Mᵀ/64 + 0.1·I)·S with M (K×64) Gaussian and S
positive channel scales — positive definite with correlated channels, cheap to build at K = 2048.
c_q, c_k and c_v of a layer share one Hessian tensor, as in the record.
"""

from __future__ import annotations

import torch

from golf_fast.bench.case import Benchmark, BenchCase
from golf_fast.quant.gptq import gptq_quantize, gptq_quantize_batched, gptq_quantize_ref
from golf_fast.quant.recipe import RECORD_RECIPE

LAYERS = 11
ROLES = (("attn.c_q", 512, 512), ("attn.c_k", 256, 512), ("attn.c_v", 256, 512),
         ("attn.proj", 512, 512), ("mlp.fc", 2048, 512), ("mlp.proj", 512, 2048))
EMBEDDING = ("tok_emb", 8192, 512)


def _bits_and_clip(name: str) -> tuple[int, float]:
    """The record's (bits, clip sigmas) for a tensor name (``RECORD_RECIPE``)."""
    rule = RECORD_RECIPE.rule_for(name)
    return rule.bits, rule.clip_sigmas


def gptq_flops(n: int, k: int, bs: int = 128) -> float:
    """Analytic flops of GPTQ on an N×K matrix (see the module docstring)."""
    bs = min(bs, k)
    return float(n) * k * bs + float(n) * k * (k - bs) + 2.0 * k ** 3 / 3


def gptq_bytes(n: int, k: int) -> float:
    return 4.0 * n * k + 4.0 * k * k + n * k + 2.0 * n


def synthetic_hessian(k: int, device, generator: torch.Generator) -> torch.Tensor:
    m = torch.randn(k, 64, generator=generator)
    scale = 0.2 + 2 * torch.rand(k, generator=generator)
    h = (m @ m.T / 64 + 0.1 * torch.eye(k)) * scale[:, None] * scale[None, :]
    return h.to(device)


def record_matrices(device, seed: int = 0) -> list[tuple[str, torch.Tensor, torch.Tensor, int, float]]:
    """The 67 (name, W, H, bits, clip_sigmas) of the record, synthetic values (see above)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for layer in range(LAYERS):
        h_qkv = synthetic_hessian(512, device, g)
        for role, n, k in ROLES:
            h = h_qkv if role in ("attn.c_q", "attn.c_k", "attn.c_v") else synthetic_hessian(k, device, g)
            w = (0.02 * torch.randn(n, k, generator=g)).to(device)
            name = f"blocks.{layer}.{role}.weight"
            out.append((name, w, h, *_bits_and_clip(name)))
    role, n, k = EMBEDDING
    name = f"{role}.weight"
    out.append((name, (0.02 * torch.randn(n, k, generator=g)).to(device), synthetic_hessian(k, device, g),
                *_bits_and_clip(name)))
    return out


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_ours(mats, device) -> None:
    """All matrices with the package: batched by (shape, bits, clip) on CUDA, one by one on CPU."""
    if torch.device(device).type == "cuda":
        groups: dict = {}
        for name, w, h, bits, clip in mats:
            groups.setdefault((tuple(w.shape), bits, clip), []).append((w, h))
        for (shape, bits, clip), items in groups.items():
            gptq_quantize_batched(torch.stack([w for w, _ in items]), torch.stack([h for _, h in items]),
                                  bits=bits, clip_sigmas=clip)
    else:
        for name, w, h, bits, clip in mats:
            gptq_quantize(w, h, bits=bits, clip_sigmas=clip)
    _sync(device)


def run_eager(mats, device) -> None:
    for name, w, h, bits, clip in mats:
        gptq_quantize_ref(w, h, bits=bits, clip_sigmas=clip, dtype=torch.float32, compute_loss=False)
    _sync(device)


def _cases(device: torch.device) -> list[BenchCase]:
    cases = []
    shapes = list(dict.fromkeys([(n, k, *_bits_and_clip(f"blocks.0.{role}.weight")) for role, n, k in ROLES] +
                                [(*EMBEDDING[1:], *_bits_and_clip(f"{EMBEDDING[0]}.weight"))]))
    shapes = [s for i, s in enumerate(shapes) if all(s[:2] != t[:2] for t in shapes[:i])]
    for n, k, bits, clip in shapes:
        def make(dev, n=n, k=k):
            g = torch.Generator().manual_seed(n * 7 + k)
            return (0.02 * torch.randn(n, k, generator=g)).to(dev), synthetic_hessian(k, dev, g)

        cases.append(BenchCase(
            f"{n}x{k} int{bits}", make,
            lambda a, bits=bits, clip=clip: gptq_quantize(a[0], a[1], bits=bits, clip_sigmas=clip),
            lambda a, bits=bits, clip=clip: gptq_quantize_ref(a[0], a[1], bits=bits, clip_sigmas=clip,
                                                              dtype=torch.float32, compute_loss=False),
            flops=gptq_flops(n, k), bytes_moved=gptq_bytes(n, k), baseline="per-column PyTorch (record)"))
    if device.type == "cuda":
        total_flops = sum(gptq_flops(*w.shape) for _, w, _, _, _ in record_matrices("cpu"))
        total_bytes = sum(gptq_bytes(*w.shape) for _, w, _, _, _ in record_matrices("cpu"))
        cases.append(BenchCase("record: 67 matrices", lambda dev: (record_matrices(dev), dev),
                               lambda a: run_ours(*a), lambda a: run_eager(*a), flops=total_flops,
                               bytes_moved=total_bytes, baseline="per-column PyTorch (record)"))
    return cases


BENCHMARK = Benchmark(
    name="gptq",
    cases=_cases,
    description="GPTQ (act-order, SDClip, block 128) of one matrix, including the Hessian factorization",
    notes=["CPU 'ours' is the C++ in-block kernel with torch GEMMs; the 67-matrix total runs on CPU with "
           "`python benchmarks/bench_gptq.py` (too slow for repeated timing)",
           "the baseline factorizes with cholesky_inverse, which is slow on some CPU builds; "
           "bench_gptq.py also reports the in-block loop alone"],
)
