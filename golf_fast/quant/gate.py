"""int8 per-row quantization of small gate matrices (R0611 ``GATED_ATTN_QUANT_GATE=1``, §5.2).

For a gate matrix W (R, C) (the record's ``attn_gate_w``, 8×12 per layer for the sparse gate):
``s = max(max_c |W[r, c]|, 1e-10) / 127`` rounded to fp16, ``q = clamp(round(W / s), −127, 127)``
(int8), and ``W ≈ q · s[:, None]``. Unlike SDClip there is no clipping: the row's largest value
is exactly representable up to the fp16 scale.

The record routes a tensor here when its name ends in ``.attn_gate_w``, it is 2-D and floating
point, and ``32 ≤ numel ≤ 8192`` — before the fp16 passthrough rule (:func:`is_gate`).
"""

from __future__ import annotations

import torch

from golf_fast.quant.formats import QuantizedTensor

GATE_SUFFIX = ".attn_gate_w"
GATE_MIN_NUMEL = 32
GATE_MAX_NUMEL = 8192


def is_gate(name: str, t: torch.Tensor) -> bool:
    """Whether the record quantizes ``name`` with :func:`quantize_gate_int8_rows`."""
    return (name.endswith(GATE_SUFFIX) and isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() == 2
            and GATE_MIN_NUMEL <= t.numel() <= GATE_MAX_NUMEL)


def quantize_gate_int8_rows(w: torch.Tensor) -> QuantizedTensor:
    """Symmetric int8 codes with one fp16 abs-max scale per row: ``QuantizedTensor(bits=8)``."""
    if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.dim() != 2 or 0 in w.shape:
        raise TypeError(f"w: expected a non-empty 2-D floating-point tensor, got "
                        f"{getattr(w, 'dtype', type(w).__name__)} {tuple(getattr(w, 'shape', ()))}")
    if not torch.isfinite(w).all():
        raise ValueError("w: contains NaN or inf")
    wf = w.detach().float().cpu()
    s = (wf.abs().amax(dim=1).clamp_min(1e-10) / 127.0).to(torch.float16)
    q = torch.clamp(torch.round(wf / s.float()[:, None]), -127, 127).to(torch.int8)
    return QuantizedTensor(codes=q, scales=s, bits=8)
