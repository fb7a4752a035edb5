"""The post-training pipeline: Hessians → GPTQ → artifact → fresh model from the file → eval.

* :func:`collect_hessians`: ``H[name] = Σ XᵀX / tokens`` for every quantized matrix, from the
  model's activation hook into :class:`golf_fast.quant.HessianCollector` (its kernel:
  ``golf_fast.hessian_accumulate_``). c_q, c_k and c_v read the same input and share one tensor.
  Under several ranks each rank accumulates its own calibration batches and the sums and token
  counts are all-reduced, so every rank holds the Hessians of the global calibration data.
* :func:`time_calibration_batch`: seconds of one calibration batch, for the Hessian reserve.
* :func:`quantize`: :func:`golf_fast.quant.quantize_model` (GPTQ with the record's per-role bits
  and SDClip sigmas) over the un-banked state, on the model's device (on CUDA the Triton GPTQ
  block kernel), the matrices split across ranks and gathered, so every rank (and every world
  size) gets the same quantized model.
* :func:`write_artifact`: :func:`golf_fast.artifact.save_artifact` (checksummed, pickle-free,
  written atomically).
* :func:`fit_to_budget`: re-quantize with scaled clip sigmas until code + artifact ≤ 16,000,000.
* :func:`round_trip`: quantize, write (rank 0), fit the budget when code bytes are given, rebuild a
  fresh model from the file (:func:`golf_fast.model.load_model_from_artifact`; on CUDA by default
  its block matrices stay packed int6 codes, ``eval.weights``) and evaluate it.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch

from golf_fast import distributed
from golf_fast.artifact import encode_artifact, load_artifact, save_artifact
from golf_fast.model.config import ModelConfig
from golf_fast.model.from_artifact import load_model_from_artifact, model_from_artifact
from golf_fast.model.gpt import GPT
from golf_fast.model.precision import apply_precision
from golf_fast.quant import HessianCollector, QuantizedTensor, QuantRecipe, quantize_model
from golf_fast.train import budget
from golf_fast.train.evalhooks import EvalHooks
from golf_fast.train.quant_recipe import passthrough_threshold
from golf_fast.train.runlog import RunLog


@torch.no_grad()
def collect_hessians(model: GPT, batches: Iterable, n_batches: int,
                     autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
                     ) -> dict[str, torch.Tensor]:
    """Hessians ``Σ XᵀX / tokens`` of the quantized matrices from ``n_batches`` training batches.

    The model runs in eval mode with its current loop state (looped layers accumulate once per
    visit, like the record). Returns name → (K, K) fp32 for every name of ``model.matrix_names()``.
    Under a process group of several ranks, ``batches`` are this rank's share of the calibration
    data and the sums and token counts are all-reduced before the division.
    """
    if not isinstance(n_batches, int) or n_batches < 1:
        raise ValueError(f"n_batches: expected an int >= 1, got {n_batches!r}")
    collector = HessianCollector(device=next(model.parameters()).device,
                                 all_reduce=distributed.world_size() > 1)
    was_training, old = model.training, model.activation_hook
    model.eval()
    model.activation_hook = collector.add
    try:
        it = iter(batches)
        for _ in range(n_batches):
            b = next(it)
            with autocast():
                model.hidden(b.x, b.cu_seqlens)
    finally:
        model.activation_hook = old
        model.train(was_training)
    hessians = collector.finalize("mean").hessians
    missing = [n for n in model.matrix_names() if n not in hessians]
    if missing:
        raise RuntimeError(f"collect_hessians: no activations reached {missing[:4]}")
    return {n: hessians[n] for n in model.matrix_names()}


def time_calibration_batch(model: GPT, batches: Iterable, looping: bool,
                           autocast: Callable[[], contextlib.AbstractContextManager],
                           synchronize: Callable[[], None]) -> float:
    """Seconds to collect the Hessians of one batch with depth recurrence ``looping`` (as at the end
    of training); the model's loop state is restored and its weights are not touched."""
    old = model.looping_active
    model.looping_active = looping
    try:
        t0 = time.perf_counter()
        collect_hessians(model, batches, 1, autocast)
        synchronize()
        return time.perf_counter() - t0
    finally:
        model.looping_active = old


def default_recipe(model: GPT) -> QuantRecipe:
    """The record's recipe, with a passthrough threshold that fits this model's size: every matrix
    is GPTQ'd and every control tensor passes through as fp16 (the record's 65,536-element threshold
    would pass a small model's matrices through)."""
    return QuantRecipe(passthrough_max_numel=passthrough_threshold(model))


def quantize(model: GPT, hessians: dict[str, torch.Tensor], recipe: Optional[QuantRecipe] = None
             ) -> tuple[dict[str, Any], float, str]:
    """GPTQ the un-banked state on the model's device: returns (name → QuantizedTensor or fp16
    tensor on the CPU, seconds, table text)."""
    if not isinstance(hessians, dict) or not hessians:
        raise ValueError("hessians: expected a non-empty dict name → (K, K) tensor")
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    state = {k: v.detach().float() if v.is_floating_point() else v.detach()
             for k, v in model.unbanked_state_dict().items()}
    hs = {k: v.float().to(device) for k, v in hessians.items()}
    qm = quantize_model(state, hs, recipe if recipe is not None else default_recipe(model), device=device)
    tensors = {k: QuantizedTensor(v.codes.cpu(), v.scales.cpu(), v.bits) if isinstance(v, QuantizedTensor) else v.cpu()
               for k, v in qm.tensors.items()}
    return tensors, time.perf_counter() - t0, qm.format_table()


def write_artifact(path: os.PathLike, tensors: dict, model_cfg: ModelConfig, codec: str = "",
                   metadata: Optional[dict] = None) -> int:
    """Write the artifact atomically (``codec`` "" = the artifact module's default); returns its size in bytes."""
    if not isinstance(model_cfg, ModelConfig):
        raise TypeError(f"model_cfg: expected a ModelConfig, got {type(model_cfg).__name__}")
    kwargs = {"codec": codec} if codec else {}
    return int(save_artifact(path, tensors, model_cfg, metadata=metadata or {}, **kwargs))


@dataclass
class RoundTrip:
    """The pipeline's output: what the quantizer produced, the file, and the fresh model's evals."""

    quantized: dict[str, Any]
    artifact_path: Path
    artifact_bytes: Optional[int]
    """On rank 0 (the writer); None elsewhere."""
    evals: dict[str, dict]
    phases: dict[str, float] = field(default_factory=dict)
    clip_factor: float = 1.0
    """The clip-sigma factor of the written artifact (> 1 when it was fitted to the budget)."""


def _agree(nbytes: Optional[int]) -> Optional[int]:
    """Rank 0's artifact size on every rank."""
    text = distributed.broadcast_str("" if nbytes is None else str(nbytes))
    return int(text) if text else None


def fit_to_budget(model: GPT, hessians: dict[str, torch.Tensor], recipe: QuantRecipe, code_bytes: int,
                  codec: str, metadata: Optional[dict], log: Callable[[str], None]) -> budget.BudgetFit:
    """Re-quantize with scaled clip sigmas until code + artifact ≤ 16,000,000
    (:func:`golf_fast.train.budget.fit_to_budget`); sizes are of the exact file (metadata included)."""
    kwargs = {"codec": codec} if codec else {}

    def encoded(tensors: dict) -> int:
        return len(encode_artifact(tensors, model.cfg, metadata=metadata or {}, **kwargs))

    return budget.fit_to_budget(lambda f: quantize(model, hessians, budget.scaled_recipe(recipe, f))[0], encoded,
                                code_bytes, log=log)


def exported_load_seconds(path: os.PathLike, device: torch.device, attention: str, weights: str) -> float:
    """Seconds the exported ``train_gpt.py`` takes to load ``path`` into a model: the artifact decoded
    by the decoder it carries (``decoder="portable"``: the plain-C golf-rans decoder compiled at load,
    not the package's C++ extension), then the model built from it. This, not the package's own load,
    is the load that counts toward the evaluation time of a submission."""
    t0 = time.perf_counter()
    model_from_artifact(load_artifact(path, decoder="portable"), device, attention, weights)
    return time.perf_counter() - t0


def round_trip(model: GPT, hessians: dict[str, torch.Tensor], *, path: os.PathLike, codec: str = "",
               metadata: Optional[dict] = None, d: distributed.Dist, evals: EvalHooks, attention: str = "auto",
               log: RunLog, recipe: Optional[QuantRecipe] = None, precision: str = "fp32",
               weights: str = "dequantized", code_bytes: Optional[int] = None,
               fused: tuple[str, str] = ("cuda", "cuda")) -> RoundTrip:
    """GPTQ (``recipe``; None = :func:`default_recipe`) → artifact at ``path`` (written by rank 0) →
    fresh model from the file, cast to ``precision`` (``golf_fast.model.precision``) → full eval.

    ``fused``: the fresh models' ``FusedKernels`` switches (cross_entropy, mlp), as the trained
    model's (``golf_fast.train.device_profile.fused_modes``).

    ``weights``: how the fresh model holds its block matrices (``"int6"``: packed codes through
    the fused int6 kernel; ``"dequantized"``: float banks), see :func:`golf_fast.model.model_from_artifact`.

    With ``code_bytes``: when code + artifact exceed 16,000,000, every rank re-quantizes with the
    clip-sigma fit (:func:`fit_to_budget`; deterministic, so all agree) and rank 0 rewrites the file;
    if even the coarsest factor does not fit, the over-budget file stays and the caller's verdict
    says so.
    """
    path = Path(path)
    phases: dict[str, float] = {}
    tensors, phases["gptq"], qtable = quantize(model, hessians, recipe)
    for ln in qtable.splitlines():
        log.line("  " + ln)
    t0 = time.perf_counter()
    nbytes = _agree(write_artifact(path, tensors, model.cfg, codec, metadata) if d.main else None)
    factor = 1.0
    if code_bytes is not None and budget.verdict(nbytes, code_bytes)[0] is False:
        log.line(f"budget: {nbytes:,} artifact + {code_bytes:,} code bytes is over 16,000,000; "
                 "fitting the clip sigmas")
        try:
            fitted = fit_to_budget(model, hessians, recipe if recipe is not None else default_recipe(model),
                                   code_bytes, codec, metadata, log.line)
        except ValueError as e:
            log.line(f"budget: cannot fit ({e}); the run is over budget")
        else:
            tensors, factor = fitted.tensors, fitted.factor
            nbytes = _agree(write_artifact(path, tensors, model.cfg, codec, metadata) if d.main else None)
    distributed.barrier()
    phases["artifact_write"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh = apply_precision(load_model_from_artifact(path, d.device, attention, weights), precision)
    fresh.fused_kernels.cross_entropy, fresh.fused_kernels.mlp = fused
    log.line(f"round-trip model: block matrices {'packed int6 codes' if weights == 'int6' else 'dequantized'}")
    fresh.looping_active = model.looping_active
    phases["artifact_load"] = time.perf_counter() - t0
    phases["artifact_load_exported"] = exported_load_seconds(path, d.device, attention, weights)
    t0 = time.perf_counter()
    out = evals.full(fresh, "round-trip")
    phases["eval_round_trip"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # the artifact is loaded once: a model running from int6 banks is given float banks of the same
    # dequantized matrices by run_adaptive itself (adapters train float weights; LoRA's int6 branch
    # reads the codes from ``tensors``)
    adaptive = evals.adaptive(fresh, "round-trip", int6_state=tensors)  # adapts the fresh copy in place
    if adaptive is not None:
        out["adaptive"] = adaptive
        audit = adaptive["audit"]["seconds"] if isinstance(adaptive.get("audit"), dict) else 0.0
        phases["eval_adaptive"] = time.perf_counter() - t0 - audit  # the replay audit is not evaluation time
        if audit:
            phases["eval_audit"] = audit
    return RoundTrip(tensors, path, nbytes, out, phases, factor)

