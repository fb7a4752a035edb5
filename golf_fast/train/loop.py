"""The training program: train → Hessians (inside the window) → eval → GPTQ → artifact → reload → eval.

Schedule (parameter_golf.md §4.3): progress ``frac`` = train time / (max_wallclock_s − reserve) on
the ``wallclock`` clock (eval pauses excluded, compile warm-up before the clock; the loop also stops
when one more step as long as the last would end past the budget) or step / max_steps
on the ``steps`` clock; ``lr_mul = 1`` while ``frac < 1 − warmdown_frac``, else
``max((1 − frac)/warmdown_frac, min_lr)``; depth recurrence switches on at ``enable_looping_at``.
The reserve is ``quant.reserve_s`` plus the measured time of the Hessian collection (one batch
timed before the clock starts, times ``calibration_batches``), so the collection, which reads
training data, finishes inside ``max_wallclock_s``.

One step = ``grad_accum`` micro-steps per rank; micro-step k of rank r reads the slice of virtual
rank ``r·accum + k`` of ``world·accum``, so any (world, accum) with the same product sees the
same tokens. Loss per step = the mean over virtual ranks (all-reduced). A NaN/inf loss stops the
run with the step, the loss and the learning rates.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.loader import DocumentPackingLoader
from golf_fast.data.shards import list_shards, load_tokens
from golf_fast.eval.evaluate import evaluate
from golf_fast.model.attention import resolved_attention_backends
from golf_fast.model.gpt import GPT
from golf_fast.train import budget as budget_fit
from golf_fast.train import stages
from golf_fast.train.config import TrainConfig
from golf_fast.train.distributed import Dist, init_distributed
from golf_fast.train.optimizers import build_optimizers, clip_grad_norm, set_lr_scale, sync_replicated_grads
from golf_fast.train.runlog import RunLog, environment, fmt_secs, git_hash, versions


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf."""


@dataclass
class RunResult:
    steps: int = 0
    train_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    pre_quant: Optional[dict] = None
    pre_quant_sliding: Optional[dict] = None
    round_trip: Optional[dict] = None
    round_trip_sliding: Optional[dict] = None
    artifact_path: Optional[str] = None
    artifact_bytes: Optional[int] = None
    code_bytes: Optional[int] = None
    submission_ok: Optional[bool] = None
    """True: code + artifact ≤ 16,000,000; False: over budget; None: not measurable (see budget)."""
    budget: str = ""
    clip_factor: float = 1.0
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_dir: Optional[str] = None


def _resolve_data(cfg: TrainConfig, d: Dist, say) -> tuple[Path, Path]:
    if cfg.data.data_dir:
        data_dir = Path(cfg.data.data_dir)
    else:
        from golf_fast.data.corpus import default_dataset

        if d.main:
            say("data: the embedded corpus (standard-library docstrings + pydoc topics)")
            data_dir = default_dataset(cfg.model.vocab_size, cache_dir=cfg.data.cache_dir or None)
        if d.world > 1:
            dist.barrier()
        if not d.main:
            data_dir = default_dataset(cfg.model.vocab_size, cache_dir=cfg.data.cache_dir or None)
    tok = Path(cfg.data.tokenizer) if cfg.data.tokenizer else data_dir / "tokenizer.model"
    if not tok.is_file():
        raise FileNotFoundError(f"data.tokenizer: no SentencePiece model at {str(tok)!r}")
    return data_dir, tok


def _lr_mul(frac: float, cfg: TrainConfig) -> float:
    wd = cfg.schedule.warmdown_frac
    if wd <= 0 or frac < 1 - wd:
        return 1.0
    return max((1 - frac) / wd, cfg.schedule.min_lr)


def train(cfg: TrainConfig, *, code_bytes: Optional[int] = None, notes: Optional[list[str]] = None) -> RunResult:
    """Run the whole pipeline for ``cfg``; returns the numbers of the final table (on every rank).

    ``code_bytes``: the counted size of the submission script (the exported ``train_gpt.py``),
    known before the artifact is written; when given, the quantization is fitted so that code +
    artifact ≤ 16,000,000 (``budget.fit_to_budget``) and the result says whether the run fits.
    None: the run is not a submission (reported as such). ``notes`` go into the final table.
    """
    cfg.validate()
    if code_bytes is not None and (not isinstance(code_bytes, int) or code_bytes < 0):
        raise ValueError(f"code_bytes: expected a non-negative int or None, got {code_bytes!r}")
    d = init_distributed(cfg.run.device)
    try:
        return _train(cfg, d, code_bytes, list(notes or []))
    finally:
        if d.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: Dist, code_bytes: Optional[int], notes: list[str]) -> RunResult:
    res = RunResult(code_bytes=code_bytes, notes=notes)
    t_start = time.perf_counter()
    if d.device.type == "cpu" and cfg.run.cpu_threads > 0:
        torch.set_num_threads(cfg.run.cpu_threads)
    name = cfg.run.name or f"{cfg.preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.run.out_dir) / name
    if d.world > 1:  # every rank uses rank 0's folder name
        obj = [str(run_dir)]
        dist.broadcast_object_list(obj, src=0)
        run_dir = Path(obj[0])
    res.run_dir = str(run_dir)
    log = RunLog(run_dir, enabled=d.main)
    on_gpu = d.device.type == "cuda"
    amp_dtype = torch.bfloat16 if (cfg.run.autocast == "bf16" or (cfg.run.autocast == "auto" and on_gpu)) else None
    use_compile = cfg.run.compile == "on" or (cfg.run.compile == "auto" and on_gpu)

    def autocast():
        return torch.autocast(d.device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()

    # ---- data
    t0 = time.perf_counter()
    data_dir, tok_path = _resolve_data(cfg, d, log.line)
    table = TokenByteTable.from_sentencepiece(str(tok_path), vocab_size=cfg.model.vocab_size)
    if table.size > cfg.model.vocab_size:
        raise ValueError(f"model.vocab_size: {cfg.model.vocab_size} is smaller than the tokenizer's "
                         f"{table.size} pieces ({tok_path})")
    train_files = list_shards(data_dir, "train")
    val = load_tokens(list_shards(data_dir, "val"))
    if cfg.data.max_val_tokens:
        val = val[:cfg.data.max_val_tokens]
    accum = cfg.data.grad_accum or (8 // d.world if 8 % d.world == 0 else 1)
    virtual = d.world * accum
    if cfg.data.train_batch_tokens % virtual:
        raise ValueError(f"data.train_batch_tokens: {cfg.data.train_batch_tokens} is not divisible by "
                         f"world_size × grad_accum = {virtual}")
    L = cfg.data.train_batch_tokens // virtual

    def make_loaders(seed_offset: int = 0) -> list[DocumentPackingLoader]:
        return [DocumentPackingLoader(train_files, tokens_per_rank=L, rank=d.rank * accum + k, world_size=virtual,
                                      max_doc_len=cfg.model.max_seqlen, bos_id=cfg.model.bos_id,
                                      prefetch=cfg.data.prefetch, device=d.device, seed=cfg.run.seed + seed_offset,
                                      shuffle_shards=cfg.data.shuffle_shards) for k in range(accum)]

    res.phases["data"] = time.perf_counter() - t0

    # ---- model and optimizers
    torch.manual_seed(cfg.run.seed)
    model = GPT(cfg.model, attention_backend=cfg.run.attention).to(d.device)
    model.resolve_attention(d.device)
    if d.world > 1:
        for p in model.parameters():
            dist.broadcast(p.data, src=0)
    opt = build_optimizers(model, cfg.optim, distributed=d.world > 1)
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")
    if use_compile:
        # one graph per (cu_seqlens bucket, loop state): allow enough of them (the record: 64)
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    fwd = torch.compile(model, dynamic=False, fullgraph=True) if use_compile else model
    all_params = list(model.parameters())
    nparams = sum(p.numel() for p in all_params)

    log.header(cfg.to_json(), {
        "run_dir": run_dir, "git": git_hash(), "versions": versions(), "device":
            torch.cuda.get_device_name(d.device) if on_gpu else f"cpu ({torch.get_num_threads()} threads)",
        "world_size": d.world, "grad_accum": accum, "tokens/rank": L, "parameters": f"{nparams:,}",
        "data": f"{data_dir} ({len(train_files)} train shards, {len(val):,} val tokens)", "tokenizer": tok_path,
        "compile": use_compile, "autocast": str(amp_dtype) if amp_dtype else "fp32", "torchrun": environment(),
        "backends": {**_dispatch_backends(), **resolved_attention_backends()} or "none resolved yet",
    })
    log.line("(kernel backends resolve at first use; the final table lists every one that ran)")

    def one_step(loaders, step_idx: int) -> torch.Tensor:
        total = torch.zeros((), device=d.device)
        for k in range(accum):
            b = loaders[k].next_batch()
            with autocast():
                loss = fwd(b.x, b.y, b.cu_seqlens)
            (loss / accum).backward()
            total += loss.detach()
        clip_grad_norm(all_params, cfg.optim.grad_clip)
        sync_replicated_grads(opt.replicated, d.world)
        opt.step()
        opt.zero_grad()
        total /= accum
        if d.world > 1:
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            total /= d.world
        return total

    # ---- compile warm-up (weights and optimizer state restored afterwards)
    t0 = time.perf_counter()
    if use_compile and cfg.schedule.compile_warmup_steps > 0:
        saved_model = copy.deepcopy(model.state_dict())
        saved_opt = copy.deepcopy(opt.state_dicts())
        loaders = make_loaders(seed_offset=1)
        for looping in ([False, True] if cfg.model.num_loops > 0 else [False]):
            model.looping_active = looping
            for n in (64, 128, 192, 256):  # the common cu_seqlens buckets, each its own graph
                starts = torch.arange(0, L, cfg.model.max_seqlen, dtype=torch.int32, device=d.device)
                if starts.numel() + 1 > n:
                    continue  # segments of at most max_seqlen do not fit this bucket
                cu = torch.full((n,), L, dtype=torch.int32, device=d.device)
                cu[:starts.numel()] = starts
                b = loaders[0].next_batch()
                with autocast():
                    fwd(b.x, b.y, cu).backward()
                opt.zero_grad()
            for i in range(cfg.schedule.compile_warmup_steps):
                one_step(loaders, i)
        for ld in loaders:
            ld.close()
        model.load_state_dict(saved_model)
        opt.load_state_dicts(saved_opt)
        model.looping_active = False
        if on_gpu:
            torch.cuda.synchronize()
        log.line(f"compile warm-up: {fmt_secs(time.perf_counter() - t0)}")
    res.phases["compile_warmup"] = time.perf_counter() - t0

    # ---- reserve for the Hessian collection: time one calibration batch now
    reserve = cfg.quant.reserve_s if cfg.quant.enabled else 0.0
    if cfg.quant.enabled and cfg.schedule.clock == "wallclock":
        try:
            probe = make_loaders(seed_offset=2)[0]
            # calibration runs at the end of training, with depth recurrence on: time it that way
            model.looping_active = cfg.model.num_loops > 0 and cfg.schedule.enable_looping_at < 1
            tp = time.perf_counter()
            stages.collect_hessians(model, iter(probe.next_batch, None), 1, autocast)
            model.looping_active = False
            if on_gpu:
                torch.cuda.synchronize()
            per_batch = time.perf_counter() - tp
            probe.close()
            reserve += 1.25 * per_batch * cfg.quant.calibration_batches
            log.line(f"hessian reserve: {reserve:.2f} s ({per_batch * 1000:.0f} ms per calibration batch "
                     f"× {cfg.quant.calibration_batches} × 1.25 + {cfg.quant.reserve_s} s)")
        except stages.StageUnavailable as e:
            log.line(f"hessian reserve: {reserve:.2f} s (collection unavailable: {e})")
    budget = cfg.schedule.max_wallclock_s - reserve
    if budget <= 0:
        raise ValueError(f"schedule.max_wallclock_s: {cfg.schedule.max_wallclock_s} s leaves no training time after "
                         f"the {reserve:.1f} s Hessian reserve")

    # ---- the training loop
    loaders = make_loaders()
    ema = [p.detach().float().clone() for p in all_params] if cfg.schedule.ema_decay > 0 else None
    step, train_s, last_dt = 0, 0.0, 0.0
    tokens_per_step = cfg.data.train_batch_tokens
    looping_step = None
    if on_gpu:
        torch.cuda.synchronize()
    t_last = time.perf_counter()
    while True:
        frac = (train_s / budget) if cfg.schedule.clock == "wallclock" else step / cfg.schedule.max_steps
        if frac >= 1 or (cfg.schedule.max_steps and step >= cfg.schedule.max_steps):
            break
        if cfg.schedule.clock == "wallclock" and step and train_s + last_dt > budget:
            break  # the next step (as long as the last one) would end past the budget
        if cfg.model.num_loops > 0 and not model.looping_active and frac >= cfg.schedule.enable_looping_at:
            model.looping_active = True
            looping_step = step
            log.line(f"step {step}: depth recurrence on (frac {frac:.3f})")
        lr_mul = _lr_mul(frac, cfg)
        set_lr_scale(opt, lr_mul)
        loss_t = one_step(loaders, step)
        if ema is not None:
            torch._foreach_lerp_(ema, [p.detach().float() for p in all_params], 1 - cfg.schedule.ema_decay)
        loss = float(loss_t)  # host sync: the per-step clock and the NaN check need it
        step += 1
        now = time.perf_counter()
        dt = now - t_last
        t_last = now
        if d.world > 1 and cfg.schedule.clock == "wallclock":
            el = torch.tensor([train_s + dt], dtype=torch.float64)
            dist.all_reduce(el, op=dist.ReduceOp.MAX)  # all ranks stop at the same step
            dt = float(el) - train_s
        train_s += dt
        last_dt = dt
        res.losses.append(loss)
        if not math.isfinite(loss):
            lrs = ", ".join(f"{k}={v:.3g}" for k, v in opt.lrs().items())
            msg = f"loss is {loss} at step {step} (lr_mul {lr_mul:.3f}; learning rates {lrs}); stopping"
            log.line("ERROR: " + msg)
            log.metric("diverged", step=step, loss=str(loss), lrs=opt.lrs())
            raise TrainingDiverged(msg)
        if step % cfg.run.log_every == 0 or step == 1:
            ms = 1000 * train_s / step
            left = (budget - train_s) if cfg.schedule.clock == "wallclock" else (cfg.schedule.max_steps - step) * ms / 1000
            log.line(f"step {step:5d}  loss {loss:.4f}  lr_mul {lr_mul:.3f}  {ms:7.1f} ms/step  "
                     f"{tokens_per_step * step / max(train_s, 1e-9):,.0f} tok/s  train {fmt_secs(train_s)}  "
                     f"ETA {fmt_secs(max(left, 0))}")
        log.metric("step", step=step, loss=loss, lr_mul=lr_mul, step_ms=1000 * dt, train_s=train_s,
                   looping=model.looping_active)
        if cfg.eval.val_every and step % cfg.eval.val_every == 0:
            r = evaluate(model, val, table, seq_len=cfg.eval.seq_len, batch_seqs=cfg.eval.batch_seqs,
                         rank=d.rank, world_size=d.world, device=d.device, dtype=amp_dtype)
            log.line(f"step {step:5d}  val_loss {r.val_loss:.4f}  val_bpb {r.val_bpb:.4f}  ({r.seconds:.1f} s, not timed)")
            log.metric("val", step=step, **r.as_dict())
            t_last = time.perf_counter()
    for ld in loaders:
        ld.close()
    res.steps, res.train_seconds = step, train_s
    res.phases["train"] = train_s
    if ema is not None:
        with torch.no_grad():
            for p, e in zip(all_params, ema):
                p.copy_(e.to(p.dtype))

    # ---- Hessians from training data, still inside the window
    hessians = None
    if cfg.quant.enabled:
        t0 = time.perf_counter()
        try:
            calib = make_loaders(seed_offset=3)[0]
            hessians = stages.collect_hessians(model, iter(calib.next_batch, None), cfg.quant.calibration_batches,
                                               autocast)
            calib.close()
            if on_gpu:
                torch.cuda.synchronize()
            res.phases["hessians"] = time.perf_counter() - t0
            total_window = train_s + res.phases["hessians"]
            log.line(f"hessians: {len(hessians)} matrices in {res.phases['hessians']:.2f} s; "
                     f"train + hessians = {total_window:.1f} s of the {cfg.schedule.max_wallclock_s:.0f} s window")
            if cfg.schedule.clock == "wallclock" and total_window > cfg.schedule.max_wallclock_s:
                res.notes.append(f"train + hessians took {total_window:.1f} s > {cfg.schedule.max_wallclock_s} s")
        except stages.StageUnavailable as e:
            res.notes.append(f"hessians skipped: {e}")
            log.line(f"hessians: skipped ({e})")

    # ---- pre-quantization eval
    def run_eval(m, what):
        out = {}
        r = evaluate(m, val, table, seq_len=cfg.eval.seq_len, batch_seqs=cfg.eval.batch_seqs, rank=d.rank,
                     world_size=d.world, device=d.device, dtype=amp_dtype)
        out["plain"] = r.as_dict()
        log.line(f"{what}: val_loss {r.val_loss:.5f}  val_bpb {r.val_bpb:.5f}  ({r.tokens:,} tokens, {r.seconds:.1f} s)")
        log.metric("eval", what=what, mode="plain", **r.as_dict())
        if cfg.eval.stride and cfg.eval.stride < cfg.eval.seq_len:
            r = evaluate(m, val, table, seq_len=cfg.eval.seq_len, stride=cfg.eval.stride,
                         batch_seqs=cfg.eval.batch_seqs, rank=d.rank, world_size=d.world, device=d.device,
                         dtype=amp_dtype)
            out["sliding"] = r.as_dict()
            log.line(f"{what} (sliding, stride {cfg.eval.stride}): val_loss {r.val_loss:.5f}  "
                     f"val_bpb {r.val_bpb:.5f}  ({r.seconds:.1f} s)")
            log.metric("eval", what=what, mode="sliding", **r.as_dict())
        return out

    t0 = time.perf_counter()
    pre = run_eval(model, "pre-quant")
    res.pre_quant, res.pre_quant_sliding = pre["plain"], pre.get("sliding")
    res.phases["eval_pre"] = time.perf_counter() - t0

    # ---- GPTQ → artifact → fresh load → eval
    if hessians is not None:
        try:
            t0 = time.perf_counter()
            tensors, q_s, qtable = stages.quantize(model, hessians)
            res.phases["gptq"] = q_s
            if qtable:
                for ln in qtable.splitlines():
                    log.line("  " + ln)
            path = run_dir / "model.gfa"
            t0 = time.perf_counter()
            meta = {"preset": cfg.preset, "steps": step}
            if d.main:
                res.artifact_bytes = stages.write_artifact(path, tensors, cfg.model, cfg.quant.codec, metadata=meta)
            if d.world > 1:
                obj = [res.artifact_bytes]
                dist.broadcast_object_list(obj, src=0)
                res.artifact_bytes = obj[0]
            if code_bytes is not None and budget_fit.verdict(res.artifact_bytes, code_bytes)[0] is False:
                log.line(f"budget: {res.artifact_bytes:,} artifact + {code_bytes:,} code bytes is over "
                         "16,000,000; fitting the clip sigmas")
                try:
                    fitted = stages.fit_to_budget(model, hessians, tensors, code_bytes, cfg.model, cfg.quant.codec,
                                                  log.line)
                    tensors, res.clip_factor = fitted.state, fitted.factor
                    if d.main:
                        res.artifact_bytes = stages.write_artifact(path, tensors, cfg.model, cfg.quant.codec,
                                                                   metadata=meta)
                    if d.world > 1:
                        obj = [res.artifact_bytes]
                        dist.broadcast_object_list(obj, src=0)
                        res.artifact_bytes = obj[0]
                except ValueError as e:
                    log.line(f"budget: cannot fit ({e}); the run is over budget")
            if d.world > 1:
                dist.barrier()
            res.artifact_path = str(path)
            res.phases["artifact_write"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            fresh = stages.load_model_from_artifact(path, d.device, cfg.run.attention)
            fresh.looping_active = model.looping_active
            res.phases["artifact_load"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            rt = run_eval(fresh, "round-trip")
            res.round_trip, res.round_trip_sliding = rt["plain"], rt.get("sliding")
            res.phases["eval_round_trip"] = time.perf_counter() - t0
        except stages.StageUnavailable as e:
            res.notes.append(f"quantization/artifact skipped: {e}")
            log.line(f"quantization/artifact: skipped ({e})")
    res.submission_ok, res.budget = budget_fit.verdict(res.artifact_bytes, code_bytes)
    res.phases["total"] = time.perf_counter() - t_start

    # ---- final table
    def bpb(x):
        return f"{x['val_bpb']:.5f}" if x else "n/a"

    rows = [("steps", step), ("train time", fmt_secs(train_s)),
            ("ms/step (mean)", f"{1000 * train_s / max(step, 1):.1f}"),
            ("looping from step", looping_step if looping_step is not None else "never"),
            ("pre-quant val_bpb", bpb(res.pre_quant)), ("pre-quant val_bpb sliding", bpb(res.pre_quant_sliding)),
            ("round-trip val_bpb", bpb(res.round_trip)), ("round-trip val_bpb sliding", bpb(res.round_trip_sliding)),
            ("artifact bytes", f"{res.artifact_bytes:,}" if res.artifact_bytes else "n/a"),
            ("code bytes", f"{code_bytes:,} (the exported train_gpt.py)" if code_bytes is not None else "not measured"),
            ("clip-sigma factor", f"{res.clip_factor:.4f}"),
            ("budget", ("fits: " if res.submission_ok else "NOT A SUBMISSION: ") + res.budget)]
    rows += [(f"time: {k}", fmt_secs(v)) for k, v in res.phases.items()]
    rows += [("note", n) for n in res.notes]
    rows += [("backends", {**_dispatch_backends(), **resolved_attention_backends()})]
    log.table("result", rows)
    log.metric("final", steps=step, train_seconds=train_s, pre_quant=res.pre_quant, round_trip=res.round_trip,
               pre_quant_sliding=res.pre_quant_sliding, round_trip_sliding=res.round_trip_sliding,
               artifact_bytes=res.artifact_bytes, code_bytes=res.code_bytes, submission_ok=res.submission_ok,
               budget=res.budget, clip_factor=res.clip_factor, seed=cfg.run.seed, phases=res.phases, notes=res.notes)
    log.close()
    return res


def _dispatch_backends() -> dict[str, Any]:
    from golf_fast.ops.dispatch import resolved_backends

    return resolved_backends()
