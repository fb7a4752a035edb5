"""The 16,000,000-byte budget: code bytes + artifact bytes, and fitting the quantization to it.

``verdict(artifact, code)`` says whether a run fits (the challenge limit is decimal bytes,
``code + artifact ≤ 16,000,000``). When it does not, :func:`fit_to_budget` re-quantizes with
``golf_fast.artifact.fit.fit_clip_scale``: every matrix keeps its role's bits and its clip sigmas
become ``f · k_role``; ``f`` is bisected in [1, ``hi``] for the smallest factor (finest
quantization) whose encoded artifact is at most ``16,000,000 − code − margin`` (the margin covers
the run's metadata, written with the final file; the trainer checks the written file's size). Each try runs GPTQ on every matrix (with the
run's Hessians) and encodes the artifact; the log shows each try.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

import torch

from golf_fast.artifact.fit import CHALLENGE_LIMIT, FitResult, budget_bytes, fit_clip_scale

METADATA_MARGIN = 1_024
"""Bytes kept for what the final file adds to the fitted encoding: the run's metadata (preset, steps)."""
from golf_fast.quant.formats import QuantizedTensor
from golf_fast.quant.quantize_model import quantize_model
from golf_fast.quant.recipe import RECORD_RECIPE, QuantRecipe, RoleRule


def verdict(artifact_bytes: Optional[int], code_bytes: Optional[int],
            limit: int = CHALLENGE_LIMIT) -> tuple[Optional[bool], str]:
    """(fits?, why): None when either count is missing (then it is not a submission)."""
    if artifact_bytes is None:
        return None, "no artifact was written"
    if code_bytes is None:
        return None, "code bytes were not measured (run through `golf-fast train` or an exported train_gpt.py)"
    total = artifact_bytes + code_bytes
    if total <= limit:
        return True, f"{total:,} bytes ≤ {limit:,} ({limit - total:,} to spare)"
    return False, f"{total:,} bytes > {limit:,} (over by {total - limit:,})"


def fit_to_budget(state: dict[str, torch.Tensor], hessians: dict[str, torch.Tensor], matrices: list[str],
                  passthrough: dict[str, torch.Tensor], code_bytes: int, config, codec: str, *,
                  recipe: Optional[QuantRecipe] = None, margin: int = METADATA_MARGIN, hi: float = 4.0,
                  log: Optional[Callable[[str], None]] = print) -> FitResult:
    """Bisect the clip-sigma factor so the artifact fits ``16,000,000 − code_bytes − margin``.

    ``state``: float (un-banked) tensors including every name of ``matrices``; ``hessians``: name →
    (K, K) for each matrix; ``passthrough``: tensors stored as they are. Raises ``ValueError``
    if even ``f = hi`` does not fit.
    """
    if not isinstance(code_bytes, int) or code_bytes < 0:
        raise ValueError(f"code_bytes: expected a non-negative int, got {code_bytes!r}")
    missing = [n for n in matrices if n not in state or n not in hessians]
    if missing:
        raise ValueError(f"matrices: {missing[:3]} have no weight or no Hessian")
    recipe = recipe or RECORD_RECIPE
    plan = {n: (recipe.rule_for(n).bits, recipe.rule_for(n).clip_sigmas) for n in matrices}

    def gptq(name: str, w: torch.Tensor, bits: int, clip_sigmas: float) -> QuantizedTensor:
        rule = RoleRule("fit", "^" + re.escape(name) + "$", bits, clip_sigmas)
        r = recipe.replace(rules=(rule,), default_bits=bits, default_clip_sigmas=clip_sigmas, passthrough_max_numel=0)
        return quantize_model({name: w}, {name: hessians[name]}, r).tensors[name]

    budget = budget_bytes(code_bytes, margin=margin)
    kwargs = {"codec": codec} if codec else {}
    return fit_clip_scale({n: state[n] for n in matrices}, plan, budget, quantize=gptq, passthrough=passthrough,
                          config=config, lo=1.0, hi=hi, log=log, **kwargs)
