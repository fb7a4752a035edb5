"""Typed training configuration, named presets and command-line overrides.

``TrainConfig`` groups ``model`` (:class:`ModelConfig`), ``data``, ``optim``, ``schedule``,
``quant``, ``eval`` and ``run``. Presets: ``smoke`` (CPU, the embedded corpus, a small model of the
record's architecture, the whole pipeline in a few minutes on 2 cores), ``h100x1`` (one H100, the
record model) and ``record`` (8×H100, the R0611 hyperparameters, parameter_golf.md §3–4).

Overrides are ``section.field=value`` pairs (``--model.num_layers 4`` on the command line); an
unknown section or field, or a value that does not parse as the field's type, is an error.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from golf_fast.eval.adapt_config import ADAPT_PRESETS, AdaptConfig, adapt_preset
from golf_fast.model.config import ModelConfig


@dataclass
class DataConfig:
    data_dir: str = ""
    """Folder with ``*_train_*.bin`` / ``*_val_*.bin`` shards; "" = the embedded stdlib corpus (built once)."""
    tokenizer: str = ""
    """SentencePiece ``.model``; "" = ``<data_dir>/tokenizer.model``."""
    cache_dir: str = ""
    """Where the embedded corpus is built; "" = ``~/.cache/golf_fast``."""
    train_batch_tokens: int = 786_432
    """Tokens per optimizer step over all ranks and micro-steps."""
    grad_accum: int = 0
    """Micro-steps per step; 0 = ``8 // world_size`` like the records (1 if world_size > 8)."""
    prefetch: int = 2
    shuffle_shards: bool = False
    max_val_tokens: int = 0
    """Use only the first N validation tokens (0 = all)."""
    caseops: bool = False
    """CaseOps data (the record's): with ``data_dir`` "" the embedded corpus is built in its CaseOps
    form; with a ``data_dir`` its validation byte sidecars must exist. Whenever the validation shards
    have sidecars, val_bpb counts their (original-text) bytes, whatever this flag says."""


@dataclass
class OptimConfig:
    matrix_optimizer: str = "muon"
    """``muon`` (Parallel Muon over the four banks) or ``adam`` (the banks join the scalar Adam group)."""
    matrix_lr: float = 0.026
    muon_momentum: float = 0.97
    muon_momentum_warmup_start: float = 0.92
    muon_momentum_warmup_steps: int = 1500
    muon_wd: float = 0.095
    ns_steps: int = 5
    muon_row_normalize: bool = True
    """MuonEq-R: normalize the rows of the momentum before Newton-Schulz (the record: on)."""
    embed_lr: float = 0.03
    embed_wd: float = 0.085
    scalar_lr: float = 0.02
    scalar_wd: float = 0.02
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = 0.3
    """Clip each rank's local gradient norm to this before the sync, like R0611 (0 = off)."""
    graph_step: str = "auto"
    """Muon's step as a CUDA graph (``golf_fast.optim.GraphedOptimizerStep``): ``auto`` = on when the
    parameters are on CUDA, ``on``, ``off``."""
    graph_warmup_steps: int = 2
    """Eager Muon steps (buffers, self-checks) before the graph is captured."""

    def graph_step_enabled(self, device_type: str) -> bool:
        """Whether the trainer captures Muon's step on a device of type ``device_type``."""
        if self.matrix_optimizer != "muon" or self.graph_step == "off":
            return False
        return self.graph_step == "on" or device_type == "cuda"


@dataclass
class ScheduleConfig:
    clock: str = "wallclock"
    """``wallclock``: progress = train time / (max_wallclock_s − reserve); ``steps``: step / max_steps."""
    max_wallclock_s: float = 600.0
    max_steps: int = 0
    """Stop after this many steps (0 = no step limit; required when clock = steps)."""
    warmdown_frac: float = 0.85
    min_lr: float = 0.10
    enable_looping_at: float = 0.35
    ema_decay: float = 0.9965
    """EMA of the weights, loaded at the end (0 = off)."""
    compile_warmup_steps: int = 20
    """Compile warm-up steps (then again with looping) before the clock starts; weights are restored."""


@dataclass
class QuantConfig:
    """Post-training quantization; the defaults are the R0611 record's (parameter_golf.md §5)."""

    enabled: bool = True
    calibration: str = "windows"
    """Hessian data: ``windows`` = random ``calibration_seq_len`` windows across this rank's training
    shards, no document isolation (the record's ShuffledSequenceLoader); ``batches`` = the next
    training batches of the document-packing loader (documents isolated)."""
    calibration_batches: int = 16
    """Batches per rank (each ``train_batch_tokens / (world·accum)`` tokens) for the Hessians, inside the window."""
    calibration_seq_len: int = 0
    """Window length for ``calibration=windows`` (0 = ``model.max_seqlen``, the record's train_seq_len)."""
    reserve_s: float = 0.5
    """Seconds always kept for the Hessian collection; the measured collection time is added to it."""
    matrix_bits: int = 6
    embed_bits: int = 7
    """The tied embedding's bits (int7 in the record)."""
    matrix_clip_sigmas: float = 12.85
    """SDClip k of matrices no role matches."""
    mlp_clip_sigmas: float = 11.5
    attn_clip_sigmas: float = 13.0
    embed_clip_sigmas: float = 14.0
    damp: float = 0.01
    """GPTQ damping × mean(diag H): 0.01 the record, 0.005 the TTT-AdamW/SLOT submission."""
    block_size: int = 128
    act_order: bool = True
    gate_int8: bool = True
    """int8 per-row codes for ``attn_gate_w`` (the record's GATED_ATTN_QUANT_GATE=1); False: fp16."""
    lqer: bool = True
    """Rank-``lqer_rank`` correction of the GPTQ residual on the ``lqer_top_k`` worst matrices."""
    lqer_rank: int = 4
    lqer_top_k: int = 3
    lqer_factor_bits: int = 4
    """Bits of the symmetric fallback factors (when the asym group does not divide B)."""
    lqer_asym: bool = True
    lqer_asym_group: int = 64
    codec: str = ""
    """Artifact codec name ("" = the artifact module's default). The record's ``pergroup`` (lrzip
    per role + brotli) is not one of golf_fast's codecs."""


@dataclass
class EvalConfig:
    seq_len: int = 2048
    stride: int = 64
    """Sliding-window stride; 0 = plain evaluation only."""
    batch_seqs: int = 32
    val_every: int = 0
    """Evaluate (plain) every N steps during training (0 = only at the end); paused time is not counted."""
    weights: str = "auto"
    """How the round-tripped model holds its block matrices: ``int6`` (packed codes, multiplied by
    the fused int6 kernel), ``dequantized`` (float banks), ``auto`` = int6 on CUDA, dequantized on CPU."""
    ttt: str = "none"
    """Score-first TTT of the round-tripped artifact at the end: none, adamw, lora or phased."""
    slot: str = "none"
    """Causal SLOT at the end (none or causal; with ttt none or adamw)."""
    research: str = "none"
    """Non-compliant research mode: none, prequant (AdamW on the val tokens before GPTQ; the artifact
    is flagged) or slot_window (SLOT on the scored window). Reported with the checker's verdict."""
    adapt_preset: str = ""
    """Adaptation settings (golf_fast.eval.adapt_config presets); "" = this run's preset name when
    it has one (smoke, record), else record."""

    def resolved_weights(self, device_type: str) -> str:
        """``int6`` or ``dequantized`` for a device of type ``device_type``."""
        if self.weights != "auto":
            return self.weights
        return "int6" if device_type == "cuda" else "dequantized"


@dataclass
class RunConfig:
    out_dir: str = "runs"
    name: str = ""
    """Run folder name under out_dir ("" = ``<preset>-<timestamp>``)."""
    seed: int = 1337
    """The record's three seeds are 42 (its preset), 0 and 1234 (:data:`RECORD_SEEDS`)."""
    precision: str = "fp32"
    """Parameter precision: ``fp32`` masters, or ``record`` (model in bf16 with the banks and control
    tensors in fp32, so the embedding, its Adam state and the residual stream are bf16; compute
    in bf16 autocast). See ``golf_fast.model.precision``."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cuda`` or ``cpu``."""
    compile: str = "auto"
    """torch.compile the model: ``auto`` = on GPU only, ``on``, ``off``."""
    autocast: str = "auto"
    """Matmul dtype: ``auto`` = bf16 on GPU, fp32 on CPU; ``bf16``; ``fp32``."""
    attention: str = "auto"
    """Attention backend: auto (FA3 → FA2 → SDPA), fa3, fa2, sdpa."""
    log_every: int = 50
    cpu_threads: int = 0
    """torch.set_num_threads on CPU (0 = leave torch's default)."""


@dataclass
class TrainConfig:
    preset: str = "record"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> None:
        def need(cond: bool, what: str) -> None:
            if not cond:
                raise ValueError(what)

        o, s, d, e, r = self.optim, self.schedule, self.data, self.eval, self.run
        need(o.matrix_optimizer in ("muon", "adam"), f"optim.matrix_optimizer: expected muon or adam, got {o.matrix_optimizer!r}")
        need(o.graph_step in ("auto", "on", "off"), f"optim.graph_step: expected auto, on or off, got {o.graph_step!r}")
        need(o.graph_warmup_steps >= 1, f"optim.graph_warmup_steps: expected >= 1, got {o.graph_warmup_steps}")
        need(s.clock in ("wallclock", "steps"), f"schedule.clock: expected wallclock or steps, got {s.clock!r}")
        need(s.clock != "steps" or s.max_steps > 0, "schedule.max_steps: expected > 0 when schedule.clock is steps")
        need(s.max_wallclock_s > 0, f"schedule.max_wallclock_s: expected > 0, got {s.max_wallclock_s}")
        need(0 <= s.warmdown_frac <= 1 and 0 <= s.min_lr <= 1, "schedule.warmdown_frac/min_lr: expected values in [0, 1]")
        need(0 <= s.ema_decay < 1, f"schedule.ema_decay: expected in [0, 1), got {s.ema_decay}")
        need(d.train_batch_tokens > 0 and d.grad_accum >= 0, "data.train_batch_tokens/grad_accum: expected > 0 / >= 0")
        need(e.seq_len > 0 and 0 <= e.stride <= e.seq_len, f"eval.stride: expected in [0, eval.seq_len={e.seq_len}]")
        need(e.weights in ("auto", "int6", "dequantized"), f"eval.weights: expected auto, int6 or dequantized, "
                                                           f"got {e.weights!r}")
        need(r.device in ("auto", "cuda", "cpu"), f"run.device: expected auto, cuda or cpu, got {r.device!r}")
        need(r.compile in ("auto", "on", "off"), f"run.compile: expected auto, on or off, got {r.compile!r}")
        need(r.autocast in ("auto", "bf16", "fp32"), f"run.autocast: expected auto, bf16 or fp32, got {r.autocast!r}")
        need(r.attention in ("auto", "fa3", "fa2", "sdpa"), f"run.attention: expected auto/fa3/fa2/sdpa, got {r.attention!r}")
        q = self.quant
        need(q.calibration_batches >= 1, "quant.calibration_batches: expected >= 1")
        need(q.calibration in ("windows", "batches"), f"quant.calibration: expected windows or batches, got {q.calibration!r}")
        need(q.calibration_seq_len >= 0, "quant.calibration_seq_len: expected >= 0")
        for f in ("matrix_bits", "embed_bits"):
            need(2 <= getattr(q, f) <= 8, f"quant.{f}: expected bits in 2..8, got {getattr(q, f)}")
        for f in ("matrix_clip_sigmas", "mlp_clip_sigmas", "attn_clip_sigmas", "embed_clip_sigmas", "damp"):
            need(getattr(q, f) > 0, f"quant.{f}: expected > 0, got {getattr(q, f)}")
        need(q.block_size >= 1, "quant.block_size: expected >= 1")
        need(q.lqer_rank >= 1 and q.lqer_top_k >= 0 and q.lqer_asym_group >= 1 and 2 <= q.lqer_factor_bits <= 8,
             "quant.lqer_*: expected rank >= 1, top_k >= 0, group >= 1, factor bits in 2..8")
        need(r.precision in ("fp32", "record"), f"run.precision: expected fp32 or record, got {r.precision!r}")
        try:
            adapt_config_for(self).validate()
        except ValueError as err:
            raise ValueError(f"eval.{err}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)


def adapt_config_for(cfg: "TrainConfig") -> AdaptConfig:
    """The evaluation-time adaptation ``cfg.eval`` asks for (its preset, modes and sequence length)."""
    e = cfg.eval
    name = e.adapt_preset or (cfg.preset if cfg.preset in ADAPT_PRESETS else "record")
    a = adapt_preset(name)
    a.ttt, a.slot, a.research = e.ttt, e.slot, e.research
    return a


def _smoke() -> TrainConfig:
    return TrainConfig(
        preset="smoke",
        model=ModelConfig(vocab_size=1024, num_layers=6, model_dim=128, num_heads=4, num_kv_heads=2,
                          loop_start=2, loop_end=3, parallel_start_layer=4, max_seqlen=256, xsa_last_n=6),
        data=DataConfig(train_batch_tokens=2048, grad_accum=1, prefetch=2, max_val_tokens=8192),
        optim=OptimConfig(muon_momentum_warmup_steps=50, matrix_lr=0.02),
        schedule=ScheduleConfig(max_wallclock_s=60.0, compile_warmup_steps=0, ema_decay=0.9),  # ~40 steps: a short EMA
        quant=QuantConfig(calibration_batches=2, reserve_s=0.5),
        eval=EvalConfig(seq_len=256, stride=128, batch_seqs=16),
        # One intra-op thread: on a shared 2-core machine two threads per process contend (a
        # measured 4-8× slowdown of this small model under load); the time cap bounds training anyway.
        run=RunConfig(device="cpu", log_every=10, cpu_threads=1),
    )


def _h100x1() -> TrainConfig:
    return TrainConfig(preset="h100x1", data=DataConfig(train_batch_tokens=98_304, grad_accum=1))


RECORD_SEEDS = (42, 0, 1234)
"""The seeds of the R0611 record's three runs."""


def _record() -> TrainConfig:
    return TrainConfig(preset="record", data=DataConfig(caseops=True), run=RunConfig(seed=42, precision="record"),
                       eval=EvalConfig(ttt="phased"))  # R0611: phased LoRA TTT


PRESETS = {"smoke": _smoke, "h100x1": _h100x1, "record": _record}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]()


def config_fields(cfg: TrainConfig) -> dict[str, type]:
    """``{"model.num_layers": int, ...}``: every overridable key with its type."""
    out: dict[str, type] = {}
    for sec in dataclasses.fields(cfg):
        sub = getattr(cfg, sec.name)
        if not dataclasses.is_dataclass(sub):
            continue
        hints = typing.get_type_hints(type(sub))
        for f in dataclasses.fields(sub):
            out[f"{sec.name}.{f.name}"] = hints[f.name]
    return out


def parse_value(key: str, typ: type, text: str) -> Any:
    if typ is bool:
        low = str(text).lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected a boolean (true/false), got {text!r}")
    try:
        return typ(text)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected {typ.__name__}, got {text!r}") from None


def apply_overrides(cfg: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A copy of ``cfg`` with ``{"section.field": value}`` applied (strings are parsed); validated."""
    known = config_fields(cfg)
    sections: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key not in known:
            close = [k for k in known if k.split(".")[-1] == key.split(".")[-1]]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown config key {key!r}{hint}")
        typ = known[key]
        if isinstance(value, str) and typ is not str:
            value = parse_value(key, typ, value)
        elif typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ValueError(f"{key}: expected {typ.__name__}, got {value!r}")
        sec, name = key.split(".", 1)
        sections.setdefault(sec, {})[name] = value
    new = dataclasses.replace(cfg, **{sec: dataclasses.replace(getattr(cfg, sec), **vals)
                                      for sec, vals in sections.items()})
    new.validate()
    return new
