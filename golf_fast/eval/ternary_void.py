"""The void fraction: how much of each matrix a ternary projection maps to zero.

Ternary-weight-network rule (Li & Liu 2016), per matrix ``W``: ``Δ = ratio · mean|W|`` (ratio 0.7
by default, configurable); an entry is *void* when ``|w| < Δ``. Reported per matrix and overall
(void entries over all entries). The pre-quant TTT submission reports it stable at 0.580.

:func:`void_fractions` returns device tensors and never syncs the host; call :func:`to_host` (one
sync) only at a logging step.
"""

from __future__ import annotations

import torch


def matrices_of(model) -> dict:
    """name → (N, K) weight of every block matrix and the embedding (per-layer views of the banks)."""
    if not hasattr(model, "unbanked_state_dict") or not hasattr(model, "matrix_names"):
        raise TypeError(f"model: expected a golf_fast GPT, got {type(model).__name__}")
    state = model.unbanked_state_dict()
    return {n: state[n] for n in model.matrix_names()}


@torch.no_grad()
def void_fractions(mats: dict, ratio: float = 0.7) -> tuple[dict, torch.Tensor]:
    """(name → void fraction (0-d fp32 tensor), overall fraction (0-d tensor)); no host sync."""
    if not (isinstance(ratio, (int, float)) and ratio > 0):
        raise ValueError(f"ratio: expected a positive number, got {ratio!r}")
    if not mats:
        raise ValueError("mats: expected at least one matrix")
    per, void, total = {}, None, 0
    for name, w in mats.items():
        if not isinstance(w, torch.Tensor) or w.dim() != 2 or not w.is_floating_point():
            raise ValueError(f"mats[{name!r}]: expected a 2-D floating tensor")
        a = w.detach().float().abs()
        count = (a < ratio * a.mean()).sum()
        per[name] = count.float() / a.numel()
        void = count if void is None else void + count
        total += a.numel()
    return per, void.float() / total


def to_host(per: dict, overall: torch.Tensor) -> tuple[dict, float]:
    """One host sync: (name → float, overall float)."""
    vals = torch.stack([overall] + list(per.values())).cpu().tolist()
    return dict(zip(per, vals[1:])), vals[0]
