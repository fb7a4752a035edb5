"""One entry point for every adaptive evaluation: ``run_adaptive(model, tokens, table, cfg)``.

:data:`DRIVERS` is the one ``{mode: driver}`` table: ``cfg.mode`` (the research mode when one is
set, else the TTT mode) picks the driver — ``none`` | ``adamw`` → the stream driver (with causal
SLOT over the stream when ``slot`` is causal); ``lora`` | ``phased`` → the per-document driver (with
per-document causal SLOT); ``prequant`` → pre-quant TTT then the stream scoring; ``slot_window`` →
the stream driver with SLOT on the scored window. The config is validated here, once; the result
always carries the checker's verdict.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.documents import run_documents
from golf_fast.eval.adapt.research_modes import run_prequant
from golf_fast.eval.adapt.result import AdaptResult
from golf_fast.eval.adapt.stream import run_stream


def _stream(model, tokens, table, cfg: AdaptConfig, *, int6_state=None, **kw) -> AdaptResult:
    return run_stream(model, tokens, table, cfg, adapt=cfg.ttt, slot=cfg.slot, label=cfg.label, **kw)


def _documents(model, tokens, table, cfg: AdaptConfig, *, int6_state=None, **kw) -> AdaptResult:
    return run_documents(model, tokens, table, cfg, adapt=cfg.ttt, int6_state=int6_state, label=cfg.label, **kw)


def _prequant(model, tokens, table, cfg: AdaptConfig, *, int6_state=None, **kw) -> AdaptResult:
    return run_prequant(model, tokens, table, cfg, **kw)


def _slot_window(model, tokens, table, cfg: AdaptConfig, *, int6_state=None, **kw) -> AdaptResult:
    return run_stream(model, tokens, table, cfg, slot="window", label=cfg.label, **kw)


DRIVERS: dict[str, Callable[..., AdaptResult]] = {
    "none": _stream, "adamw": _stream, "lora": _documents, "phased": _documents,
    "prequant": _prequant, "slot_window": _slot_window,
}
"""``AdaptConfig.mode`` → the driver that runs it (every TTT and research mode has one entry)."""


def run_adaptive(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, *, rank: int = 0,
                 world_size: int = 1, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None,
                 int6_state: Optional[dict] = None, val_bytes=None) -> AdaptResult:
    """Run the evaluation ``cfg`` describes on ``model`` (adapted in place) and return its result.

    ``val_bytes``: the CaseOps byte sidecar parallel to ``tokens`` (then ``table`` may be None).
    ``int6_state``: the artifact's quantized state, read by the per-document driver's int6 LoRA backend.
    """
    if not isinstance(cfg, AdaptConfig):
        raise TypeError(f"cfg: expected an AdaptConfig, got {type(cfg).__name__}")
    cfg.validate("cfg")
    return DRIVERS[cfg.mode](model, tokens, table, cfg, rank=rank, world_size=world_size, device=device, dtype=dtype,
                             int6_state=int6_state, val_bytes=val_bytes)


def run_baseline(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, **kw) -> AdaptResult:
    """The baseline ``cfg``'s mode is measured against: its driver with no adaptation (the
    per-document scoring for lora/phased, the stream otherwise). ``kw``: as :func:`run_adaptive`."""
    if not isinstance(cfg, AdaptConfig):
        raise TypeError(f"cfg: expected an AdaptConfig, got {type(cfg).__name__}")
    base = dataclasses.replace(cfg, ttt="none", slot="none", research="none")
    if DRIVERS[cfg.mode] is _documents:
        base.validate("cfg")
        kw.pop("int6_state", None)
        return run_documents(model, tokens, table, base, adapt="none", **kw)
    return run_adaptive(model, tokens, table, base, **kw)
