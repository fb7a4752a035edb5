"""LQER: a low-rank correction of the GPTQ residual on the matrices with the largest error (R0611, §5.3).

After GPTQ, every quantized matrix has a residual ``E = W − q·s`` (W the original weight). The
``top_k`` matrices by ``‖E‖_F`` get a rank-``r`` correction from the SVD ``E = U S Vᵀ``:
``A = U[:, :r]·S[:r]`` (N×r) and ``B = Vᵀ[:r, :]`` (r×K), stored quantized:

* asymmetric (the record's default, used when ``B.numel() % group == 0``):
  A as INT2 with one fp16 scale ``sA = max|A| / 1.5``, ``qA = clamp(round(A/sA), −2, 1)``;
  B as INT4 in groups of ``group`` consecutive elements of the flattened B,
  ``sB_g = max|B_g| / 7.5`` (fp16), ``qB = clamp(round(B/sB), −8, 7)``;
* symmetric fallback: per-row scales ``max|row| / m`` (fp16) with ``m = 2^(bits−1) − 1`` for
  both factors, ``q = clamp(round(x/s), −m, m)``.

Dequantized weight: ``W ≈ q·s_row + (qA·sA) @ (qB·sB)``. Scales are rounded to fp16 before they
are used, so stored and used values agree. All arithmetic in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from golf_fast.quant.formats import QuantizedTensor

ASYM = "asym"
SYM = "sym"


@dataclass
class LowRankFactors:
    """A quantized rank-r correction: ``(qA·sA) @ (qB·sB)`` of shape (N, K).

    ``scheme`` ``asym``: qA (N, r) int8 in [−2, 1], sA (1,) fp16, qB (r, K) int8 in [−8, 7],
    sB (r·K/group,) fp16 per group of the flattened qB. ``sym``: sA (N,) and sB (r,) fp16 per row,
    codes in [−m, m] with ``m = 2^(bits−1) − 1``.
    """

    qA: torch.Tensor
    sA: torch.Tensor
    qB: torch.Tensor
    sB: torch.Tensor
    scheme: str = ASYM
    group: int = 64
    bits: int = 4

    def __post_init__(self) -> None:
        for name in ("qA", "qB"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dtype != torch.int8 or t.dim() != 2:
                raise TypeError(f"{name}: expected a 2-D int8 tensor, got {getattr(t, 'dtype', type(t).__name__)}")
        for name in ("sA", "sB"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float16 or t.dim() != 1:
                raise TypeError(f"{name}: expected a 1-D float16 tensor")
        if self.qA.shape[1] != self.qB.shape[0]:
            raise ValueError(f"qA/qB: ranks differ ({self.qA.shape[1]} vs {self.qB.shape[0]})")
        if self.scheme == ASYM:
            if self.sA.numel() != 1 or self.qB.numel() % self.group or self.sB.numel() != self.qB.numel() // self.group:
                raise ValueError(f"sA/sB: asym factors need 1 A scale and one B scale per {self.group} elements")
        elif self.scheme == SYM:
            if self.sA.numel() != self.qA.shape[0] or self.sB.numel() != self.qB.shape[0]:
                raise ValueError("sA/sB: sym factors need one scale per row of qA and of qB")
        else:
            raise ValueError(f"scheme: expected {ASYM!r} or {SYM!r}, got {self.scheme!r}")

    @property
    def rank(self) -> int:
        return int(self.qA.shape[1])

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Dequantized (A (N, r), B (r, K)) in fp32."""
        if self.scheme == ASYM:
            a = self.qA.float() * self.sA.float()
            b = (self.qB.reshape(-1, self.group).float() * self.sB.float()[:, None]).reshape(self.qB.shape)
        else:
            a = self.qA.float() * self.sA.float()[:, None]
            b = self.qB.float() * self.sB.float()[:, None]
        return a, b

    def dense(self) -> torch.Tensor:
        """``A @ B`` (N, K) fp32."""
        a, b = self.factors()
        return a @ b


def pack_asym(a: torch.Tensor, b: torch.Tensor, group: int = 64) -> LowRankFactors:
    """A → INT2 with one scale, B → INT4 per ``group`` elements (the record's ``_lqer_pack_asym``)."""
    if b.numel() % group:
        raise ValueError(f"b: {b.numel()} elements are not a multiple of group={group}")
    a, b = a.float(), b.float()
    sA = (a.abs().amax().clamp_min(1e-10) / 1.5).to(torch.float16).reshape(1)
    qA = torch.clamp(torch.round(a / sA.float()), -2, 1).to(torch.int8)
    bf = b.reshape(-1, group)
    sB = (bf.abs().amax(dim=-1).clamp_min(1e-10) / 7.5).to(torch.float16)
    qB = torch.clamp(torch.round(bf / sB.float()[:, None]), -8, 7).to(torch.int8).reshape(b.shape)
    return LowRankFactors(qA, sA, qB, sB, ASYM, group, 4)


def pack_sym(a: torch.Tensor, b: torch.Tensor, bits: int = 4) -> LowRankFactors:
    """Both factors per-row symmetric with ``bits`` (the record's ``_lqer_pack``)."""
    if not (isinstance(bits, int) and 2 <= bits <= 8):
        raise ValueError(f"bits: expected an int in 2..8, got {bits!r}")
    m = 2 ** (bits - 1) - 1
    a, b = a.float(), b.float()
    sA = (a.abs().amax(dim=1).clamp_min(1e-10) / m).to(torch.float16)
    sB = (b.abs().amax(dim=1).clamp_min(1e-10) / m).to(torch.float16)
    qA = torch.clamp(torch.round(a / sA.float()[:, None]), -m, m).to(torch.int8)
    qB = torch.clamp(torch.round(b / sB.float()[:, None]), -m, m).to(torch.int8)
    return LowRankFactors(qA, sA, qB, sB, SYM, 64, bits)


def low_rank_factors(residual: torch.Tensor, rank: int = 4, *, asym: bool = True, group: int = 64,
                     factor_bits: int = 4) -> LowRankFactors:
    """Quantized rank-``rank`` SVD factors of ``residual`` (N, K); asym when ``r·K % group == 0``."""
    if not isinstance(residual, torch.Tensor) or residual.dim() != 2 or not residual.is_floating_point():
        raise TypeError("residual: expected a 2-D floating-point tensor")
    if not (isinstance(rank, int) and rank >= 1):
        raise ValueError(f"rank: expected an int >= 1, got {rank!r}")
    if not (isinstance(group, int) and group >= 1):
        raise ValueError(f"group: expected an int >= 1, got {group!r}")
    u, s, vh = torch.linalg.svd(residual.float().cpu(), full_matrices=False)
    r = min(rank, s.numel())
    a = (u[:, :r] * s[:r]).contiguous()
    b = vh[:r, :].contiguous()
    if asym and b.numel() % group == 0:
        return pack_asym(a, b, group)
    return pack_sym(a, b, factor_bits)


def select_top_k(errors: Mapping[str, float], top_k: int) -> list[str]:
    """Names of the ``top_k`` largest errors (ties: the earlier name in ``errors`` first)."""
    if not (isinstance(top_k, int) and top_k >= 0):
        raise ValueError(f"top_k: expected an int >= 0, got {top_k!r}")
    order = sorted(enumerate(errors.items()), key=lambda kv: (-kv[1][1], kv[0]))
    return [name for _, (name, _) in order[:top_k]]


# ---- artifact entries: the factors travel as bit-exact passthrough tensors next to their matrix

SUFFIXES = (".lqer.qA", ".lqer.sA", ".lqer.qB", ".lqer.sB")


def to_state_entries(name: str, f: LowRankFactors) -> dict[str, torch.Tensor]:
    """``{name.lqer.qA: ..., name.lqer.sB: ..., name.lqer.meta: int32 [scheme (0 asym, 1 sym), group, bits]}``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty tensor name, got {name!r}")
    if not isinstance(f, LowRankFactors):
        raise TypeError(f"f: expected LowRankFactors, got {type(f).__name__}")
    meta = torch.tensor([0 if f.scheme == ASYM else 1, f.group, f.bits], dtype=torch.int32)
    return {name + ".lqer.qA": f.qA, name + ".lqer.sA": f.sA, name + ".lqer.qB": f.qB, name + ".lqer.sB": f.sB,
            name + ".lqer.meta": meta}


def pop_state_entries(state: dict) -> dict[str, LowRankFactors]:
    """Remove the LQER entries of ``state`` (in place); return matrix name → factors."""
    if not isinstance(state, dict):
        raise TypeError(f"state: expected a dict name → tensor, got {type(state).__name__}")
    out: dict[str, LowRankFactors] = {}
    for key in [k for k in state if k.endswith(".lqer.meta")]:
        name = key[:-len(".lqer.meta")]
        try:
            meta = state.pop(key).tolist()
            parts = [state.pop(name + s) for s in SUFFIXES]
        except KeyError as e:
            raise ValueError(f"state: LQER entries of {name!r} are incomplete (missing {e})") from None
        out[name] = LowRankFactors(*parts, scheme=ASYM if meta[0] == 0 else SYM, group=int(meta[1]), bits=int(meta[2]))
    stray = [k for k in state if ".lqer." in k]
    if stray:
        raise ValueError(f"state: LQER entries without their .lqer.meta: {stray[:4]}")
    return out


def lqer_report(errors: Mapping[str, float], chosen: Optional[list[str]]) -> str:
    """One line: the chosen matrices and their residual norms."""
    chosen = chosen or []
    return "LQER: " + (", ".join(f"{n} (‖E‖={errors[n]:.4g})" for n in chosen) if chosen else "no matrices")


def residual_norms(tensors: Mapping[str, object], originals: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``‖W − q·s‖_F`` (fp32) of every ``QuantizedTensor`` in ``tensors`` against ``originals[name]``.

    ``tensors`` is a quantizer's output (name → QuantizedTensor or passthrough tensor); entries
    that are not QuantizedTensor are skipped.
    """
    out = {}
    for name, v in tensors.items():
        if isinstance(v, QuantizedTensor):
            if name not in originals:
                raise KeyError(f"originals: no original weight for quantized matrix {name!r}")
            out[name] = float((originals[name].detach().float().cpu() - v.dequantize().cpu()).norm())
    return out


def add_lqer(tensors: dict, originals: Mapping[str, torch.Tensor], *, top_k: int = 3, rank: int = 4,
             asym: bool = True, group: int = 64, factor_bits: int = 4,
             exclude: Optional[set] = None) -> tuple[list[str], dict[str, float]]:
    """Add LQER entries (:func:`to_state_entries`) for the ``top_k`` matrices of ``tensors`` with the
    largest GPTQ residual; returns (chosen names, every candidate's ‖E‖_F). ``exclude``: names that
    are not candidates (the int8 gates)."""
    exclude = exclude or set()
    cands = {k: v for k, v in tensors.items() if k not in exclude}
    errors = residual_norms(cands, originals)
    chosen = select_top_k(errors, top_k)
    for name in chosen:
        e = originals[name].detach().float().cpu() - tensors[name].dequantize().cpu()
        tensors.update(to_state_entries(name, low_rank_factors(e, rank, asym=asym, group=group,
                                                               factor_bits=factor_bits)))
    return chosen, errors


def fold_lqer(dense: dict[str, torch.Tensor], factors: Mapping[str, LowRankFactors]) -> dict[str, torch.Tensor]:
    """``W ← W + A·B`` (computed in fp32, stored back in W's dtype) for every matrix with factors
    (from :func:`pop_state_entries` of the quantized state); in place on ``dense``, which is returned."""
    for name, f in factors.items():
        if name not in dense:
            raise KeyError(f"factors: LQER factors for {name!r} but the state has no such matrix")
        w = dense[name]
        if tuple(w.shape) != (f.qA.shape[0], f.qB.shape[1]):
            raise ValueError(f"dense[{name!r}]: shape {tuple(w.shape)} does not match its LQER factors "
                             f"({f.qA.shape[0]}, {f.qB.shape[1]})")
        dense[name] = (w.float() + f.dense().to(w.device)).to(w.dtype)
    return dense
