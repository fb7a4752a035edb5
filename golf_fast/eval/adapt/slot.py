"""SLOT: a logit delta δ ∈ R^V added to every scored position's logits, fitted with L-BFGS.

Fit (the SLOT submission's settings): minimize the focal loss
``mean_j (1 − p_j)^γ · (−log p_j)``, ``p_j = softmax(z_j + δ)[y_j]``, over a buffer of positions
(the last ``focal_positions``; plus ``l2·mean(δ²)`` when ``l2 > 0``), with ``torch.optim.LBFGS(max_iter, history_size, line_search_fn=
"strong_wolfe")``, warm-started from the previous δ, then clamped to ``±clamp``.

* **Causal** (legal): the δ that scores window ``w`` was fitted only on positions scored in
  windows before ``w`` (:class:`SlotBuffer` holds their fp32 logits and targets); the fit is an
  update event that reads those positions, after their scores were committed.
* **On the scored window** (the submission as written, research mode ``slot_window``): δ is fitted
  on the window's own targets and then used to score them — the event log shows an update that
  read positions before they were scored (conditions 1 and 3 broken).

δ is a full-vocabulary additive shift before the softmax, so every score is still a normalized
distribution (condition 2 holds in both forms).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from golf_fast.eval.adapt.config import SlotConfig


def focal_loss(z: torch.Tensor, y: torch.Tensor, delta: torch.Tensor, gamma: float) -> torch.Tensor:
    """``mean (1 − p)^γ · (−log p)`` with ``p = softmax(z + δ)[y]``; z (n, V) fp32, y (n,), δ (V,)."""
    lp = torch.log_softmax(z + delta, dim=-1).gather(1, y[:, None]).squeeze(1)
    return ((1 - lp.exp()).pow(gamma) * -lp).mean()


def fit_delta(z: torch.Tensor, y: torch.Tensor, delta0: torch.Tensor, cfg: SlotConfig) -> torch.Tensor:
    """L-BFGS fit of δ from ``delta0`` on (z, y); returns the clamped δ (V,) fp32."""
    if z.dim() != 2 or y.shape != (z.shape[0],) or delta0.shape != (z.shape[1],):
        raise ValueError(f"z/y/delta0: expected (n, V), (n,), (V,), got {tuple(z.shape)}, {tuple(y.shape)}, "
                         f"{tuple(delta0.shape)}")
    delta = delta0.detach().clone().float().requires_grad_(True)
    opt = torch.optim.LBFGS([delta], lr=1.0, max_iter=cfg.max_iter, history_size=cfg.history,
                            line_search_fn="strong_wolfe")
    z, y = z.detach().float(), y.detach()

    def closure():
        opt.zero_grad()
        loss = focal_loss(z, y, delta, cfg.focal_gamma)
        if cfg.l2 > 0:
            loss = loss + cfg.l2 * delta.square().mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return delta.detach().clamp_(-cfg.clamp, cfg.clamp)


class SlotBuffer:
    """The last ``capacity`` scored positions: fp32 logits (n, V), targets, and the ranges they read."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.z: Optional[torch.Tensor] = None
        self.y: Optional[torch.Tensor] = None
        self.pos = np.zeros(0, dtype=np.int64)
        self.read = np.zeros((0, 2), dtype=np.int64)

    def add(self, z: torch.Tensor, y: torch.Tensor, pos: np.ndarray, read: np.ndarray) -> None:
        """Append positions (any order); keep the ``capacity`` latest by position."""
        zz = z.detach().float() if self.z is None else torch.cat([self.z, z.detach().float()])
        yy = y if self.y is None else torch.cat([self.y, y])
        pp = np.concatenate([self.pos, pos])
        rr = np.concatenate([self.read, read])
        keep = np.argsort(pp, kind="stable")[-self.capacity:]
        k = torch.from_numpy(keep).to(zz.device)
        self.z, self.y, self.pos, self.read = zz.index_select(0, k), yy.index_select(0, k), pp[keep], rr[keep]

    def __len__(self) -> int:
        return int(self.pos.size)
