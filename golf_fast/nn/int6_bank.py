"""Int6 parameter banks: a stack of int6 matrices a model's forward uses in place of bank slices.

The record model keeps its matrices in 3-D banks (``qo_bank (2L, d, d)`` ...) and its forward
takes slice ``bank[i]``. ``Int6Bank`` holds the same stack as packed int6 codes (0.75 byte per
weight, the layout of ``golf_fast.ops.int6_pack``) and per-row fp16 scales; ``bank[i]`` is an
:class:`Int6Matrix` (views, no copy) that :func:`bank_linear` multiplies with straight from the
codes, through ``golf_fast.int6_linear`` (the fused Triton kernel on CUDA, its eager reference
on CPU). Nothing is dequantized to a bf16 matrix.

Math, shapes, dtypes
--------------------
``Int6Bank``: ``packed`` (B, N, packed_row_bytes(K)) uint8, ``scales`` (B, N) float16; optional
per-matrix low-rank terms ``lowrank_a`` (B, N, r) and ``lowrank_b`` (B, r, K) (an LQER
correction), so matrix ``i`` is ``W_i = code_i · s_i[:, None] + A_i·B_i``.

:func:`bank_linear` ``(x, w, lowrank=None)``: ``x (..., K) → (..., N)``,
``x·Wᵀ + x·(A·B)ᵀ`` for a dense ``w`` (N, K) (``F.linear`` in x's dtype) or an
:class:`Int6Matrix` (fp32 accumulation, rounded once to x's dtype). Activations must be bf16 or
fp16 for the int6 path, or float32 under an active autocast (cast to the autocast dtype, as
autocast does for ``F.linear``); float32 activations without autocast take the eager fp32
reference ``int6_linear_ref`` (CPU evaluation in fp32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from golf_fast.ops.int6_matmul import int6_linear, int6_linear_ref
from golf_fast.ops.int6_pack import check_int6_codes, pack_int6, packed_row_bytes, unpack_int6

LowRank = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Int6Matrix:
    """One matrix of an :class:`Int6Bank` (views into its buffers).

    ``packed`` (N, packed_row_bytes(K)) uint8, ``scales`` (N,) float16, ``in_features`` = K,
    ``lowrank`` = (A (N, r), B (r, K)) or None.
    """

    packed: torch.Tensor
    scales: torch.Tensor
    in_features: int
    lowrank: Optional[LowRank] = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.packed.shape[0], self.in_features)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``code · s (+ A·B)`` as a dense (N, K) matrix in ``dtype`` (computed in fp32)."""
        w = unpack_int6(self.packed, self.in_features).to(torch.float32) * self.scales.to(torch.float32)[:, None]
        if self.lowrank is not None:
            w = w + self.lowrank[0].to(torch.float32) @ self.lowrank[1].to(torch.float32)
        return w.to(dtype)


def _cat_lowrank(first: Optional[LowRank], second: Optional[LowRank]) -> Optional[LowRank]:
    """``x·(A1·B1)ᵀ + x·(A2·B2)ᵀ = x·([A1 A2]·[B1; B2])ᵀ``: two low-rank terms as one (in fp32)."""
    if first is None or second is None:
        return first if second is None else second
    a = torch.cat((first[0].to(torch.float32), second[0].to(torch.float32)), dim=1)
    b = torch.cat((first[1].to(torch.float32), second[1].to(torch.float32)), dim=0)
    return a, b


def _check_lowrank(lowrank, n: int, k: int, name: str = "lowrank") -> None:
    if not isinstance(lowrank, (tuple, list)) or len(lowrank) != 2 or \
            not all(isinstance(t, torch.Tensor) for t in lowrank):
        raise TypeError(f"{name}: expected a pair of tensors (A (N, r), B (r, K))")
    a, b = lowrank
    if a.dim() != 2 or b.dim() != 2 or a.shape[0] != n or b.shape[1] != k or a.shape[1] != b.shape[0]:
        raise ValueError(f"{name}: expected A ({n}, r) and B (r, {k}), got {tuple(a.shape)} and {tuple(b.shape)}")


def bank_linear(x: torch.Tensor, w, lowrank: Optional[LowRank] = None) -> torch.Tensor:
    """``x·Wᵀ (+ x·(A·B)ᵀ)`` for a dense bank slice ``w`` (N, K) or an :class:`Int6Matrix`.

    Dense: ``F.linear(x, w.to(x.dtype))`` (what the model does with float banks) plus the
    low-rank term in x's dtype. Int6: ``golf_fast.int6_linear`` from the packed codes, with the
    matrix's own low-rank term and ``lowrank`` merged into the op's one low-rank term (gradients
    reach x, A and B). See the module docstring for the activation dtypes.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if isinstance(w, torch.Tensor):
        if w.dim() != 2 or w.shape[1] != x.shape[-1]:
            raise ValueError(f"w: expected a (N, {x.shape[-1]}) matrix, got {tuple(w.shape)}")
        y = F.linear(x, w.to(x.dtype))
        if lowrank is not None:
            _check_lowrank(lowrank, w.shape[0], w.shape[1])
            y = y + F.linear(F.linear(x, lowrank[1].to(y.dtype)), lowrank[0].to(y.dtype))
        return y
    if not isinstance(w, Int6Matrix):
        raise TypeError(f"w: expected a torch.Tensor or an Int6Matrix, got {type(w).__name__}")
    n, k = w.shape
    if x.shape[-1] != k:
        raise ValueError(f"x: expected (..., {k}) for an int6 matrix with {k} input features, got {tuple(x.shape)}")
    if lowrank is not None:
        _check_lowrank(lowrank, n, k)
    lr = _cat_lowrank(w.lowrank, lowrank)
    if x.dtype in (torch.bfloat16, torch.float16):
        return int6_linear(x, w.packed, w.scales, None, lr)
    if torch.is_autocast_enabled(x.device.type):
        return int6_linear(x.to(torch.get_autocast_dtype(x.device.type)), w.packed, w.scales, None, lr)
    if x.dtype != torch.float32:
        raise TypeError(f"x: expected bfloat16, float16 or float32 activations, got {x.dtype}")
    return int6_linear_ref(x, w.packed, w.scales, None, *(lr if lr is not None else (None, None)))


def lora_linear(x: torch.Tensor, w, lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float) -> torch.Tensor:
    """Base matrix plus per-row LoRA adapters: ``y[b] = x[b]·Wᵀ + scale·(x[b]·A[b]ᵀ)·B[b]ᵀ``.

    ``x`` (nb, T, K); ``w`` a dense (N, K) bank slice or an :class:`Int6Matrix`; ``lora_a``
    (nb, r, K) and ``lora_b`` (nb, N, r): one adapter per row ``b`` (per document in score-first
    TTT); ``scale`` = α/r. Returns (nb, T, N) in x's dtype (int6: the autocast dtype for fp32 x
    under autocast). Gradients reach x, ``lora_a`` and ``lora_b``.

    With one row and an int6 base the adapter is fused into the int6 op as its low-rank term,
    ``lowrank = (scale·B[0], A[0])`` (``x·A[0]ᵀ·(scale·B[0])ᵀ``; merged with an LQER term if the
    matrix has one): one launch, fp32 accumulation, the op's own backward for A and B. Otherwise the
    base is :func:`bank_linear` and the adapters are two batched fp32 matmuls (``torch.bmm``) added
    to the base in fp32 and rounded once more to the base's dtype.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x: expected (nb, T, K) activations, got {tuple(getattr(x, 'shape', ()))}")
    nb, _, k = x.shape
    if not isinstance(w, (torch.Tensor, Int6Matrix)):
        raise TypeError(f"w: expected a dense (N, K) tensor or an Int6Matrix, got {type(w).__name__}")
    n = w.shape[0]
    for name, t, want in (("lora_a", lora_a, (nb, None, k)), ("lora_b", lora_b, (nb, n, None))):
        if not isinstance(t, torch.Tensor) or t.dim() != 3 or t.shape[0] != want[0] or \
                any(v is not None and t.shape[i] != v for i, v in enumerate(want)):
            raise ValueError(f"{name}: expected shape {tuple('r' if v is None else v for v in want)}, got "
                             f"{tuple(getattr(t, 'shape', ()))}")
    if lora_a.shape[1] != lora_b.shape[2]:
        raise ValueError(f"lora_b: rank {lora_b.shape[2]} differs from lora_a's {lora_a.shape[1]}")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise TypeError(f"scale: expected a number (alpha / rank), got {type(scale).__name__}")
    if nb == 1 and isinstance(w, Int6Matrix):
        return bank_linear(x, w, (lora_b[0] * scale, lora_a[0]))
    y = bank_linear(x, w)
    x32 = x.to(y.dtype).to(torch.float32)  # the activations the base product saw
    h = torch.bmm(x32, lora_a.transpose(1, 2).to(torch.float32))
    return (y.to(torch.float32) + torch.bmm(h, lora_b.transpose(1, 2).to(torch.float32)) * scale).to(y.dtype)


class Int6Bank(nn.Module):
    """A (B, N, K) stack of int6 matrices (see the module docstring); ``bank[i]`` is an Int6Matrix."""

    def __init__(self, num_matrices: int, out_features: int, in_features: int, *, lowrank_rank: int = 0,
                 lowrank_dtype: torch.dtype = torch.bfloat16, device: Optional[torch.device] = None) -> None:
        super().__init__()
        for name, v in (("num_matrices", num_matrices), ("out_features", out_features),
                        ("in_features", in_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        if not isinstance(lowrank_rank, int) or isinstance(lowrank_rank, bool) or lowrank_rank < 0:
            raise ValueError(f"lowrank_rank: expected an int >= 0, got {lowrank_rank!r}")
        self.num_matrices, self.out_features, self.in_features = num_matrices, out_features, in_features
        self.lowrank_rank = lowrank_rank
        zero_row = pack_int6(torch.zeros(1, in_features, dtype=torch.int8))  # code 0: a valid all-zero weight
        self.register_buffer("packed", zero_row.expand(num_matrices * out_features, -1)
                             .reshape(num_matrices, out_features, -1).clone().to(device))
        self.register_buffer("scales", torch.ones(num_matrices, out_features, dtype=torch.float16, device=device))
        if lowrank_rank:
            self.register_buffer("lowrank_a", torch.zeros(num_matrices, out_features, lowrank_rank,
                                                          dtype=lowrank_dtype, device=device))
            self.register_buffer("lowrank_b", torch.zeros(num_matrices, lowrank_rank, in_features,
                                                          dtype=lowrank_dtype, device=device))
        else:
            self.lowrank_a = self.lowrank_b = None

    @classmethod
    def from_quantized(cls, codes: Sequence[torch.Tensor], scales: Sequence[torch.Tensor],
                       lowrank: Optional[Sequence[LowRank]] = None, *,
                       lowrank_dtype: torch.dtype = torch.bfloat16) -> "Int6Bank":
        """From per-matrix (N, K) int8 codes in [-31, 31] and (N,) scales (cast to fp16), all one shape."""
        if not isinstance(codes, (list, tuple)) or not codes:
            raise ValueError("codes: expected a non-empty list of (N, K) int8 code matrices")
        if not isinstance(scales, (list, tuple)) or len(scales) != len(codes):
            raise ValueError(f"scales: expected a list of {len(codes)} (N,) scale vectors, one per matrix")
        n, k = codes[0].shape if codes[0].dim() == 2 else (0, 0)
        for i, (c, s) in enumerate(zip(codes, scales)):
            check_int6_codes(c, f"codes[{i}]")
            if tuple(c.shape) != (n, k):
                raise ValueError(f"codes[{i}]: expected shape ({n}, {k}) like codes[0], got {tuple(c.shape)}")
            if not isinstance(s, torch.Tensor) or not s.is_floating_point() or tuple(s.shape) != (n,):
                raise ValueError(f"scales[{i}]: expected a float tensor of shape ({n},), got "
                                 f"{getattr(s, 'dtype', type(s).__name__)} {tuple(getattr(s, 'shape', ()))}")
        rank = 0
        if lowrank is not None:
            if not isinstance(lowrank, (list, tuple)) or len(lowrank) != len(codes):
                raise ValueError(f"lowrank: expected a list of {len(codes)} (A, B) pairs, one per matrix")
            for i, lr in enumerate(lowrank):
                _check_lowrank(lr, n, k, f"lowrank[{i}]")
            rank = lowrank[0][0].shape[1]
            if any(lr[0].shape[1] != rank for lr in lowrank):
                raise ValueError("lowrank: every matrix's low-rank term must have the same rank")
        bank = cls(len(codes), n, k, lowrank_rank=rank, lowrank_dtype=lowrank_dtype, device=codes[0].device)
        with torch.no_grad():
            bank.packed.copy_(pack_int6(torch.cat(list(codes), 0)).view(len(codes), n, -1))
            bank.scales.copy_(torch.stack([s.to(torch.float16) for s in scales]))
            if rank:
                bank.lowrank_a.copy_(torch.stack([lr[0] for lr in lowrank]).to(lowrank_dtype))
                bank.lowrank_b.copy_(torch.stack([lr[1] for lr in lowrank]).to(lowrank_dtype))
        return bank

    def _apply(self, fn, recurse=True):
        """Device moves apply; dtype casts (``model.float()``, ``.bfloat16()``, a precision recipe)
        leave the buffers as they are: the codes' format (uint8 codes, fp16 scales) is fixed."""
        def keep_dtype(t):
            out = fn(t)
            return out if out.dtype == t.dtype else t.to(out.device)
        return super()._apply(keep_dtype, recurse)

    def __len__(self) -> int:
        return self.num_matrices

    def __getitem__(self, i: int) -> Int6Matrix:
        if not isinstance(i, int) or isinstance(i, bool) or not -self.num_matrices <= i < self.num_matrices:
            raise IndexError(f"i: expected an int in [0, {self.num_matrices}), got {i!r}")
        lr = (self.lowrank_a[i], self.lowrank_b[i]) if self.lowrank_rank else None
        return Int6Matrix(self.packed[i], self.scales[i], self.in_features, lr)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense (B, N, K) stack ``code · s (+ A·B)`` in ``dtype``."""
        return torch.stack([self[i].dequantize(dtype) for i in range(self.num_matrices)])

    def extra_repr(self) -> str:
        return (f"num_matrices={self.num_matrices}, out_features={self.out_features}, "
                f"in_features={self.in_features}, bits=6, lowrank_rank={self.lowrank_rank}, "
                f"weight_bytes={self.num_matrices * self.out_features * packed_row_bytes(self.in_features)}")
