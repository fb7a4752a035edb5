"""Typed configuration of the evaluation-time adaptations: ``eval.adapt`` of the train config.

``AdaptConfig.ttt``: :data:`TTTMode` (``none`` | ``adamw`` | ``lora`` | ``phased``); ``slot``:
:data:`SlotMode` (``none`` | ``causal``: with ttt none/adamw one δ over the stream; with lora/phased
one δ per document, fitted on its scored chunks); ``research``: :data:`ResearchMode` (``none`` |
``prequant`` | ``slot_window``: non-compliant research modes, flagged). Each mode is a ``Literal``
written once here; every field is checked by its annotation and ``bounds`` metadata
(``golf_fast.model.typed_config``), and :meth:`AdaptConfig.validate` adds the checks that relate
fields. ``eval/adapt/run.py`` maps the mode to its driver.

The defaults are the submissions' values: LoRA rank 80, α 144, Adam lr 1e-4, β (0, 0.99), eps
1e-10, weight decay 0.5, chunk 48, 64 documents per batch, A warm-started, on q, k, v, o, mlp and
lm_head (R0611 log and §6.4); phased: 3 phases over 2,500 documents, SGD lr 1e-3 cosine over
32,768-token chunks, momentum 0.9, clip 1.0, 32 rows of 2,048 per step; AdamW: 1 epoch, lr 1e-3,
the first 10 of 11 blocks frozen; SLOT: L-BFGS 25 iterations, history 20, strong Wolfe, δ clamped
to ±5, focal loss on the last 128 scored positions; pre-quant TTT: 21 AdamW epochs, cosine lr
5e-4 → 5e-5. Windows of 2,048 tokens. The train presets choose the mode (:func:`record_adapt`:
phased); :func:`smoke_adapt` holds the same methods scaled to the CPU smoke model (seq 256, 6
layers, 8,192 val tokens): larger learning rates, smaller rank and chunks, fewer phases' documents.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal

from golf_fast.model.typed_config import bounds, check_config

TTTMode = Literal["none", "adamw", "lora", "phased"]
"""Score-first test-time training: none, full-model AdamW on the stream, per-document LoRA, phased."""
SlotMode = Literal["none", "causal"]
ResearchMode = Literal["none", "prequant", "slot_window"]
"""The seed submissions' non-compliant methods (flagged); each runs alone (ttt none, slot none)."""
TTT_MODES: tuple[str, ...] = typing.get_args(TTTMode)
RESEARCH_MODES: tuple[str, ...] = typing.get_args(ResearchMode)

_POS = bounds(0, lo_open=True)
"""A positive number."""


@dataclass
class LoRAConfig:
    rank: int = field(default=80, metadata=bounds(1))
    alpha: float = field(default=144.0, metadata=_POS)
    targets: str = "q,k,v,o,mlp,lm_head"
    """Adapted matrices: q, k, v, o, mlp of every virtual layer, and lm_head (d → V, before the softcap)."""
    lr: float = field(default=1e-4, metadata=_POS)
    beta1: float = field(default=0.0, metadata=bounds(0, 1, hi_open=True))
    beta2: float = field(default=0.99, metadata=bounds(0, 1, hi_open=True))
    eps: float = field(default=1e-10, metadata=_POS)
    weight_decay: float = field(default=0.5, metadata=bounds(0))
    chunk: int = field(default=48, metadata=bounds(1))
    """Targets per scoring/update step of a document (at most ``seq_len``)."""
    grad_steps: int = field(default=1, metadata=bounds(1))
    """Optimizer steps per chunk (R0611 ttt_grad_steps); steps after the first re-run the forward."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """``adam`` (AdamW with beta1/beta2/eps/weight_decay) or ``sgd`` (momentum beta1, weight_decay), as R0611's ttt_optimizer."""
    batch_docs: int = field(default=64, metadata=bounds(1))
    warm_start_a: bool = True
    """Keep A across document batches (only B is zeroed). Makes a rank's results depend on which
    batches it processed before, so multi-rank results equal one process only when False."""
    backend: Literal["reference", "int6"] = "reference"
    """Base matrices: ``reference`` (F.linear on the dequantized weights) or ``int6`` (golf_fast.int6_linear
    on the artifact's codes; the CUDA fast path, also runnable on CPU under bf16 autocast)."""


@dataclass
class AdamWConfig:
    lr: float = field(default=1e-3, metadata=_POS)
    epochs: int = field(default=1, metadata=bounds(1))
    freeze_blocks: int = field(default=10, metadata=bounds(0))
    """The first N physical blocks (and the embedding, skips and lane mixes) stay frozen."""
    chunk_tokens: int = field(default=32_768, metadata=bounds(1))
    beta1: float = field(default=0.9, metadata=bounds(0, 1, hi_open=True))
    beta2: float = field(default=0.999, metadata=bounds(0, 1, hi_open=True))
    weight_decay: float = field(default=0.0, metadata=bounds(0))
    grad_clip: float = field(default=0.0, metadata=bounds(0))
    """Gradient-norm clip (0 = off)."""


@dataclass
class PhasedConfig:
    num_phases: int = field(default=3, metadata=bounds(1))
    prefix_docs: int = field(default=2500, metadata=bounds(1))
    lr: float = field(default=1e-3, metadata=_POS)
    momentum: float = field(default=0.9, metadata=bounds(0, 1, hi_open=True))
    chunk_tokens: int = field(default=32_768, metadata=bounds(1))
    grad_clip: float = field(default=1.0, metadata=bounds(0))
    epochs: int = field(default=1, metadata=bounds(1))
    batch_seqs: int = field(default=32, metadata=bounds(1))
    """Rows of ``seq_len`` per SGD step and row group (R0611 global_ttt_batch_seqs)."""
    row_groups: int = field(default=8, metadata=bounds(1))
    """How a chunk's rows are split, as the record's ranks split them (8: its 8×H100 run); each group
    is its own attention buffer and the step averages the groups' mean losses (global_sgd.py)."""
    warmup_chunks: int = field(default=0, metadata=bounds(0))
    """Chunks of linear lr warm-up from ``warmup_start_lr`` before the cosine (R0611: 0)."""
    warmup_start_lr: float = field(default=0.0, metadata=bounds(0))
    respect_doc_boundaries: bool = True
    """Attention segments at every BOS (and every seq_len tokens) of the phase text; False: plain rows."""


@dataclass
class SlotConfig:
    chunk_tokens: int = field(default=64, metadata=bounds(1))
    """Positions scored per window (δ is re-optimized between windows)."""
    max_iter: int = field(default=25, metadata=bounds(1))
    history: int = field(default=20, metadata=bounds(1))
    clamp: float = field(default=5.0, metadata=_POS)
    focal_positions: int = field(default=128, metadata=bounds(1))
    focal_gamma: float = field(default=2.0, metadata=bounds(0))
    l2: float = field(default=0.0, metadata=bounds(0))
    """Penalty ``l2 · mean(δ²)`` added to the focal loss (0 = the submission's unregularized fit)."""


@dataclass
class PrequantConfig:
    epochs: int = field(default=21, metadata=bounds(1))
    lr: float = field(default=5e-4, metadata=_POS)
    min_lr: float = field(default=5e-5, metadata=bounds(0))
    weight_decay: float = field(default=0.0, metadata=bounds(0))


@dataclass
class AdaptConfig:
    ttt: TTTMode = "none"
    slot: SlotMode = "none"
    research: ResearchMode = "none"
    seq_len: int = field(default=2048, metadata=bounds(2))
    batch_seqs: int = field(default=32, metadata=bounds(1))
    """Windows per forward in the stream modes (adamw, SLOT, baseline)."""
    probe_every: int = field(default=16, metadata=bounds(1))
    """A normalization and a causality probe every N scored batches (and on the first, and on the first
    after the first update), at a random scored position."""
    probe_seed: int = field(default=-1, metadata=bounds(-1))
    """Seed of the probe positions (−1: a fresh random seed each run, reported in the notes)."""
    void_ratio: float = field(default=0.7, metadata=_POS)
    """Ternary threshold Δ = void_ratio · mean|w| per matrix for the void fraction."""
    seed: int = field(default=0, metadata=bounds(0))
    audit_positions: int = field(default=2, metadata=bounds(0, 64))
    """Replay-audit positions of the trainer's adaptive evaluation (compliance/audit.py), each one full
    rerun of the mode on the first ``audit_docs`` validation documents, after the timed evaluation and
    not counted in its time (0: no audit; the report then says "unaudited")."""
    audit_docs: int = field(default=16, metadata=bounds(1, 100_000))
    """Validation documents (a prefix of the stream) the trainer's replay audit reruns the mode on."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    adamw: AdamWConfig = field(default_factory=AdamWConfig)
    phased: PhasedConfig = field(default_factory=PhasedConfig)
    slot_cfg: SlotConfig = field(default_factory=SlotConfig)
    prequant: PrequantConfig = field(default_factory=PrequantConfig)

    def validate(self, prefix: str = "") -> None:
        """Every field by its annotation and bounds, then the relations between fields; raises
        ``ValueError`` naming the key (``prefix.field``, e.g. ``eval.adapt.lora.rank``)."""
        check_config(self, prefix)
        key = (prefix + ".") if prefix else ""
        if self.research != "none" and (self.ttt != "none" or self.slot != "none"):
            raise ValueError(f"{key}research: a research mode runs alone ({key}ttt none, {key}slot none), got "
                             f"research {self.research!r} with ttt {self.ttt!r}, slot {self.slot!r}")
        if self.lora.chunk > self.seq_len:
            raise ValueError(f"{key}lora.chunk: expected <= {key}seq_len ({self.seq_len}), got {self.lora.chunk}")

    @property
    def mode(self) -> str:
        """What runs (the key of ``run.DRIVERS``): the research mode when one is set, else the TTT mode."""
        return self.research if self.research != "none" else self.ttt

    def adapts(self, prequant_ran: bool = False) -> bool:
        """Whether an evaluation-time adaptation runs: any of ``ttt``, ``slot``, ``research`` set, except
        ``research == "prequant"`` when ``prequant_ran`` (the trainer runs prequant before GPTQ, so its
        round-trip evaluation does not run it again; on an artifact, ``golf-fast eval`` runs it)."""
        if prequant_ran and self.research == "prequant":
            return False
        return self.mode != "none" or self.slot != "none"

    @property
    def label(self) -> str:
        if self.research != "none":
            return f"research:{self.research}"
        parts = [f"ttt:{self.ttt}"] + ([f"slot:{self.slot}"] if self.slot != "none" else [])
        return "+".join(parts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def record_adapt() -> AdaptConfig:
    """The record's evaluation (R0611): phased LoRA TTT with the defaults; the ``record`` train preset's."""
    return AdaptConfig(ttt="phased")


def smoke_adapt(**modes: str) -> AdaptConfig:
    """The adaptation settings of the ``smoke`` train preset (the CPU smoke model), with ``modes``
    (``ttt``, ``slot``, ``research``) set."""
    return AdaptConfig(
        seq_len=256, batch_seqs=16, probe_every=8,
        lora=LoRAConfig(rank=8, alpha=16.0, lr=3e-3, chunk=32, batch_docs=16, warm_start_a=False),
        adamw=AdamWConfig(lr=1e-3, epochs=2, freeze_blocks=3, chunk_tokens=512),
        phased=PhasedConfig(num_phases=2, prefix_docs=60, lr=3e-2, chunk_tokens=512),
        slot_cfg=SlotConfig(chunk_tokens=256, max_iter=25, history=20, clamp=5.0, focal_positions=128, l2=10.0),
        prequant=PrequantConfig(epochs=3, lr=1e-3, min_lr=1e-4),
        **modes,
    )
