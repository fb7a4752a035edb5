"""``Int6Linear``: a frozen linear layer stored as packed int6 codes + per-row fp16 scales.

``y = x · (code · s[:, None])ᵀ + bias (+ x · (A·B)ᵀ)`` through ``golf_fast.int6_linear`` (the fused
kernel on CUDA, the eager reference on CPU). The weight is 0.75 byte per entry in memory; the
module has no trainable weight (gradients flow to its input, so LoRA adapters on a frozen
quantized base train through it).

Buffers (all in ``state_dict``): ``packed`` (N, packed_row_bytes(K)) uint8, ``scales`` (N,) float16,
``bias`` (N,) when built with a bias, ``lowrank_a`` (N, r) / ``lowrank_b`` (r, K) when
``lowrank_rank > 0`` (the LQER correction). A ``state_dict`` loads into a module constructed with
the same ``in_features``, ``out_features``, ``bias``, ``lowrank_rank`` and ``dtype``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from golf_fast.ops.int6_matmul import int6_linear
from golf_fast.ops.int6_pack import check_int6_codes, pack_int6, packed_row_bytes, unpack_int6
from golf_fast.quant.formats import quantize_rtn
from golf_fast.quant.recipe import RECORD_RECIPE

DEFAULT_CLIP_SIGMAS = RECORD_RECIPE.default_clip_sigmas
"""SDClip k of the record's int6 matrices (its recipe's default role; parameter_golf.md §5.2)."""


class Int6Linear(nn.Module):
    """Linear layer with int6 weights. ``dtype`` is the bias/low-rank dtype (bf16 or fp16)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, lowrank_rank: int = 0,
                 dtype: torch.dtype = torch.bfloat16, device: Optional[torch.device] = None) -> None:
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        if not isinstance(lowrank_rank, int) or isinstance(lowrank_rank, bool) or lowrank_rank < 0:
            raise ValueError(f"lowrank_rank: expected an int >= 0, got {lowrank_rank!r}")
        if dtype not in (torch.bfloat16, torch.float16):
            raise TypeError(f"dtype: expected torch.bfloat16 or torch.float16, got {dtype}")
        self.in_features = in_features
        self.out_features = out_features
        self.lowrank_rank = lowrank_rank
        # Code 0 everywhere: a valid (all-zero) weight until from_* or load_state_dict fills it.
        zero_row = pack_int6(torch.zeros(1, in_features, dtype=torch.int8))
        self.register_buffer("packed", zero_row.expand(out_features, -1).clone().to(device))
        self.register_buffer("scales", torch.ones(out_features, dtype=torch.float16, device=device))
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device))
        else:
            self.bias = None
        if lowrank_rank:
            self.register_buffer("lowrank_a", torch.zeros(out_features, lowrank_rank, dtype=dtype, device=device))
            self.register_buffer("lowrank_b", torch.zeros(lowrank_rank, in_features, dtype=dtype, device=device))
        else:
            self.lowrank_a = self.lowrank_b = None

    # ---- construction

    @classmethod
    def from_quantized(cls, codes: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor] = None,
                       lowrank: Optional[tuple[torch.Tensor, torch.Tensor]] = None, *,
                       dtype: torch.dtype = torch.bfloat16) -> "Int6Linear":
        """From (N, K) int8 codes in [-31, 31] (e.g. GPTQ's output) and (N,) scales (cast to fp16)."""
        check_int6_codes(codes)
        if not isinstance(scales, torch.Tensor) or not scales.is_floating_point() or \
                scales.shape != (codes.shape[0],):
            raise ValueError(f"scales: expected a float tensor of shape ({codes.shape[0]},), got "
                             f"{getattr(scales, 'dtype', type(scales).__name__)} {tuple(getattr(scales, 'shape', ()))}")
        if scales.device != codes.device:
            raise ValueError(f"scales: expected a tensor on {codes.device} (like codes), got {scales.device}")
        n, k = codes.shape
        rank = 0
        if lowrank is not None:
            if not isinstance(lowrank, (tuple, list)) or len(lowrank) != 2:
                raise TypeError("lowrank: expected a pair (A, B) with A (N, r) and B (r, K)")
            a, b = lowrank
            if a.dim() != 2 or b.dim() != 2 or a.shape[0] != n or b.shape[1] != k or a.shape[1] != b.shape[0]:
                raise ValueError(f"lowrank: expected A ({n}, r) and B (r, {k}), got {tuple(a.shape)} and {tuple(b.shape)}")
            rank = a.shape[1]
        if bias is not None and (not isinstance(bias, torch.Tensor) or bias.shape != (n,)):
            raise ValueError(f"bias: expected a tensor of shape ({n},), got {tuple(getattr(bias, 'shape', ()))}")
        mod = cls(k, n, bias=bias is not None, lowrank_rank=rank, dtype=dtype, device=codes.device)
        with torch.no_grad():
            mod.packed.copy_(pack_int6(codes))
            mod.scales.copy_(scales.to(torch.float16))
            if bias is not None:
                mod.bias.copy_(bias.to(dtype))
            if rank:
                mod.lowrank_a.copy_(lowrank[0].to(dtype))
                mod.lowrank_b.copy_(lowrank[1].to(dtype))
        return mod

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, clip_sigmas: float = DEFAULT_CLIP_SIGMAS,
                    dtype: Optional[torch.dtype] = None) -> "Int6Linear":
        """Round-to-nearest int6 with SDClip scales (``clip_sigmas · std(row) / 31``, fp16).

        ``dtype`` (bias dtype) defaults to the linear's dtype when it is bf16/fp16, else bf16.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        if dtype is None:
            dtype = w.dtype if w.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
        q = quantize_rtn(w, 6, clip_sigmas)
        bias = linear.bias.detach() if linear.bias is not None else None
        return cls.from_quantized(q.codes, q.scales, bias, dtype=dtype)

    # ---- use

    def codes(self) -> torch.Tensor:
        """The (N, K) int8 codes, unpacked."""
        return unpack_int6(self.packed, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lowrank = (self.lowrank_a, self.lowrank_b) if self.lowrank_rank else None
        return int6_linear(x, self.packed, self.scales, self.bias, lowrank)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"bits=6, lowrank_rank={self.lowrank_rank}, "
                f"weight_bytes={self.out_features * packed_row_bytes(self.in_features)}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "packed"
        if key in state_dict:
            want = (self.out_features, packed_row_bytes(self.in_features))
            got = state_dict[key]
            if not isinstance(got, torch.Tensor) or got.dtype != torch.uint8 or tuple(got.shape) != want:
                raise ValueError(f"state_dict[{key!r}]: expected uint8 of shape {want} for in_features="
                                 f"{self.in_features}, got {getattr(got, 'dtype', None)} "
                                 f"{tuple(getattr(got, 'shape', ()))}")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

