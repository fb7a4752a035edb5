"""Whole-model GPTQ: per-role bits and SDClip sigmas, fp16 passthrough, sharding over ranks.

``quantize_model(state, hessians, recipe)`` takes an un-banked state dict (``blocks.0.attn.c_q.weight``
...) and the Hessians of its matrices (keyed by the weight's name or by its module's name, without
``.weight``), and returns a ``QuantizedModel``:

* floating tensors with more than ``recipe.passthrough_max_numel`` elements must be 2-D and have
  a Hessian; they are GPTQ'd with the bits and clip sigmas of the first rule whose regex matches
  their name (anything else ``default_bits``/``default_clip_sigmas``; the default recipe is the
  record's, ``golf_fast.quant.recipe.RECORD_RECIPE``) and come back as
  ``QuantizedTensor(codes, scales, bits)``;
* the attention gates (``*.attn_gate_w``) come back as int8 per-row ``QuantizedTensor(bits=8)``
  when ``recipe.gate_int8`` (:mod:`golf_fast.quant.gate`);
* other floating tensors come back as fp16 tensors, non-floating tensors unchanged;
* with ``recipe.lqer``, the ``lqer_top_k`` GPTQ'd matrices with the largest ``‖W − q·s‖_F`` get
  LQER factor entries ``<name>.lqer.*`` (:mod:`golf_fast.quant.lqer`; the artifact stores them and
  ``dequantize_state`` folds them back as ``W = q·s + A·B``).

Under ``torch.distributed`` (initialized, world size > 1) the matrices are split across ranks
(largest first, each to the least-loaded rank, by cost N·K² + K³), every rank quantizes its share,
and the results are broadcast back from their owners (through ``golf_fast.distributed``, which
places them on the process group's device), so every rank returns the same, complete model; the
per-matrix numbers are all-reduced. The result equals the single-process one bit for bit (the same
GPTQ runs on the same inputs, only on another rank).

Matrices sharing one Hessian tensor (c_q, c_k and c_v in the record) share its factorization. On
CUDA, same-shape matrices with the same bits and sigmas are run as one batch (one kernel launch
per block for all of them). A table (loss, damping, time per matrix) goes to the
``golf_fast.quant`` logger and ``QuantizedModel.table``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

import torch

from golf_fast import distributed
from golf_fast.quant.formats import QuantizedTensor
from golf_fast.quant.gate import is_gate, quantize_gate_int8_rows
from golf_fast.quant.gptq import HessianFactor, check_gptq_inputs, gptq_scales, prepare_hessians, run_gptq
from golf_fast.quant.lqer import add_lqer
from golf_fast.quant.recipe import RECORD_RECIPE, QuantRecipe, RoleRule

log = logging.getLogger("golf_fast.quant")


@dataclass
class MatrixReport:
    name: str
    shape: tuple[int, int]
    role: str
    bits: int
    clip_sigmas: float
    loss: float
    damp_used: float
    damp_raised: bool
    seconds: float
    rank: int


@dataclass
class QuantizedModel:
    """``tensors``: name → QuantizedTensor (GPTQ'd) or tensor (fp16 / non-float passthrough)."""

    tensors: dict[str, Union[QuantizedTensor, torch.Tensor]]
    table: list[MatrixReport] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)
    """Tensors quantized as int8 per-row gates."""
    lqer: dict[str, float] = field(default_factory=dict)
    """Matrices given an LQER correction → their residual ‖W − q·s‖_F before it."""
    seconds: float = 0.0

    def format_table(self) -> str:
        lines = [f"{'name':<34} {'shape':>11} {'role':>9} {'bits':>4} {'k':>6} {'loss':>11} {'damp':>7} "
                 f"{'ms':>8} {'rank':>4}"]
        for r in self.table:
            damp = f"{r.damp_used:.4g}" + ("!" if r.damp_raised else "")
            lines.append(f"{r.name:<34} {r.shape[0]:>5}x{r.shape[1]:<5} {r.role:>9} {r.bits:>4} {r.clip_sigmas:>6.2f} "
                         f"{r.loss:>11.4e} {damp:>7} {1000 * r.seconds:>8.1f} {r.rank:>4}")
        lines.append(f"{len(self.table)} matrices quantized in {self.seconds:.2f} s ('!' = damping raised)")
        if self.gates:
            lines.append(f"int8 per-row gates: {len(self.gates)} ({self.gates[0]} ...)")
        if self.lqer:
            lines.append("LQER: " + ", ".join(f"{n} (|E|={e:.4g})" for n, e in self.lqer.items()))
        return "\n".join(lines)


@dataclass
class _Item:
    index: int
    name: str
    w: torch.Tensor
    h: torch.Tensor
    rule: RoleRule

    @property
    def cost(self) -> float:
        n, k = self.w.shape
        return float(n) * k * k + float(k) ** 3


def _hessian_for(hessians: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    for key in (name, name[:-len(".weight")] if name.endswith(".weight") else None):
        if key is not None and key in hessians:
            return hessians[key]
    raise KeyError(f"hessians: no Hessian for matrix {name!r} (looked up {name!r}"
                   + (f" and {name[:-7]!r}" if name.endswith('.weight') else "") + ")")


def _world() -> tuple[int, int]:
    return distributed.rank(), distributed.world_size()


def assign_ranks(costs: list[float], world: int) -> list[int]:
    """Largest first, each to the least-loaded rank (ties to the lowest rank): deterministic."""
    load = [0.0] * world
    owner = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = min(range(world), key=lambda r: (load[r], r))
        owner[i] = r
        load[r] += costs[i]
    return owner


def _stack(factors: list[HessianFactor]) -> HessianFactor:
    return HessianFactor(u=torch.cat([f.u for f in factors]), perm=torch.cat([f.perm for f in factors]),
                         invperm=torch.cat([f.invperm for f in factors]), dead=torch.cat([f.dead for f in factors]),
                         lam=torch.cat([f.lam for f in factors]),
                         damp_used=[d for f in factors for d in f.damp_used],
                         damp_raised=[d for f in factors for d in f.damp_raised])


def _quantize_items(items: list[_Item], recipe: QuantRecipe, device: torch.device) -> dict[int, tuple]:
    """GPTQ the given items on ``device``; returns index → (GPTQResult, seconds)."""
    factors: dict[int, HessianFactor] = {}
    out: dict[int, tuple] = {}
    groups: dict[tuple, list[_Item]] = {}
    batch = recipe.batch_same_shape and device.type == "cuda"
    for it in items:
        key = (tuple(it.w.shape), it.rule.bits, it.rule.clip_sigmas) if batch else (it.index,)
        groups.setdefault(key, []).append(it)
    for group in groups.values():
        t0 = time.perf_counter()
        hs, fs = [], []
        for it in group:
            h = it.h.to(device)
            if id(it.h) not in factors:  # matrices sharing one Hessian tensor share its factorization
                factors[id(it.h)] = prepare_hessians(h[None], recipe.damp, recipe.act_order)
            fs.append(factors[id(it.h)])
            hs.append(h)
        w = torch.stack([it.w.to(device) for it in group])
        s16 = gptq_scales(w, group[0].rule.bits, group[0].rule.clip_sigmas, None)
        results = run_gptq(w, _stack(fs), torch.stack(hs), s16, group[0].rule.bits, recipe.block_size, recipe.backend)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = (time.perf_counter() - t0) / len(group)
        for it, res in zip(group, results):
            out[it.index] = (res, dt)
            log.info("GPTQ %s %s int%d k=%.2f loss=%.4e damp=%.4g%s %.1f ms", it.name, tuple(it.w.shape),
                     it.rule.bits, it.rule.clip_sigmas, res.loss, res.damp_used,
                     " (raised)" if res.damp_raised else "", 1000 * dt)
    return out


def quantize_model(state: Mapping[str, torch.Tensor], hessians: Mapping[str, torch.Tensor],
                   recipe: Optional[QuantRecipe] = None, *, device: Optional[torch.device] = None) -> QuantizedModel:
    """Quantize a state dict with GPTQ; see the module docstring. ``device`` defaults to the
    device of the first matrix (under NCCL this should be the rank's GPU)."""
    t_start = time.perf_counter()
    recipe = RECORD_RECIPE if recipe is None else recipe
    if not isinstance(recipe, QuantRecipe):
        raise TypeError(f"recipe: expected a QuantRecipe, got {type(recipe).__name__}")
    recipe.validate()
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a mapping name → tensor, got {type(state).__name__}")
    if not isinstance(hessians, Mapping):
        raise TypeError(f"hessians: expected a mapping name → tensor, got {type(hessians).__name__}")
    tensors: dict[str, Union[QuantizedTensor, torch.Tensor]] = {}
    items: list[_Item] = []
    gates: list[str] = []
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"state[{name!r}]: expected a tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            tensors[name] = t.detach().clone()
        elif recipe.gate_int8 and is_gate(name, t):
            tensors[name] = quantize_gate_int8_rows(t)
            gates.append(name)
        elif t.numel() <= recipe.passthrough_max_numel:
            tensors[name] = t.detach().to(torch.float16)
        else:
            if t.dim() != 2:
                raise ValueError(f"state[{name!r}]: tensors with more than {recipe.passthrough_max_numel} elements "
                                 f"are GPTQ'd and must be 2-D (un-bank the state first), got shape {tuple(t.shape)}")
            h = _hessian_for(hessians, name)
            rule = recipe.rule_for(name)
            try:
                check_gptq_inputs(t, h.to(t.device), rule.bits, recipe.block_size, recipe.damp, rule.clip_sigmas, None,
                              batched=False)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"state[{name!r}] / its Hessian: {exc}") from exc
            tensors[name] = None  # placeholder keeps the state's order
            items.append(_Item(len(items), name, t.detach(), h.detach(), rule))
    if device is None:
        device = items[0].w.device if items else torch.device("cpu")
    rank, world = _world()
    owner = assign_ranks([it.cost for it in items], world)
    mine = [it for it in items if owner[it.index] == rank]
    log.info("GPTQ: %d matrices (%d on rank %d of %d), %d passthrough tensors", len(items), len(mine), rank, world,
             len(tensors) - len(items))
    done = _quantize_items(mine, recipe, device)

    stats = torch.zeros((len(items), 4), dtype=torch.float64, device=device)
    for idx, (res, dt) in done.items():
        stats[idx] = torch.tensor([res.loss, res.damp_used, float(res.damp_raised), dt], dtype=torch.float64)
    if world > 1:
        distributed.all_reduce(stats, "sum")
    stats = stats.cpu()
    table = []
    for it in items:
        n, k = it.w.shape
        if owner[it.index] == rank:
            res = done[it.index][0]
            codes, scales = res.codes.contiguous(), res.scales.contiguous()
        else:
            codes = torch.zeros((n, k), dtype=torch.int8, device=device)
            scales = torch.zeros((n,), dtype=torch.float16, device=device)
        if world > 1:  # owner → everyone, as bytes (every backend carries uint8)
            distributed.broadcast(codes.view(torch.uint8), src=owner[it.index])
            distributed.broadcast(scales.view(torch.uint8), src=owner[it.index])
        tensors[it.name] = QuantizedTensor(codes=codes, scales=scales, bits=it.rule.bits)
        loss, damp_used, raised, dt = stats[it.index].tolist()
        table.append(MatrixReport(it.name, (n, k), it.rule.role, it.rule.bits, it.rule.clip_sigmas, loss, damp_used,
                                  bool(raised), dt, owner[it.index]))
    lqer = {}
    if recipe.lqer and recipe.lqer_top_k and items:  # deterministic on every rank (same codes everywhere)
        chosen, errors = add_lqer(tensors, {it.name: it.w for it in items}, top_k=recipe.lqer_top_k,
                                  rank=recipe.lqer_rank, asym=recipe.lqer_asym, group=recipe.lqer_group,
                                  factor_bits=recipe.lqer_factor_bits, exclude=set(gates))
        lqer = {n: errors[n] for n in chosen}
    model = QuantizedModel(tensors=tensors, table=table, seconds=time.perf_counter() - t_start, gates=gates, lqer=lqer)
    if rank == 0:
        log.info("GPTQ table:\n%s", model.format_table())
    return model
