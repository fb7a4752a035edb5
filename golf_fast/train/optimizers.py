"""Optimizer groups (parameter_golf.md §4.1–4.2) and gradient synchronization.

* the four banks → Muon (``golf_fast.optim.Muon``; Parallel Muon across ranks reduce-scatters
  their gradients itself), or Adam with the scalar settings when ``optim.matrix_optimizer=adam``;
* ``tok_emb.weight`` → Adam(lr ``embed_lr``, wd ``embed_wd``);
* everything else (scales, mixes, gains, gates, skip weights, lambdas: the control tensors) →
  Adam(lr ``scalar_lr``, wd ``scalar_wd``); β = (beta1, beta2), decoupled weight decay (AdamW).

On CUDA (``optim.graph_step``) Muon's step is captured in a CUDA graph and replayed
(``golf_fast.optim.GraphedOptimizerStep``); its gradients are then zeroed in place, not freed.

Each group remembers its base lr in ``group["base_lr"]``; :func:`set_lr_scale` multiplies it by the
schedule. :func:`sync_replicated_grads` averages the gradients that are not Muon's (one flat
all-reduce for all small tensors, one per large tensor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from golf_fast import distributed
from golf_fast.model.gpt import BANK_NAMES, EMBED_NAME
from golf_fast.optim import GraphedOptimizerStep
from golf_fast.train.config import OptimConfig

SMALL_NUMEL = 32_768


@dataclass
class Optimizers:
    optimizers: list[torch.optim.Optimizer]
    replicated: list[torch.nn.Parameter]
    """Parameters whose gradients the trainer all-reduces (Muon syncs the banks itself)."""
    graphed: Optional[GraphedOptimizerStep] = None
    """Muon's step as a CUDA graph (``optim.graph_step``); it steps ``graphed.opt`` in its place."""

    def zero_grad(self) -> None:
        for o in self.optimizers:
            # a graphed step reads the gradients at their captured addresses: zero them in place
            o.zero_grad(set_to_none=self.graphed is None or o is not self.graphed.opt)

    def step(self) -> None:
        for o in self.optimizers:
            if self.graphed is not None and o is self.graphed.opt:
                self.graphed.step()
            else:
                o.step()

    def state_dicts(self) -> list[dict]:
        return [o.state_dict() for o in self.optimizers]

    def load_state_dicts(self, states: list[dict]) -> None:
        for o, s in zip(self.optimizers, states):
            o.load_state_dict(s)

    def lrs(self) -> dict[str, float]:
        return {g.get("name", f"group{i}"): g["lr"] for o in self.optimizers for i, g in enumerate(o.param_groups)}

    def lrs_at(self, scale: float) -> dict[str, float]:
        """The learning rates :func:`set_lr_scale` sets for ``scale``: ``base_lr · scale`` per group."""
        return {g.get("name", f"group{i}"): g["base_lr"] * scale
                for o in self.optimizers for i, g in enumerate(o.param_groups)}


def make_muon(banks: list[torch.nn.Parameter], cfg: OptimConfig, distributed: bool) -> torch.optim.Optimizer:
    """Muon over the banks through ``golf_fast.optim`` (the package's Parallel Muon)."""
    try:
        from golf_fast.optim import Muon
    except ImportError as e:
        raise RuntimeError("optim.matrix_optimizer=muon needs golf_fast.optim.Muon, which is not in this "
                           f"installation ({e}); use --optim.matrix_optimizer adam") from e
    return Muon([{"params": banks, "name": "matrix", "base_lr": cfg.matrix_lr}], lr=cfg.matrix_lr,
                momentum=cfg.muon_momentum, momentum_warmup_start=cfg.muon_momentum_warmup_start,
                momentum_warmup_steps=cfg.muon_momentum_warmup_steps, weight_decay=cfg.muon_wd,
                row_normalize=cfg.muon_row_normalize, ns_steps=cfg.ns_steps, distributed=distributed)


def build_optimizers(model: torch.nn.Module, cfg: OptimConfig, distributed: bool) -> Optimizers:
    """The groups of the module docstring; Muon's step is graphed when ``cfg.graph_step_enabled``
    for the parameters' device (``on`` with CPU parameters is an error)."""
    params = dict(model.named_parameters())
    banks = [params[n] for n in BANK_NAMES]
    embed = [params[EMBED_NAME]]
    scalars = [p for n, p in params.items() if n not in BANK_NAMES and n != EMBED_NAME]
    fused = all(p.is_cuda for p in params.values())
    groups = [dict(params=embed, lr=cfg.embed_lr, weight_decay=cfg.embed_wd, name="embed", base_lr=cfg.embed_lr),
              dict(params=scalars, lr=cfg.scalar_lr, weight_decay=cfg.scalar_wd, name="scalar", base_lr=cfg.scalar_lr)]
    replicated = embed + scalars
    opts: list[torch.optim.Optimizer] = []
    graphed = None
    if cfg.matrix_optimizer == "muon":
        muon = make_muon(banks, cfg, distributed)
        opts.append(muon)
        dev = banks[0].device.type
        if cfg.graph_step_enabled(dev):
            if dev != "cuda":
                raise ValueError(f"optim.graph_step: 'on' needs the parameters on CUDA, they are on {dev}")
            graphed = GraphedOptimizerStep(muon, warmup_steps=cfg.graph_warmup_steps)
    else:
        groups.append(dict(params=banks, lr=cfg.scalar_lr, weight_decay=cfg.scalar_wd, name="matrix",
                           base_lr=cfg.scalar_lr))
        replicated = replicated + banks
    opts.append(torch.optim.AdamW(groups, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused or None))
    return Optimizers(opts, replicated, graphed)


def set_lr_scale(opt: Optimizers, scale: float) -> None:
    for o in opt.optimizers:
        for g in o.param_groups:
            g["lr"] = g["base_lr"] * scale


def sync_replicated_grads(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Average the gradients of ``params`` over ranks: small ones packed in one flat all-reduce."""
    if world_size <= 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    small = [g for g in grads if g.numel() <= SMALL_NUMEL]
    large = [g for g in grads if g.numel() > SMALL_NUMEL]
    works = [distributed.all_reduce(g, op="sum", async_op=True) for g in large]
    distributed.all_reduce_packed(small, op="sum")
    for w in works:
        w.wait()
    for g in grads:
        g.div_(world_size)
    for p, g in zip(params, grads):
        if p.grad is None:
            p.grad = g


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> Optional[torch.Tensor]:
    """Clip the local gradient norm of ``params`` (no sync with other ranks or the host); returns the
    norm before clipping as a 0-d tensor on the gradients' device (None when ``max_norm`` is 0)."""
    if max_norm < 0:
        raise ValueError(f"max_norm: expected >= 0 (0 = off), got {max_norm}")
    if max_norm == 0:
        return None
    grads = [p for p in params if p.grad is not None]
    return torch.nn.utils.clip_grad_norm_(grads, max_norm)
