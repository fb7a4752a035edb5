"""Self-check comparisons for float kernels whose outputs are rounded results of the same math.

Used by the fused softcapped cross-entropy and the fused MLP families: their kernels compute
the reference's math in fp32 (different summation order, different transcendental routines)
and round once to the output dtype.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def rounded_close(out: torch.Tensor, ref: torch.Tensor, *, ulps: float = 2.0, floor: float = 2.0 ** -6,
                  min_rel: float = 0.0, name: str = "output") -> Optional[str]:
    """None when ``|out − ref| ≤ max(ulps·eps, min_rel)·|ref| + floor·eps·max|ref|`` elementwise.

    Returns a description of the first mismatch otherwise.

    ``eps`` is the machine epsilon of out's dtype: two fp32 values that differ only by summation
    order round to the same or to adjacent values; the ``floor`` term covers entries near zero
    that come from cancellation (e.g. a gradient ``p − 1``); ``min_rel`` bounds the relative
    tolerance from below for fp32 outputs whose fp32 inputs already carry error (an ``exp`` of an
    argument of size 60 has ~60 fp32 ulps of relative error).
    """
    if out.shape != ref.shape or out.dtype != ref.dtype:
        return f"{name} {tuple(out.shape)} {out.dtype} vs reference {tuple(ref.shape)} {ref.dtype}"
    o, r = out.double(), ref.double()
    if not torch.isfinite(o).all():
        return f"{name} has NaN/inf"
    if o.numel() == 0:
        return None
    eps = torch.finfo(out.dtype).eps
    tol = max(ulps * eps, min_rel) * r.abs() + floor * eps * float(r.abs().max())
    bad = (o - r).abs() > tol
    if bool(bad.any()):
        i = int(bad.flatten().nonzero()[0])
        return (f"{name}: {int(bad.sum())} of {r.numel()} elements differ by more than the output rounding "
                f"(first: {float(o.flatten()[i])} vs {float(r.flatten()[i])})")
    return None


def all_rounded_close(outs: Sequence[torch.Tensor], refs: Sequence[torch.Tensor], names: Sequence[str],
                      **kw) -> Optional[str]:
    """``rounded_close`` over several outputs; the first problem found, or None."""
    for o, r, n in zip(outs, refs, names):
        problem = rounded_close(o, r, name=n, **kw)
        if problem is not None:
            return problem
    return None
