"""One entry point for every adaptive evaluation: ``run_adaptive(model, tokens, table, cfg)``.

:data:`DRIVERS` is the one ``{mode: driver}`` table: ``cfg.mode`` (the research mode when one is
set, else the TTT mode) picks the driver — ``none`` | ``adamw`` → the stream driver (with causal
SLOT over the stream when ``slot`` is causal); ``lora`` | ``phased`` → the per-document driver (with
per-document causal SLOT); ``prequant`` → pre-quant TTT then the stream scoring; ``slot_window`` →
the stream driver with SLOT on the scored window. The config is validated here, once; every driver
runs under the harness (harness.py), which owns the event log, the sums and the checker, so the result
always carries the checker's verdict.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.documents import documents_driver
from golf_fast.eval.adapt.harness import DriverOutput, run_driver
from golf_fast.eval.adapt.research_modes import prequant_driver
from golf_fast.eval.adapt.result import AdaptResult
from golf_fast.eval.adapt.stream import stream_driver


def _stream(model, stream, cfg: AdaptConfig, **kw) -> DriverOutput:
    kw.pop("int6_state", None)
    return stream_driver(model, stream, cfg, adapt=cfg.ttt, slot=cfg.slot, label=cfg.label, **kw)


def _documents(model, stream, cfg: AdaptConfig, **kw) -> DriverOutput:
    return documents_driver(model, stream, cfg, adapt=cfg.ttt, label=cfg.label, **kw)


def _prequant(model, stream, cfg: AdaptConfig, **kw) -> DriverOutput:
    kw.pop("int6_state", None)
    return prequant_driver(model, stream, cfg, **kw)


def _slot_window(model, stream, cfg: AdaptConfig, **kw) -> DriverOutput:
    kw.pop("int6_state", None)
    return stream_driver(model, stream, cfg, slot="window", label=cfg.label, **kw)


DRIVERS: dict[str, Callable[..., DriverOutput]] = {
    "none": _stream, "adamw": _stream, "lora": _documents, "phased": _documents,
    "prequant": _prequant, "slot_window": _slot_window,
}
"""``AdaptConfig.mode`` → the driver that runs it (every TTT and research mode has one entry); each gets
the run's guarded stream only (harness.py)."""


def run_adaptive(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, *, rank: int = 0,
                 world_size: int = 1, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None,
                 int6_state: Optional[dict] = None, val_bytes=None) -> AdaptResult:
    """Run the evaluation ``cfg`` describes on ``model`` (adapted in place) and return its result.

    The harness (:func:`~golf_fast.eval.adapt.harness.run_driver`) builds the event log, the sums and the
    guarded stream from ``tokens``, hands the driver the stream alone, and runs the checker itself.
    ``val_bytes``: the CaseOps byte sidecar parallel to ``tokens`` (then ``table`` may be None).
    ``int6_state``: the artifact's quantized state, read by the per-document driver's int6 LoRA backend.
    A model running from int6 banks (``weights="int6"``) is first given float banks of the same
    dequantized matrices (:meth:`golf_fast.model.GPT.restore_float_banks`).
    """
    if not isinstance(cfg, AdaptConfig):
        raise TypeError(f"cfg: expected an AdaptConfig, got {type(cfg).__name__}")
    cfg.validate("cfg")
    _leave_int6_banks(model)
    return run_driver(DRIVERS[cfg.mode], model, tokens, table, cfg, rank=rank, world_size=world_size, device=device,
                      dtype=dtype, val_bytes=val_bytes, int6_state=int6_state)


def _leave_int6_banks(model) -> None:
    """Every mode trains or reads float weights (AdamW/phased SGD on the banks, SLOT's hidden states,
    LoRA's dense base): a model running from int6 banks leaves them for their dequantized matrices, in place."""
    if getattr(model, "runs_from_int6", False):
        model.restore_float_banks()


def run_baseline(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, **kw) -> AdaptResult:
    """The baseline ``cfg``'s mode is measured against: its driver with no adaptation (the
    per-document scoring for lora/phased, the stream otherwise), run by the same harness.
    ``kw``: as :func:`run_adaptive`."""
    if not isinstance(cfg, AdaptConfig):
        raise TypeError(f"cfg: expected an AdaptConfig, got {type(cfg).__name__}")
    base = dataclasses.replace(cfg, ttt="none", slot="none", research="none")
    if DRIVERS[cfg.mode] is _documents:
        base.validate("cfg")
        kw.pop("int6_state", None)
        _leave_int6_banks(model)
        return run_driver(documents_driver, model, tokens, table, base, adapt="none", **kw)
    return run_adaptive(model, tokens, table, base, **kw)
