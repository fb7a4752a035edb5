"""The 16,000,000-byte budget: code bytes + artifact bytes, and fitting the quantization to it.

``verdict(artifact, code)`` says whether a run fits (the challenge limit is decimal bytes,
``code + artifact ≤ 16,000,000``). When it does not, :func:`fit_to_budget` bisects one factor
``f`` on every clip sigma of the recipe (``k_role → f · k_role``, the default role's too;
bits, LQER and gates unchanged): compressed size falls as ``f`` grows (coarser steps, about
``bits − log2 k + const`` bits per code; parameter_golf.md §5.2), so it looks for the smallest
``f`` in [1, ``hi``] whose artifact fits ``16,000,000 − code``. Each try re-quantizes the whole
model (GPTQ, then LQER on its residuals) and encodes the artifact exactly as it will be written
(metadata included), so the chosen file's size is the size that was tested. (The per-matrix
``golf_fast.artifact.fit.fit_clip_scale`` cannot do this: LQER picks its matrices across the
whole model.) The bisection itself is ``golf_fast.artifact.fit.smallest_fitting_factor``, shared
with that fitter.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from golf_fast.artifact.fit import CHALLENGE_LIMIT, smallest_fitting_factor
from golf_fast.quant.recipe import QuantRecipe


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


def scaled_recipe(recipe: QuantRecipe, factor: float) -> QuantRecipe:
    """``recipe`` with every clip sigma (each rule's and the default) multiplied by ``factor``."""
    if not isinstance(recipe, QuantRecipe):
        raise TypeError(f"recipe: expected a QuantRecipe, got {type(recipe).__name__}")
    if not factor > 0:
        raise ValueError(f"factor: expected > 0, got {factor!r}")
    rules = tuple(dataclasses.replace(r, clip_sigmas=r.clip_sigmas * factor) for r in recipe.rules)
    return recipe.replace(rules=rules, default_clip_sigmas=recipe.default_clip_sigmas * factor)


@dataclass
class BudgetFit:
    """The chosen factor (the smallest that fit), its tensors and size, and every try (factor, bytes, s)."""

    factor: float
    tensors: dict
    nbytes: int
    budget: int
    tries: list[tuple[float, int, float]] = field(default_factory=list)


def fit_to_budget(quantize_at: Callable[[float], dict], encoded_bytes: Callable[[dict], int], code_bytes: int, *,
                  hi: float = 4.0, rel_tol: float = 0.01, max_tries: int = 10, limit: int = CHALLENGE_LIMIT,
                  log: Optional[Callable[[str], None]] = print) -> BudgetFit:
    """Smallest clip-sigma factor in [1, ``hi``] whose artifact fits ``limit − code_bytes``.

    ``quantize_at(f)``: the quantized tensors at factor ``f``; ``encoded_bytes(tensors)``: the size
    of the file they would make. Factor 1 is assumed over budget (the caller tried it). Raises
    ``ValueError`` when even ``hi`` does not fit. Stops when the bracket is within ``rel_tol · hi``
    or after ``max_tries`` tries.
    """
    if not isinstance(code_bytes, int) or isinstance(code_bytes, bool) or code_bytes < 0:
        raise ValueError(f"code_bytes: expected a non-negative int, got {code_bytes!r}")
    if not hi > 1.0:
        raise ValueError(f"hi: expected > 1, got {hi!r}")
    budget = limit - code_bytes
    if budget <= 0:
        raise ValueError(f"code_bytes: {code_bytes:,} code bytes leave nothing of {limit:,}")
    say = log or (lambda _m: None)
    tries: list[tuple[float, int, float]] = []

    def attempt(f: float) -> tuple[int, dict]:
        t0 = time.perf_counter()
        tensors = quantize_at(f)
        n = int(encoded_bytes(tensors))
        tries.append((f, n, time.perf_counter() - t0))
        say(f"fit try {len(tries)}: clip-sigma factor {f:.4f} → {n:,} bytes "
            f"({'fits' if n <= budget else 'over'} budget {budget:,})")
        return n, tensors

    f, n, t = smallest_fitting_factor(attempt, budget, 1.0, hi, rel_tol=rel_tol, max_tries=max_tries, try_lo=False)
    say(f"fit: chose clip-sigma factor {f:.4f} → {n:,} bytes, {budget - n:,} under budget, {len(tries)} tries")
    return BudgetFit(f, t, n, budget, tries)
