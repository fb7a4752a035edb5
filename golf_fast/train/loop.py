"""The training program: train → Hessians (inside the window) → eval → GPTQ → artifact → reload → eval.

The parts live in their own modules: data and loaders (:mod:`.batches`), compile warm-up
(:mod:`.warmup`), schedule and clock (:mod:`.schedule`), one optimizer step and the EMA
(:mod:`.step`), step logging (:mod:`.steplog`), evaluation hooks (:mod:`.evalhooks`) and the
post-training pipeline (:mod:`.posttrain`). This module wires them: :func:`train` sets up the
process, :func:`training_loop` runs the steps.

The Hessian reserve is ``quant.reserve_s`` plus 1.25 × the measured time of one calibration batch
(timed before the clock starts) × ``calibration_batches``, so the collection, which reads training
data, finishes inside ``max_wallclock_s``.
"""

from __future__ import annotations

import dataclasses

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from golf_fast import distributed
from golf_fast.artifact import resolve_codec
from golf_fast.distributed import Dist, init_distributed
from golf_fast.model.attention import resolved_attention_backends
from golf_fast.model.gpt import GPT
from golf_fast.model.precision import apply_precision, precision_summary
from golf_fast.ops.dispatch import resolved_backends
from golf_fast.train import budget as budget_check
from golf_fast.train.batches import TrainData
from golf_fast.train.config import TrainConfig
from golf_fast.eval.adapt.result import mark_metadata
from golf_fast.eval.adapt.research_modes import prequant_before_gptq
from golf_fast.train.evalhooks import EvalHooks
from golf_fast.train.optimizers import build_optimizers, set_lr_scale
from golf_fast.train.posttrain import collect_hessians, round_trip, time_calibration_batch
from golf_fast.train.quant_recipe import recipe_from_config
from golf_fast.train.device_profile import fused_modes, resolve_profile
from golf_fast.train.result import RunResult, RunSetupError, TrainingDiverged, final_table
from golf_fast.train.runlog import RunLog, environment, fmt_secs, git_hash, versions
from golf_fast.train.schedule import Schedule, TrainClock
from golf_fast.train.step import TrainStep, WeightEma, autocast_factory
from golf_fast.train.steplog import StepLog
from golf_fast.train.warmup import compile_warmup

__all__ = ["RunResult", "TrainingDiverged", "train", "training_loop"]


@dataclass
class LoopOutcome:
    steps: int
    train_seconds: float
    looping_step: Optional[int]
    losses: list[float]


def training_loop(model: GPT, step_fn: Callable[[Sequence], torch.Tensor], loaders: Sequence, *,
                  schedule: Schedule, clock: TrainClock, steplog: StepLog, set_lr: Callable[[float], None],
                  ema: Optional[WeightEma] = None, evals: Optional[EvalHooks] = None,
                  synchronize: Callable[[], None] = lambda: None) -> LoopOutcome:
    """Steps until ``schedule`` says stop. Device values are read back only by ``steplog.flush``
    (logging steps, before an evaluation, at the end) and by the clock's cross-rank agreement."""
    step, looping_step = 0, None
    synchronize()
    clock.start()
    while not schedule.should_stop(step, clock.train_s, clock.last_dt):
        frac = schedule.progress(step, clock.train_s)
        if schedule.looping_due(frac, model.looping_active):
            model.looping_active = True
            looping_step = step
            steplog.flush()
            steplog.log.line(f"step {step}: depth recurrence on (frac {frac:.3f})")
        lr_mul = schedule.lr_mul(frac)
        set_lr(lr_mul)
        loss = step_fn(loaders)
        if ema is not None:
            ema.update()
        step += 1
        dt = clock.tick()
        steplog.record(step, loss, lr_mul=lr_mul, dt=dt, train_s=clock.train_s, looping=model.looping_active)
        periodic = evals is not None and evals.due(step)
        if steplog.due(step) or periodic:
            steplog.flush()
        if periodic:
            evals.periodic(model, step)
            clock.resume()  # the evaluation is not training time
    clock.settle(synchronize)
    steplog.flush()
    return LoopOutcome(step, clock.train_s, looping_step, list(steplog.losses))


def train(cfg: TrainConfig, *, code_bytes: Optional[int] = None, notes: Optional[list[str]] = None) -> RunResult:
    """Run the whole pipeline for ``cfg``; returns the numbers of the final table (on every rank).

    ``code_bytes``: the counted size of the submission script (the exported ``train_gpt.py``),
    known before the artifact is written; when given, the quantization is fitted so that code +
    artifact ≤ 16,000,000 (``posttrain.fit_to_budget``) and the result says whether the run fits.
    None: the run is not a submission (the final table says so). ``notes`` go into the table.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg: expected a TrainConfig, got {type(cfg).__name__}")
    cfg.validate()
    if code_bytes is not None and (not isinstance(code_bytes, int) or code_bytes < 0):
        raise ValueError(f"code_bytes: expected a non-negative int or None, got {code_bytes!r}")
    if cfg.quant.enabled:  # the artifact's codec is resolved now, not after the whole run
        try:
            resolve_codec(cfg.quant.codec)
        except ValueError as exc:
            raise ValueError(f"quant.{exc}") from None
    d = init_distributed(cfg.run.device)
    finished = False
    try:
        result = run(cfg, d, code_bytes=code_bytes, notes=notes)
        finished = True
        return result
    finally:
        distributed.shutdown(d, synchronize=finished)


def _backends() -> dict:
    return {**resolved_backends(), **resolved_attention_backends()}


def run(cfg: TrainConfig, d: Dist, *, code_bytes: Optional[int] = None,
        notes: Optional[list[str]] = None) -> RunResult:
    """The pipeline on an already set-up process (see :func:`train`)."""
    res = RunResult(code_bytes=code_bytes, notes=list(notes or []), seed=cfg.run.seed)
    t_start = time.perf_counter()
    if d.device.type == "cpu" and cfg.run.cpu_threads > 0:
        torch.set_num_threads(cfg.run.cpu_threads)
    name = cfg.run.name or f"{cfg.preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(distributed.broadcast_str(str(Path(cfg.run.out_dir) / name)))  # rank 0's folder name
    res.run_dir = str(run_dir)
    log = RunLog(run_dir, enabled=d.main)
    on_gpu = d.device.type == "cuda"
    profile = resolve_profile(cfg, d.device.type)  # every ``auto``, and what stands in for it here
    # the record's precision recipe computes in bf16 on any device (its model is bf16)
    amp_dtype = torch.bfloat16 if (profile.value("run.autocast") == "bf16" or cfg.run.precision == "record") else None
    use_compile = profile.here("run.compile") == "on"
    fused = fused_modes(profile)
    weights = profile.value("eval.weights")
    autocast = autocast_factory(d.device, amp_dtype)
    synchronize = torch.cuda.synchronize if on_gpu else (lambda: None)

    # ---- data
    t0 = time.perf_counter()
    data = TrainData.load(cfg, d, log.line)
    res.phases["data"] = time.perf_counter() - t0

    # ---- model and optimizers
    torch.manual_seed(cfg.run.seed)
    model = apply_precision(GPT(cfg.model, attention_backend=cfg.run.attention), cfg.run.precision).to(d.device)
    model.resolve_attention(d.device)
    model.fused_kernels.cross_entropy, model.fused_kernels.mlp = fused
    if d.world > 1:
        for p in model.parameters():
            distributed.broadcast(p.data, src=0)
    # the Muon step is graph-captured when the profile's choice runs here (never on a CPU)
    graph = "on" if profile.here("optim.graph_step") == "on" else "off"
    opt = build_optimizers(model, dataclasses.replace(cfg.optim, graph_step=graph), distributed=d.world > 1)
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    if use_compile:
        # one graph per (cu_seqlens bucket, loop state): allow enough of them (the record: 64)
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    fwd = torch.compile(model, dynamic=False, fullgraph=True) if use_compile else model
    all_params = list(model.parameters())
    step_fn = TrainStep(fwd, opt, all_params, accum=data.accum, grad_clip=cfg.optim.grad_clip, world=d.world,
                        device=d.device, autocast=autocast)

    log.header(cfg.to_json(), {
        "run_dir": run_dir, "git": git_hash(), "versions": versions(), "device":
            torch.cuda.get_device_name(d.device) if on_gpu else f"cpu ({torch.get_num_threads()} threads)",
        "world_size": d.world, "grad_accum": data.accum, "tokens/rank": data.tokens_per_rank,
        "parameters": f"{sum(p.numel() for p in all_params):,}",
        "data": f"{data.data_dir} ({len(data.train_files)} train shards, {len(data.val):,} val tokens)",
        "tokenizer": data.tokenizer, "compile": use_compile, "autocast": str(amp_dtype) if amp_dtype else "fp32",
        "muon step": "CUDA graph" if opt.graphed is not None else "eager",
        "round-trip weights": weights,
        "device profile": f"{profile.name}" + (f" (choices of {profile.target}, run on {d.device.type})"
                                              if profile.target != d.device.type else ""),
        "precision": f"{cfg.run.precision} {precision_summary(model)}",
        "val bytes": "CaseOps sidecars (original UTF-8)" if data.val_bytes is not None else "tokenizer tables",
        "calibration": f"{cfg.quant.calibration} × {cfg.quant.calibration_batches}",
        "torchrun": environment(), "backends": _backends() or "none resolved yet",
    })
    log.line("(kernel backends resolve at first use; the final table lists every one that ran)")
    if profile.target != d.device.type:
        log.line(f"device profile {profile.name} on {d.device.type}: every auto as on an H100, with stand-ins:")
        for ln in profile.lines():
            log.line("  " + ln)
    log.metric("device_profile", name=profile.name, device=d.device.type,
               choices={c.key: {"value": c.value, "here": c.here} for c in profile.choices.values()})

    # ---- compile warm-up (weights and optimizer state restored afterwards)
    t0 = time.perf_counter()
    if use_compile and cfg.schedule.compile_warmup_steps > 0:
        log.line("compile warm-up: torch.compile builds every graph the run needs before the clock starts "
                 "(tens of seconds per graph on a first run; cached afterwards)")
        compile_warmup(model, fwd, opt, step_fn, data, cfg.schedule.compile_warmup_steps, autocast,
                       progress=log.line)
        synchronize()
        log.line(f"compile warm-up: {fmt_secs(time.perf_counter() - t0)}")
    res.phases["compile_warmup"] = time.perf_counter() - t0

    # ---- reserve for the Hessian collection: time one calibration batch now
    reserve = cfg.quant.reserve_s if cfg.quant.enabled else 0.0
    if cfg.quant.enabled and cfg.schedule.clock == "wallclock":
        probe = data.calibration_loader()
        try:  # calibration runs at the end of training, with depth recurrence on: time it that way
            per_batch = time_calibration_batch(
                model, iter(probe.next_batch, None),
                looping=cfg.model.num_loops > 0 and cfg.schedule.enable_looping_at < 1,
                autocast=autocast, synchronize=synchronize)
        finally:
            probe.close()
        reserve += 1.25 * per_batch * cfg.quant.calibration_batches
        log.line(f"hessian reserve: {reserve:.2f} s ({per_batch * 1000:.0f} ms per calibration batch "
                 f"× {cfg.quant.calibration_batches} × 1.25 + {cfg.quant.reserve_s} s)")
    budget = cfg.schedule.max_wallclock_s - reserve
    if budget <= 0:
        raise RunSetupError(f"schedule.max_wallclock_s: {cfg.schedule.max_wallclock_s} s leaves no training time "
                            f"after the {reserve:.1f} s Hessian reserve (raise it above {reserve:.1f} s, or lower "
                            f"quant.calibration_batches)")

    # ---- the training loop
    schedule = Schedule(cfg.schedule, budget, looping=cfg.model.num_loops > 0)
    clock = TrainClock(agree_across_ranks=d.world > 1 and schedule.wallclock)
    steplog = StepLog(log, every=cfg.run.log_every, tokens_per_step=cfg.data.train_batch_tokens,
                      lrs_at=opt.lrs_at, seconds_left=schedule.seconds_left)
    adapt = cfg.eval.adapt
    evals = EvalHooks(data.val, data.table, cfg.eval, d, amp_dtype, log, val_bytes=data.val_bytes)
    ema = WeightEma(all_params, cfg.schedule.ema_decay) if cfg.schedule.ema_decay > 0 else None
    loaders = data.loaders()
    try:
        out = training_loop(model, step_fn, loaders, schedule=schedule, clock=clock, steplog=steplog,
                            set_lr=lambda m: set_lr_scale(opt, m), ema=ema, evals=evals, synchronize=synchronize)
    finally:
        for ld in loaders:
            ld.close()
    res.steps, res.train_seconds, res.looping_step, res.losses = out.steps, out.train_seconds, out.looping_step, \
        out.losses
    res.phases["train"] = out.train_seconds
    if ema is not None:
        ema.copy_to_params()
    metadata = {"preset": cfg.preset, "steps": out.steps}
    if adapt.research == "prequant":  # research mode: trains on the validation tokens before GPTQ (flagged)
        t0 = time.perf_counter()
        evals.flag, void = prequant_before_gptq(model, data.val, adapt, rank=d.rank, world_size=d.world,
                                                device=d.device, dtype=amp_dtype)
        metadata = mark_metadata(metadata, evals.flag)
        res.phases["prequant_ttt"] = time.perf_counter() - t0
        res.notes.append(f"pre-quant TTT on the validation tokens ({adapt.prequant.epochs} epochs, void "
                         f"{void[-1][1]:.4f}): {evals.flag}")
        log.line(f"pre-quant TTT (research): {adapt.prequant.epochs} epochs in {res.phases['prequant_ttt']:.1f} s, "
                 f"void fraction by epoch {[round(v, 4) for _, v in void]}; {evals.flag}")
    else:  # the weights never trained on a validation token (only scored: periodic evals); fail closed elsewhere
        metadata = mark_metadata(metadata, "compliant")

    # ---- Hessians from training data, still inside the window
    hessians = None
    if cfg.quant.enabled:
        t0 = time.perf_counter()
        calib = data.calibration_loader()
        try:
            hessians = collect_hessians(model, iter(calib.next_batch, None), cfg.quant.calibration_batches, autocast)
        finally:
            calib.close()
        synchronize()
        res.phases["hessians"] = time.perf_counter() - t0
        total_window = out.train_seconds + res.phases["hessians"]
        log.line(f"hessians: {len(hessians)} matrices in {res.phases['hessians']:.2f} s; "
                 f"train + hessians = {total_window:.1f} s of the {cfg.schedule.max_wallclock_s:.0f} s window")
        if schedule.wallclock and total_window > cfg.schedule.max_wallclock_s:
            res.notes.append(f"train + hessians took {total_window:.1f} s > {cfg.schedule.max_wallclock_s} s")

    # ---- pre-quantization eval
    t0 = time.perf_counter()
    pre = evals.full(model, "pre-quant")
    res.pre_quant, res.pre_quant_sliding = pre["plain"], pre.get("sliding")
    res.phases["eval_pre"] = time.perf_counter() - t0

    # ---- GPTQ → artifact → fresh load → eval
    if hessians is not None:
        rt = round_trip(model, hessians, path=run_dir / "model.gfa", codec=cfg.quant.codec,
                        metadata=metadata, d=d, evals=evals,
                        attention=cfg.run.attention, log=log, recipe=recipe_from_config(cfg.quant, model),
                        precision=cfg.run.precision, weights=weights, code_bytes=code_bytes, fused=fused)
        res.phases.update(rt.phases)
        res.artifact_path, res.artifact_bytes = str(rt.artifact_path), rt.artifact_bytes
        res.round_trip, res.round_trip_sliding = rt.evals["plain"], rt.evals.get("sliding")
        res.clip_factor = rt.clip_factor
        res.adaptive = rt.evals.get("adaptive")
    res.submission_ok, res.budget = budget_check.verdict(res.artifact_bytes, code_bytes)
    res.phases["total"] = time.perf_counter() - t_start

    log.table("result", final_table(res, _backends()))
    log.metric("final", backends=_backends(), **res.final_metrics())
    log.close()
    return res
