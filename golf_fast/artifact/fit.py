"""Size fitting: one scale factor on the per-role clip sigmas, bisected so the artifact fits.

Compressed size falls as the clip sigmas k grow (wider clip range → coarser steps → fewer bits
per code, about ``bits − log2 k + const``; parameter_golf.md §5.2), so the fitter looks for the
smallest factor ``f`` (finest quantization) with ``artifact_bytes(f) ≤ budget``, where every
quantized tensor uses ``k = f · k_role``. Each try quantizes every matrix with the caller's
``quantize`` (RTN now, GPTQ later) and encodes the artifact; the log shows each try.

The plan (name → (bits, base clip sigmas)) of the record is ``RECORD_RECIPE.plan(names)``
(``golf_fast.quant.recipe``). ``budget_bytes(code)``: 16,000,000 − code bytes − margin (the challenge limit is decimal bytes).

:func:`smallest_fitting_factor` is the package's one bisection of a clip-sigma factor: this module's
per-matrix RTN fit and the trainer's whole-model GPTQ fit (``golf_fast.train.budget``) both call it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, TypeVar

import torch

from golf_fast.artifact.codecs import DEFAULT_CODEC
from golf_fast.artifact.format import StateValue, encode_artifact
from golf_fast.quant.formats import QuantizedTensor, quantize_rtn

CHALLENGE_LIMIT = 16_000_000
DEFAULT_MARGIN = 8_000

QuantizeFn = Callable[[str, torch.Tensor, int, float], QuantizedTensor]
T = TypeVar("T")


def smallest_fitting_factor(attempt: Callable[[float], tuple[int, T]], budget: int, lo: float, hi: float, *,
                            rel_tol: float, max_tries: int, try_lo: bool) -> tuple[float, int, T]:
    """Bisect the smallest factor ``f`` in [lo, hi] whose ``attempt(f) = (nbytes, payload)`` has
    ``nbytes ≤ budget``, assuming size falls as ``f`` grows. Returns ``(f, nbytes, payload)``.

    Tries ``hi`` first (``ValueError`` if even it is over budget); with ``try_lo`` then ``lo``,
    returned at once if it fits (without, ``lo`` is taken as over budget, untried). Then halves the
    bracket, keeping the fitting end, until ``hi − lo ≤ rel_tol · hi`` or ``max_tries`` attempts.
    """
    if not (0 < lo < hi):
        raise ValueError(f"lo, hi: expected 0 < lo < hi, got {lo!r}, {hi!r}")
    if not isinstance(budget, int) or budget <= 0:
        raise ValueError(f"budget: expected a positive int of bytes, got {budget!r}")
    if not (0 < rel_tol < 1) or max_tries < 1:
        raise ValueError(f"rel_tol, max_tries: expected 0 < rel_tol < 1 and max_tries >= 1, got {rel_tol}, {max_tries}")
    n_hi, p_hi = attempt(hi)
    tries = 1
    if n_hi > budget:
        raise ValueError(f"budget: {budget:,} bytes is too small: even clip-sigma factor hi={hi} gives {n_hi:,} bytes")
    if try_lo:
        n_lo, p_lo = attempt(lo)
        tries += 1
        if n_lo <= budget:
            return lo, n_lo, p_lo
    best = (hi, n_hi, p_hi)
    while (hi - lo) > rel_tol * hi and tries < max_tries:
        mid = 0.5 * (lo + hi)
        n, p = attempt(mid)
        tries += 1
        if n <= budget:
            hi, best = mid, (mid, n, p)
        else:
            lo = mid
    return best


def budget_bytes(code: int, margin: int = DEFAULT_MARGIN, limit: int = CHALLENGE_LIMIT) -> int:
    """Bytes left for the model: ``limit − code − margin``."""
    for name, v in (("code", code), ("margin", margin), ("limit", limit)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
    left = limit - code - margin
    if left <= 0:
        raise ValueError(f"code: {code:,} code bytes + {margin:,} margin leave nothing of {limit:,}")
    return left


def rtn_quantize(name: str, w: torch.Tensor, bits: int, clip_sigmas: float) -> QuantizedTensor:
    """The default ``quantize``: round-to-nearest with SDClip scales (``quantize_rtn``)."""
    return quantize_rtn(w, bits, clip_sigmas)


@dataclass(frozen=True)
class FitTry:
    """One try: the factor, the artifact's size, whether it fit, and how long it took."""

    factor: float
    nbytes: int
    fits: bool
    seconds: float


@dataclass
class FitResult:
    """The chosen factor (the smallest that fit), its state and artifact bytes, and every try."""

    factor: float
    nbytes: int
    budget: int
    state: dict[str, StateValue]
    data: bytes
    tries: list[FitTry] = field(default_factory=list)


def fit_clip_scale(weights: Mapping[str, torch.Tensor], plan: Mapping[str, tuple[int, float]], budget: int, *,
                   quantize: QuantizeFn = rtn_quantize, passthrough: Optional[Mapping[str, torch.Tensor]] = None,
                   config: Any = None, codec: str = DEFAULT_CODEC, lo: float = 0.5, hi: float = 2.0,
                   rel_tol: float = 0.005, max_tries: int = 16,
                   log: Optional[Callable[[str], None]] = print) -> FitResult:
    """Bisect the clip-sigma factor ``f`` in [lo, hi] so the artifact lands just under ``budget``.

    ``weights``: name → float matrix for every name in ``plan`` (name → (bits, base clip sigmas)).
    ``quantize(name, w, bits, clip_sigmas) -> QuantizedTensor``: RTN by default; pass a GPTQ
    closure (it gets the name to find its Hessian). ``passthrough``: tensors stored as they are.
    Stops when ``(hi − lo) ≤ rel_tol · hi`` or after ``max_tries`` encodes. Raises ``ValueError``
    if even ``f = hi`` does not fit; returns ``f = lo`` at once if that already fits.
    """
    if not isinstance(plan, Mapping) or not plan:
        raise ValueError("plan: expected a non-empty dict name → (bits, clip_sigmas)")
    for name, bk in plan.items():
        if name not in weights:
            raise ValueError(f"weights: no tensor {name!r} for the plan entry")
        if not (isinstance(bk, tuple) and len(bk) == 2 and bk[1] > 0):
            raise ValueError(f"plan[{name!r}]: expected (bits, clip_sigmas > 0), got {bk!r}")
    if max_tries < 2:
        raise ValueError(f"max_tries: expected >= 2 (hi and lo are both tried), got {max_tries}")
    if not callable(quantize):
        raise TypeError("quantize: expected a callable (name, w, bits, clip_sigmas) -> QuantizedTensor")
    passthrough = dict(passthrough or {})
    tries: list[FitTry] = []
    say = log or (lambda _msg: None)

    def attempt(f: float) -> tuple[int, tuple[dict, bytes]]:
        t0 = time.perf_counter()
        state: dict[str, StateValue] = {}
        for name, (bits, k) in plan.items():
            q = quantize(name, weights[name], bits, k * f)
            if not isinstance(q, QuantizedTensor):
                raise TypeError(f"quantize: returned {type(q).__name__} for {name!r}, expected QuantizedTensor")
            state[name] = q
        state.update(passthrough)
        data = encode_artifact(state, config, codec=codec)
        t = FitTry(f, len(data), len(data) <= budget, time.perf_counter() - t0)
        tries.append(t)
        say(f"fit try {len(tries)}: clip-sigma factor {f:.5f} → {t.nbytes:,} bytes "
            f"({'fits' if t.fits else 'over'} budget {budget:,} by {abs(budget - t.nbytes):,}) in {t.seconds:.1f}s")
        return len(data), (state, data)

    f, n, (s, d) = smallest_fitting_factor(attempt, budget, lo, hi, rel_tol=rel_tol, max_tries=max_tries,
                                           try_lo=True)
    if f == lo:
        say(f"fit: factor lo={lo} already fits ({n:,} bytes)")
        return FitResult(lo, n, budget, s, d, tries)
    say(f"fit: chose clip-sigma factor {f:.5f} → {n:,} bytes, {budget - n:,} under budget, {len(tries)} tries")
    return FitResult(f, n, budget, s, d, tries)
