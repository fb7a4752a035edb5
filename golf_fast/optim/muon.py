"""Muon: momentum + Newton-Schulz orthogonalized updates for matrix parameters and banks.

The update of one parameter P (a matrix (rows, cols), or a bank (B, rows, cols) whose B
matrices are updated independently) with gradient g, at step t (0-based)::

    μ   = momentum, or during warmup  μ0 + (momentum − μ0)·min(1, t / momentum_warmup_steps)
    buf = μ·buf + g
    u   = g + μ·buf                     (Nesterov; u = buf without it)
    u   = u / max(‖u_row‖₂, 1e-7)       (MuonEq-R, optional: each row of each matrix)
    u   = NS(u)                         (golf_fast.newton_schulz, batched over the bank)
    P  *= 1 − lr·weight_decay           (decoupled)
    P  += −lr · max(1, rows/cols)^0.5 · u

(parameter-golf's order, reference §4.1.) ``buf`` is kept in float32.

Parallel Muon (``distributed=True``; no DDP on these parameters): every rank holds the full
parameters and its own local gradients. Per step, for each parameter (a bank, or a 2-D matrix
as a bank of 1), largest first:

1. the gradient is copied into a (B_pad, rows, cols) buffer, B_pad = B rounded up to a multiple
   of the world size (padding rows stay zero), and an asynchronous reduce-scatter (mean over
   ranks) gives this rank its B_pad / world matrices — all banks are launched up front;
2. bank i: wait for its reduce-scatter, update the momentum of the shard only, run NS on the
   shard's real (non-padding) matrices, start the all-gather of the shard's update; then
   wait for bank i−1's all-gather and apply it. So bank i−1's gather overlaps bank i's NS
   (the kernels of NS(i) are queued before the wait on gather(i−1)).

The communication goes through ``golf_fast.optim.comm`` (NCCL natively; gloo with an
emulated reduce-scatter where needed). The result equals single-process Muon run on the
mean of the ranks' gradients.

A step is three parts: :meth:`Muon.load_hyperparameters` (host → device: the step's lr and μ),
:meth:`Muon.step_body` (all the tensor work) and :meth:`Muon.advance` (host step counters).
With :meth:`Muon.enable_device_hyperparameters` lr and μ live in 0-d device tensors that the
first part fills (one ``fill_`` launch each, no host sync), so ``step_body`` reads no host
value that changes between steps, never synchronizes with the host, and after the first step
(momentum buffers, shard buffers, Newton-Schulz workspaces exist) allocates only op
temporaries: it can be captured once in a CUDA graph and replayed
(``golf_fast.optim.GraphedOptimizerStep``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch

from golf_fast import distributed as dist_module
from golf_fast.ops.newton_schulz import COMPUTE_DTYPES, Coefficients, newton_schulz, resolve_coefficients
from golf_fast.optim import comm

ROW_NORM_EPS = 1e-7


def shape_scale(rows: int, cols: int) -> float:
    """``max(1, rows/cols) ** 0.5``: 2.0 for the (2048, 512) MLP-up matrices, 1 otherwise in the record."""
    return max(1.0, rows / cols) ** 0.5


def _check_number(name: str, value: Any, lo: float, hi: float = math.inf, hi_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value and (
        value < hi if hi_open else value <= hi)
    if not ok:
        rng = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise ValueError(f"{name}: expected a number in {rng}, got {value!r}")


class Muon(torch.optim.Optimizer):
    """Muon over 2-D parameters and 3-D parameter banks (see the module docstring).

    Args:
        params: parameters or parameter groups; every parameter must be 2-D or 3-D.
        lr: learning rate (parameter-golf: 0.022–0.026), set per step by a schedule if wanted.
        momentum: μ after warmup (0.99 in R0810, 0.97 in R0611).
        nesterov: use the Nesterov form ``u = g + μ·buf``.
        momentum_warmup_start / momentum_warmup_steps: linear warmup of μ from the start value
            (0.92 in the records, over 1500 steps); ``None`` / 0 for no warmup.
        weight_decay: decoupled weight decay (0.095 in the records).
        row_normalize: MuonEq-R row normalization before NS.
        ns_steps / coefficients / ns_eps / ns_dtype: passed to ``golf_fast.newton_schulz``.
        backend: NS backend (``"auto"``, ``"triton"``, ``"reference"``).
        distributed: Parallel Muon over the default (or ``process_group``) process group.
        comm_config: how the reduce-scatter runs (``golf_fast.optim.comm.CommConfig``).
    """

    def __init__(self, params: Iterable, lr: float = 0.02, momentum: float = 0.95, *, nesterov: bool = True,
                 momentum_warmup_start: Optional[float] = None, momentum_warmup_steps: int = 0,
                 weight_decay: float = 0.0, row_normalize: bool = False, ns_steps: int = 5,
                 coefficients: Coefficients = "polar_express", ns_eps: float = 1e-7,
                 ns_dtype: torch.dtype = torch.bfloat16, backend: str = "auto", distributed: bool = False,
                 process_group: Optional[Any] = None,
                 comm_config: comm.CommConfig = comm.CommConfig()) -> None:
        _check_number("lr", lr, 0.0)
        _check_number("momentum", momentum, 0.0, 1.0, hi_open=True)
        _check_number("weight_decay", weight_decay, 0.0)
        if momentum_warmup_start is not None:
            _check_number("momentum_warmup_start", momentum_warmup_start, 0.0, 1.0, hi_open=True)
        if not isinstance(momentum_warmup_steps, int) or isinstance(momentum_warmup_steps, bool) \
                or momentum_warmup_steps < 0:
            raise ValueError(f"momentum_warmup_steps: expected an int >= 0, got {momentum_warmup_steps!r}")
        resolve_coefficients(ns_steps, coefficients)  # raises on bad steps / coefficients
        _check_number("ns_eps", ns_eps, 0.0)
        if ns_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"ns_dtype: expected one of {COMPUTE_DTYPES}, got {ns_dtype!r}")
        if not isinstance(comm_config, comm.CommConfig):
            raise TypeError(f"comm_config: expected a golf_fast.optim.comm.CommConfig, got {type(comm_config).__name__}")
        if distributed and not dist_module.is_initialized():
            raise RuntimeError("distributed: Parallel Muon needs an initialized torch.distributed process group "
                               "(call torch.distributed.init_process_group first, e.g. under torchrun)")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, momentum_warmup_start=momentum_warmup_start,
                        momentum_warmup_steps=momentum_warmup_steps, weight_decay=weight_decay,
                        row_normalize=row_normalize, ns_steps=ns_steps, coefficients=coefficients,
                        ns_eps=ns_eps, ns_dtype=ns_dtype)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for i, p in enumerate(group["params"]):
                if p.dim() not in (2, 3):
                    raise ValueError(f"params: Muon updates 2-D matrices and 3-D (bank, rows, cols) banks, got "
                                     f"a parameter of shape {tuple(p.shape)} (group param {i}); put it in Adam")
            group.setdefault("step", 0)
        self.backend = backend
        self.distributed = distributed
        self.process_group = process_group
        self.comm_config = comm_config
        self._device_hyper: Optional[list[dict[str, torch.Tensor]]] = None

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def current_momentum(group: dict) -> float:
        """μ for the group's next step (after the linear warmup, if any)."""
        mu, start, steps = group["momentum"], group["momentum_warmup_start"], group["momentum_warmup_steps"]
        if start is None or steps == 0:
            return mu
        frac = min(1.0, group["step"] / steps)
        return start + (mu - start) * frac

    def enable_device_hyperparameters(self) -> None:
        """Keep each group's lr and μ in 0-d float32 tensors on its parameters' device (see the
        module docstring); :meth:`load_hyperparameters` fills them before each step body."""
        hyper = []
        for group in self.param_groups:
            dev = group["params"][0].device if group["params"] else torch.device("cpu")
            hyper.append({"lr": torch.zeros((), dtype=torch.float32, device=dev),
                          "mu": torch.zeros((), dtype=torch.float32, device=dev)})
        self._device_hyper = hyper

    def load_hyperparameters(self) -> None:
        """Device mode: write this step's lr and μ of every group into their device tensors."""
        if self._device_hyper is None:
            return
        for group, h in zip(self.param_groups, self._device_hyper):
            h["lr"].fill_(float(group["lr"]))
            h["mu"].fill_(self.current_momentum(group))

    def _mu(self, gi: int, group: dict):
        return self._device_hyper[gi]["mu"] if self._device_hyper is not None else self.current_momentum(group)

    def _lr(self, gi: int, group: dict):
        return self._device_hyper[gi]["lr"] if self._device_hyper is not None else group["lr"]

    def _direction(self, grad: torch.Tensor, buf: torch.Tensor, mu, group: dict) -> torch.Tensor:
        """Momentum update of ``buf`` (in place) and the orthogonalized direction (μ: float or 0-d tensor)."""
        g = grad.float()
        buf.mul_(mu).add_(g)
        if isinstance(mu, torch.Tensor):
            u = g.add(buf * mu) if group["nesterov"] else buf.clone()
        else:
            u = g.add(buf, alpha=mu) if group["nesterov"] else buf.clone()
        if group["row_normalize"]:
            u = u / u.norm(dim=-1, keepdim=True).clamp_min(ROW_NORM_EPS)
        return newton_schulz(u, group["ns_steps"], group["coefficients"], group["ns_eps"], group["ns_dtype"],
                             backend=self.backend)

    @staticmethod
    def _apply(p: torch.Tensor, update: torch.Tensor, group: dict, lr) -> None:
        """``P *= 1 − lr·wd; P −= lr·scale·update`` (lr: float, or a 0-d tensor in device mode)."""
        wd = group["weight_decay"]
        scale = shape_scale(p.shape[-2], p.shape[-1])
        if isinstance(lr, torch.Tensor):
            if wd:
                p.mul_(1.0 - lr * wd)
            p.addcmul_(update.to(p.dtype), lr.to(p.dtype), value=-scale)
            return
        if wd:
            p.mul_(1.0 - lr * wd)
        p.add_(update.to(p.dtype), alpha=-lr * scale)

    # ------------------------------------------------------------------ step

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.load_hyperparameters()
        self.step_body()
        self.advance()
        return loss

    @torch.no_grad()
    def step_body(self) -> None:
        """The tensor work of one step (CUDA-graph capturable in device mode, after a first step)."""
        if self.distributed:
            self._step_distributed()
        else:
            self._step_local()

    def advance(self) -> None:
        """Host bookkeeping after a step: the groups' step counters (momentum warmup)."""
        for group in self.param_groups:
            group["step"] += 1

    def _step_local(self) -> None:
        for gi, group in enumerate(self.param_groups):
            mu, lr = self._mu(gi, group), self._lr(gi, group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, dtype=torch.float32)
                self._apply(p, self._direction(p.grad, state["momentum_buffer"], mu, group), group, lr)

    def _step_distributed(self) -> None:
        pg = self.process_group
        world, rank = dist_module.world_size(pg), dist_module.rank(pg)
        items = []
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                if p.grad is None:
                    raise ValueError("params: Parallel Muon needs a gradient for every parameter on every rank "
                                     f"(a parameter of shape {tuple(p.shape)} has none)")
                items.append((gi, group, p))
        # Largest first (stable, so every rank uses the same order).
        order = sorted(range(len(items)), key=lambda i: -items[i][2].numel())
        started = []
        for i in order:
            gi, group, p = items[i]
            st = self._bank_state(p, world, group["ns_dtype"])
            st["grad_pad"][: st["banks"]].copy_(p.grad.view(st["banks"], *p.shape[-2:]))
            started.append((gi, group, p, st, comm.reduce_scatter_avg(st["grad_shard"], st["grad_pad"], pg,
                                                                      self.comm_config)))
        pending = None
        for gi, group, p, st, rs in started:
            rs.wait()
            per = st["grad_shard"].shape[0]
            real = max(0, min(per, st["banks"] - rank * per))
            if real:
                direction = self._direction(st["grad_shard"][:real], st["momentum_shard"][:real],
                                            self._mu(gi, group), group)
                st["update_shard"][:real].copy_(direction)
            gather = comm.all_gather(st["update_full"], st["update_shard"], pg)
            if pending is not None:
                self._finish(*pending)
            pending = (gi, group, p, st, gather)
        if pending is not None:
            self._finish(*pending)

    def _finish(self, gi: int, group: dict, p: torch.Tensor, st: dict, gather) -> None:
        gather.wait()
        self._apply(p, st["update_full"][: st["banks"]].view(p.shape), group, self._lr(gi, group))

    def _bank_state(self, p: torch.Tensor, world: int, ns_dtype: torch.dtype) -> dict:
        state = self.state[p]
        if "update_full" not in state:
            banks = p.shape[0] if p.dim() == 3 else 1
            per = -(-banks // world)
            rows, cols = p.shape[-2:]
            dev = p.device
            state["banks"] = banks
            state["grad_pad"] = torch.zeros((per * world, rows, cols), dtype=p.grad.dtype, device=dev)
            state["grad_shard"] = torch.zeros((per, rows, cols), dtype=p.grad.dtype, device=dev)
            state["momentum_shard"] = torch.zeros((per, rows, cols), dtype=torch.float32, device=dev)
            state["update_shard"] = torch.zeros((per, rows, cols), dtype=ns_dtype, device=dev)
            state["update_full"] = torch.zeros((per * world, rows, cols), dtype=ns_dtype, device=dev)
        return state
