"""Causal, document-isolated (varlen) attention: FlashAttention 3 → FlashAttention 2 → PyTorch SDPA.

All backends take the flattened buffer ``q (T, H, D)``, ``k, v (T, Hkv, D)`` (GQA: H a multiple of
Hkv) and int32 ``cu_seqlens`` (segment starts, first 0, last T, possibly padded with repeats of T),
and return ``(T, H, D)``: position i attends to positions j ≤ i of its own segment only.

* ``fa3``: ``flash_attn_interface.flash_attn_varlen_func`` (Hopper), CUDA only;
* ``fa2``: ``flash_attn.flash_attn_varlen_func``, CUDA only;
* ``sdpa``: ``F.scaled_dot_product_attention`` with a block-diagonal causal boolean mask built from
  ``cu_seqlens``. Long buffers are cut into blocks of ``max_seqlen`` and block c attends to blocks
  c−1 and c only (cost T·2·max_seqlen instead of T²), which is exact because no segment is longer
  than ``max_seqlen`` (the contract of every backend: FlashAttention takes it as a bound too);
  outside ``torch.compile`` a longer segment widens the blocks to it (exact, never truncated).

:func:`resolve_attention_backend` picks the first importable one for a device (``"auto"``) or checks
a requested one, and the choice is logged once and kept in :func:`resolved_attention_backends`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Callable, Optional

import torch
import torch.nn.functional as F

log = logging.getLogger("golf_fast.model")

BACKENDS = ("fa3", "fa2", "sdpa")
SDPA_FULL_MAX = 1024
"""SDPA buffers up to this many tokens use one full block-diagonal mask; longer ones the banded form."""
_resolved: dict[str, str] = {}
_modules: dict[str, object] = {}


def _import(backend: str) -> Optional[object]:
    if backend not in _modules:
        name = {"fa3": "flash_attn_interface", "fa2": "flash_attn"}[backend]
        try:
            _modules[backend] = importlib.import_module(name)
        except Exception:  # ImportError, or a wheel built for another torch/CUDA
            _modules[backend] = None
    return _modules[backend]


def resolve_attention_backend(device: torch.device, requested: str = "auto") -> str:
    """The attention backend for ``device``: ``auto`` = fa3, else fa2, else sdpa (always sdpa on CPU)."""
    if requested not in ("auto",) + BACKENDS:
        raise ValueError(f"requested: expected 'auto' or one of {BACKENDS}, got {requested!r}")
    dev = torch.device(device).type
    if requested in ("fa3", "fa2"):
        if dev != "cuda":
            raise ValueError(f"requested: {requested} needs a CUDA device, got {dev}")
        if _import(requested) is None:
            raise RuntimeError(f"requested: attention backend {requested} is not importable "
                               f"({'flash_attn_interface' if requested == 'fa3' else 'flash_attn'})")
        choice = requested
    elif requested == "sdpa" or dev != "cuda":
        choice = "sdpa"
    else:
        choice = next((b for b in ("fa3", "fa2") if _import(b) is not None), "sdpa")
    if _resolved.get(dev) != choice:
        log.info("attention backend on %s: %s", dev, choice)
        _resolved[dev] = choice
    return choice


def resolved_attention_backends() -> dict[str, str]:
    """``{"attention@cuda": "fa3", ...}`` for every device resolved so far."""
    return {f"attention@{d}": b for d, b in sorted(_resolved.items())}


def segment_ids(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Segment index of each of ``total`` positions: the number of cu_seqlens[1:] entries ≤ it."""
    pos = torch.arange(total, device=cu_seqlens.device, dtype=cu_seqlens.dtype)
    return torch.searchsorted(cu_seqlens[1:].contiguous(), pos, right=True)


def _sdpa_full(q, k, v, cu_seqlens):
    T, H, D = q.shape
    seg = segment_ids(cu_seqlens, T)
    idx = torch.arange(T, device=q.device)
    mask = (seg[:, None] == seg[None, :]) & (idx[None, :] <= idx[:, None])
    y = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                       attn_mask=mask, enable_gqa=H != k.shape[1])
    return y[0].transpose(0, 1)


def _sdpa_banded(q, k, v, cu_seqlens, C):
    """Segments are at most C long, so queries of block c (C positions) only see keys of blocks c−1, c."""
    T, H, D = q.shape
    Hkv = k.shape[1]
    nc = -(-T // C)
    P = nc * C
    seg = segment_ids(cu_seqlens, T)
    seg_q = F.pad(seg, (0, P - T), value=-1).view(nc, C)
    seg_k = F.pad(seg, (C, P - T), value=-1).unfold(0, 2 * C, C)  # (nc, 2C), front pad never matches a query
    seg_k = torch.where(torch.arange(P + C, device=q.device).unfold(0, 2 * C, C) < C, -2, seg_k)
    qpos = torch.arange(P, device=q.device).view(nc, C)
    kpos = (torch.arange(P + C, device=q.device) - C).unfold(0, 2 * C, C)
    mask = (seg_q[:, :, None] == seg_k[:, None, :]) & (kpos[:, None, :] <= qpos[:, :, None])
    qb = F.pad(q, (0, 0, 0, 0, 0, P - T)).view(nc, C, H, D).transpose(1, 2)
    kb = F.pad(k, (0, 0, 0, 0, C, P - T)).unfold(0, 2 * C, C).permute(0, 1, 3, 2)  # (nc, Hkv, 2C, D)
    vb = F.pad(v, (0, 0, 0, 0, C, P - T)).unfold(0, 2 * C, C).permute(0, 1, 3, 2)
    y = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask[:, None], enable_gqa=H != Hkv)
    return y.transpose(1, 2).reshape(P, H, D)[:T]


def longest_segment(cu_seqlens: torch.Tensor) -> int:
    """Length of the longest segment of ``cu_seqlens`` (a host sync)."""
    return int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) if cu_seqlens.numel() > 1 else 0


def _sdpa_varlen(q, k, v, cu_seqlens, max_seqlen):
    """Full block-diagonal mask for short buffers; banded blocks of ``max_seqlen`` for long ones.

    The banded form is exact only if no segment is longer than its block, so (eagerly) the block
    grows to the longest segment when a caller breaks the ``max_seqlen`` contract, instead of
    silently dropping context. Under ``torch.compile`` the contract is trusted (no host sync)."""
    T = q.shape[0]
    if T <= 2 * max_seqlen or T <= SDPA_FULL_MAX:
        return _sdpa_full(q, k, v, cu_seqlens)
    if not torch.compiler.is_compiling():
        max_seqlen = max(max_seqlen, longest_segment(cu_seqlens))
        if T <= 2 * max_seqlen:
            return _sdpa_full(q, k, v, cu_seqlens)
    return _sdpa_banded(q, k, v, cu_seqlens, max_seqlen)


def _flash_varlen(backend: str) -> Callable:
    def run(q, k, v, cu_seqlens, max_seqlen):
        out = _import(backend).flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen,
                                                      causal=True)
        return out[0] if isinstance(out, tuple) else out

    return run


_IMPLS = {"sdpa": _sdpa_varlen, "fa3": _flash_varlen("fa3"), "fa2": _flash_varlen("fa2")}


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                     max_seqlen: int, backend: str = "sdpa") -> torch.Tensor:
    """Causal attention within the segments of ``cu_seqlens``; see the module docstring for shapes."""
    return _IMPLS[backend](q, k, v, cu_seqlens, max_seqlen)
