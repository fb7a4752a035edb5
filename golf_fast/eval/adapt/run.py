"""One entry point for every adaptive evaluation: ``run_adaptive(model, tokens, table, cfg)``.

Dispatch on :class:`AdaptConfig`: ``research`` (prequant | slot_window) → research.py; ``ttt``
lora | phased → the per-document driver (with per-document causal SLOT when ``slot`` is causal);
``ttt`` none | adamw with ``slot`` none | causal → the stream driver. The result always carries the checker's verdict.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.result import AdaptResult
from golf_fast.eval.adapt.research_modes import run_prequant
from golf_fast.eval.adapt.documents import run_documents
from golf_fast.eval.adapt.stream import run_stream


def run_adaptive(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, *, rank: int = 0,
                 world_size: int = 1, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None,
                 int6_state: Optional[dict] = None, val_bytes=None) -> AdaptResult:
    """Run the evaluation ``cfg`` describes on ``model`` (adapted in place) and return its result.

    ``val_bytes``: the CaseOps byte sidecar parallel to ``tokens`` (then ``table`` may be None).
    A model running from int6 banks (``weights="int6"``) is first given float banks of the same
    dequantized matrices (:meth:`golf_fast.model.GPT.restore_float_banks`).
    """
    if not isinstance(cfg, AdaptConfig):
        raise TypeError(f"cfg: expected an AdaptConfig, got {type(cfg).__name__}")
    cfg.validate()
    if getattr(model, "runs_from_int6", False):
        # every mode trains or reads float weights (AdamW/phased SGD on the banks, SLOT's hidden states,
        # LoRA's dense base): the model leaves its int6 banks for their dequantized matrices, in place
        model.restore_float_banks()
    kw = dict(rank=rank, world_size=world_size, device=device, dtype=dtype, val_bytes=val_bytes)
    if cfg.research == "prequant":
        return run_prequant(model, tokens, table, cfg, **kw)
    if cfg.research == "slot_window":
        return run_stream(model, tokens, table, cfg, slot="window", label="research:slot_window", **kw)
    if cfg.ttt in ("lora", "phased"):
        return run_documents(model, tokens, table, cfg, adapt=cfg.ttt, int6_state=int6_state, label=cfg.label, **kw)
    return run_stream(model, tokens, table, cfg, adapt=cfg.ttt, slot=cfg.slot, label=cfg.label, **kw)
