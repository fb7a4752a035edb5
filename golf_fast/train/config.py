"""Typed training configuration, named presets and command-line overrides.

``TrainConfig`` groups ``model`` (:class:`ModelConfig`), ``data``, ``optim``, ``schedule``,
``quant``, ``eval`` and ``run``. Presets: ``smoke`` (CPU, the embedded corpus, a small model of the
record's architecture, the whole pipeline in a few minutes on 2 cores), ``h100x1`` (one H100, the
record model) and ``record`` (8×H100, the R0611 hyperparameters, parameter_golf.md §3–4).

Overrides are ``section.field=value`` pairs (``--model.num_layers 4`` on the command line; a nested
config's field by its path, ``--eval.adapt.lora.rank 8``); an unknown section or field, or a value
that does not parse as the field's type, is an error.
Validation is generic (``golf_fast.model.typed_config``): every field is checked against its
annotation (``Literal`` choices, ``bool``/``int``/``float``/``str``; floats must be finite) and
its ``bounds(...)`` metadata, so a new field is checked by declaring it; ``TrainConfig.validate``
adds the checks that relate fields (and resolves the codec name).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from golf_fast.artifact import CODEC_NAMES
from golf_fast.eval.adapt.config import AdaptConfig, record_adapt, smoke_adapt
from golf_fast.model.config import ModelConfig
from golf_fast.model.typed_config import bounds, check_config, field_types, parse_field, type_name
from golf_fast.quant.recipe import RECORD_RECIPE as _R

_BITS = bounds(2, 8)
_POS = bounds(0, lo_open=True)


@dataclass
class DataConfig:
    data_dir: str = ""
    """Folder with ``*_train_*.bin`` / ``*_val_*.bin`` shards; "" = the embedded stdlib corpus (built once)."""
    tokenizer: str = ""
    """SentencePiece ``.model``; "" = ``<data_dir>/tokenizer.model``."""
    cache_dir: str = ""
    """Where the embedded corpus is built; "" = ``~/.cache/golf_fast``."""
    train_batch_tokens: int = field(default=786_432, metadata=bounds(2))
    """Tokens per optimizer step over all ranks and micro-steps."""
    grad_accum: int = field(default=0, metadata=bounds(0, 1 << 16))
    """Micro-steps per step; 0 = ``8 // world_size`` like the records (1 if world_size > 8)."""
    prefetch: int = field(default=2, metadata=bounds(0, 1024))
    shuffle_shards: bool = False
    max_val_tokens: int = field(default=0, metadata=bounds(0))
    """Use only the first N validation tokens (0 = all)."""
    caseops: bool = False
    """CaseOps data (the record's): with ``data_dir`` "" the embedded corpus is built in its CaseOps
    form; with a ``data_dir`` its validation byte sidecars must exist. Whenever the validation shards
    have sidecars, val_bpb counts their (original-text) bytes, whatever this flag says."""


@dataclass
class OptimConfig:
    matrix_optimizer: Literal["muon", "adam"] = "muon"
    """``muon`` (Parallel Muon over the four banks) or ``adam`` (the banks join the scalar Adam group)."""
    matrix_lr: float = field(default=0.026, metadata=bounds(0))
    muon_momentum: float = field(default=0.97, metadata=bounds(0, 1, hi_open=True))
    muon_momentum_warmup_start: float = field(default=0.92, metadata=bounds(0, 1, hi_open=True))
    muon_momentum_warmup_steps: int = field(default=1500, metadata=bounds(0))
    muon_wd: float = field(default=0.095, metadata=bounds(0))
    ns_steps: int = field(default=5, metadata=bounds(1, 100))
    muon_row_normalize: bool = True
    """MuonEq-R: normalize the rows of the momentum before Newton-Schulz (the record: on)."""
    embed_lr: float = field(default=0.03, metadata=bounds(0))
    embed_wd: float = field(default=0.085, metadata=bounds(0))
    scalar_lr: float = field(default=0.02, metadata=bounds(0))
    scalar_wd: float = field(default=0.02, metadata=bounds(0))
    beta1: float = field(default=0.9, metadata=bounds(0, 1, hi_open=True))
    beta2: float = field(default=0.99, metadata=bounds(0, 1, hi_open=True))
    eps: float = field(default=1e-8, metadata=bounds(0, lo_open=True))
    grad_clip: float = field(default=0.3, metadata=bounds(0))
    """Clip each rank's local gradient norm to this before the sync, like R0611 (0 = off)."""
    graph_step: Literal["auto", "on", "off"] = "auto"
    """Muon's step as a CUDA graph (``golf_fast.optim.GraphedOptimizerStep``): ``auto`` = on when the
    parameters are on CUDA, ``on``, ``off``."""
    graph_warmup_steps: int = field(default=2, metadata=bounds(1))
    """Eager Muon steps (buffers, self-checks) before the graph is captured."""

    def graph_step_enabled(self, device_type: str) -> bool:
        """Whether the trainer captures Muon's step on a device of type ``device_type``."""
        if self.matrix_optimizer != "muon" or self.graph_step == "off":
            return False
        return self.graph_step == "on" or device_type == "cuda"


@dataclass
class ScheduleConfig:
    clock: Literal["wallclock", "steps"] = "wallclock"
    """``wallclock``: progress = train time / (max_wallclock_s − reserve); ``steps``: step / max_steps."""
    max_wallclock_s: float = field(default=600.0, metadata=bounds(0, lo_open=True))
    max_steps: int = field(default=0, metadata=bounds(0))
    """Stop after this many steps (0 = no step limit; required when clock = steps)."""
    warmdown_frac: float = field(default=0.85, metadata=bounds(0, 1))
    min_lr: float = field(default=0.10, metadata=bounds(0, 1))
    enable_looping_at: float = field(default=0.35, metadata=bounds(0))
    ema_decay: float = field(default=0.9965, metadata=bounds(0, 1, hi_open=True))
    """EMA of the weights, loaded at the end (0 = off)."""
    compile_warmup_steps: int = field(default=20, metadata=bounds(0))
    """Compile warm-up steps (then again with looping) before the clock starts; weights are restored."""


@dataclass
class QuantConfig:
    """Post-training quantization; the defaults are the R0611 record's, read from
    ``golf_fast.quant.recipe.RECORD_RECIPE`` (parameter_golf.md §5)."""

    enabled: bool = True
    calibration: Literal["windows", "batches"] = "windows"
    """Hessian data: ``windows`` = random ``calibration_seq_len`` windows across this rank's training
    shards, no document isolation (the record's ShuffledSequenceLoader); ``batches`` = the next
    training batches of the document-packing loader (documents isolated)."""
    calibration_batches: int = field(default=16, metadata=bounds(1))
    """Batches per rank (each ``train_batch_tokens / (world·accum)`` tokens) for the Hessians, inside the window."""
    calibration_seq_len: int = field(default=0, metadata=bounds(0))
    """Window length for ``calibration=windows`` (0 = ``model.max_seqlen``, the record's train_seq_len)."""
    reserve_s: float = field(default=0.5, metadata=bounds(0))
    """Seconds always kept for the Hessian collection; the measured collection time is added to it."""
    matrix_bits: int = field(default=_R.default_bits, metadata=_BITS)
    """Bits of every block matrix (the ``mlp``, ``attention`` and default roles)."""
    embed_bits: int = field(default=_R.role("embedding").bits, metadata=_BITS)
    """The tied embedding's bits."""
    matrix_clip_sigmas: float = field(default=_R.default_clip_sigmas, metadata=_POS)
    """SDClip k of matrices no role matches."""
    mlp_clip_sigmas: float = field(default=_R.role("mlp").clip_sigmas, metadata=_POS)
    attn_clip_sigmas: float = field(default=_R.role("attention").clip_sigmas, metadata=_POS)
    embed_clip_sigmas: float = field(default=_R.role("embedding").clip_sigmas, metadata=_POS)
    damp: float = field(default=_R.damp, metadata=_POS)
    """GPTQ damping × mean(diag H): the record's, or 0.005 for the TTT-AdamW/SLOT submission."""
    block_size: int = field(default=_R.block_size, metadata=bounds(1))
    act_order: bool = _R.act_order
    gate_int8: bool = _R.gate_int8
    """int8 per-row codes for ``attn_gate_w`` (the record's GATED_ATTN_QUANT_GATE=1); False: fp16."""
    lqer: bool = _R.lqer
    """Rank-``lqer_rank`` correction of the GPTQ residual on the ``lqer_top_k`` worst matrices."""
    lqer_rank: int = field(default=_R.lqer_rank, metadata=bounds(1))
    lqer_top_k: int = field(default=_R.lqer_top_k, metadata=bounds(0))
    lqer_factor_bits: int = field(default=_R.lqer_factor_bits, metadata=_BITS)
    """Bits of the symmetric fallback factors (when the asym group does not divide B)."""
    lqer_asym: bool = _R.lqer_asym
    lqer_asym_group: int = field(default=_R.lqer_group, metadata=bounds(1))
    codec: str = ""
    """Artifact codec name ("" = the artifact module's default). The record's ``pergroup`` (lrzip
    per role + brotli) is not one of golf_fast's codecs."""


@dataclass
class EvalConfig:
    seq_len: int = field(default=2048, metadata=bounds(1))
    stride: int = field(default=64, metadata=bounds(0))
    """Sliding-window stride; 0 = plain evaluation only."""
    batch_seqs: int = field(default=32, metadata=bounds(1))
    val_every: int = field(default=0, metadata=bounds(0))
    """Evaluate (plain) every N steps during training (0 = only at the end); paused time is not counted."""
    weights: Literal["auto", "int6", "dequantized"] = "auto"
    """How the round-tripped model holds its block matrices: ``int6`` (packed codes, multiplied by
    the fused int6 kernel), ``dequantized`` (float banks), ``auto`` = int6 on CUDA, dequantized on CPU."""
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    """Evaluation-time adaptation of the round-tripped artifact at the end (``eval.adapt.ttt``,
    ``eval.adapt.slot``, ``eval.adapt.research`` and their settings; golf_fast.eval.adapt.config),
    reported with the checker's verdict. ``research`` prequant trains on the val tokens before GPTQ
    (the artifact is flagged)."""

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
    seed: int = field(default=1337, metadata=bounds(0, 2 ** 63 - 1))
    """The record's three seeds are 42 (its preset), 0 and 1234 (:data:`RECORD_SEEDS`)."""
    precision: Literal["fp32", "record"] = "fp32"
    """Parameter precision: ``fp32`` masters, or ``record`` (model in bf16 with the banks and control
    tensors in fp32, so the embedding, its Adam state and the residual stream are bf16; compute
    in bf16 autocast). See ``golf_fast.model.precision``."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """``auto`` (CUDA when available), ``cuda`` or ``cpu``."""
    compile: Literal["auto", "on", "off"] = "auto"
    """torch.compile the model: ``auto`` = on GPU only, ``on``, ``off``."""
    autocast: Literal["auto", "bf16", "fp32"] = "auto"
    """Matmul dtype: ``auto`` = bf16 on GPU, fp32 on CPU; ``bf16``; ``fp32``."""
    attention: Literal["auto", "fa3", "fa2", "sdpa"] = "auto"
    """Attention backend: auto (FA3 → FA2 → SDPA), fa3, fa2, sdpa."""
    log_every: int = field(default=50, metadata=bounds(1))
    cpu_threads: int = field(default=0, metadata=bounds(0, 4096))
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
        """Every field by its annotation and bounds (``typed_config``), then the relations between
        fields; raises ``ValueError`` naming the key."""
        check_config(self, "")

        def need(cond: bool, what: str) -> None:
            if not cond:
                raise ValueError(what)

        s, e, r = self.schedule, self.eval, self.run
        need(s.clock != "steps" or s.max_steps > 0, "schedule.max_steps: expected > 0 when schedule.clock is steps")
        need(e.stride <= e.seq_len, f"eval.stride: expected in [0, eval.seq_len={e.seq_len}], got {e.stride}")
        need(self.quant.codec == "" or self.quant.codec in CODEC_NAMES,
             f"quant.codec: expected one of {', '.join(CODEC_NAMES)} (or '' for the default), got {self.quant.codec!r}")
        check_run_name(r.name)
        e.adapt.validate("eval.adapt")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)


def _smoke() -> TrainConfig:
    return TrainConfig(
        preset="smoke",
        model=ModelConfig(vocab_size=1024, num_layers=6, model_dim=128, num_heads=4, num_kv_heads=2,
                          loop_start=2, loop_end=3, parallel_start_layer=4, max_seqlen=256, xsa_last_n=6),
        data=DataConfig(train_batch_tokens=2048, grad_accum=1, prefetch=2, max_val_tokens=8192),
        optim=OptimConfig(muon_momentum_warmup_steps=50, matrix_lr=0.02),
        schedule=ScheduleConfig(max_wallclock_s=60.0, compile_warmup_steps=0, ema_decay=0.9),  # ~40 steps: a short EMA
        quant=QuantConfig(calibration_batches=2, reserve_s=0.5),
        eval=EvalConfig(seq_len=256, stride=128, batch_seqs=16, adapt=smoke_adapt()),
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
                       eval=EvalConfig(adapt=record_adapt()))  # R0611: phased LoRA TTT


PRESETS = {"smoke": _smoke, "h100x1": _h100x1, "record": _record}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name]()


def check_run_name(name: str) -> None:
    """``run.name`` is one folder name under ``run.out_dir``: no separator, not absolute, not ``.``/``..``."""
    seps = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if name and (any(c in name for c in seps) or name in (".", "..") or os.path.isabs(name) or "\0" in name):
        raise ValueError(f"run.name: expected one folder name (no path separators, not absolute, not . or ..), "
                         f"got {name!r}")


def config_fields(cfg: TrainConfig) -> dict[str, Any]:
    """``{"model.num_layers": int, "run.device": Literal[...], "eval.adapt.lora.rank": int, ...}``:
    every overridable key (a leaf field of a section, nested configs included) with its type."""
    def leaves(obj: Any, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        hints = field_types(type(obj))
        for f in dataclasses.fields(obj):
            sub = getattr(obj, f.name)
            key = f"{prefix}{f.name}"
            out.update(leaves(sub, key + ".") if dataclasses.is_dataclass(sub) else {key: hints[f.name]})
        return out

    return {k: t for sec in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, sec.name))
            for k, t in leaves(getattr(cfg, sec.name), sec.name + ".").items()}


def parse_value(key: str, typ: Any, text: str) -> Any:
    """A command-line string parsed as the field's type (see ``typed_config.parse_field``)."""
    return parse_field(key, typ, text)


def apply_overrides(cfg: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A copy of ``cfg`` with ``{"section.field": value}`` applied (``"eval.adapt.lora.rank"`` for a
    nested field; strings are parsed); each changed config is rebuilt with all its changes at once
    (its ``__post_init__`` checks run on the new values); validated."""
    known = config_fields(cfg)
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            close = [k for k in known if k.split(".")[-1] == key.split(".")[-1]]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown config key {key!r}{hint}")
        typ = known[key]
        if isinstance(value, str) and typ is not str:
            value = parse_value(key, typ, value)
        *path, name = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value

    def rebuilt(obj: Any, changes: dict[str, Any]) -> Any:
        return dataclasses.replace(obj, **{k: rebuilt(getattr(obj, k), v) if isinstance(v, dict) else v
                                           for k, v in changes.items()})

    try:
        new = rebuilt(cfg, tree)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    new.validate()
    return new


def metavar(typ: Any) -> str:
    """How a field's type reads in ``--help``: INT, FLOAT, or the Literal choices."""
    return type_name(typ) if "|" in type_name(typ) else type_name(typ).upper()
