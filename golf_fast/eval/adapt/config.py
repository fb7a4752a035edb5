"""Typed configuration of the evaluation-time adaptations, with the submissions' settings as presets.

``AdaptConfig.ttt``: ``none`` | ``adamw`` | ``lora`` | ``phased``; ``slot``: ``none`` | ``causal`` (with
ttt none/adamw one δ over the stream; with lora/phased one δ per document, fitted on its scored chunks);
``research``: ``none`` | ``prequant`` | ``slot_window`` (non-compliant research modes, flagged).

Presets (:func:`adapt_preset`):

* ``record`` — the submissions' values: LoRA rank 80, α 144, Adam lr 1e-4, β (0, 0.99), eps 1e-10,
  weight decay 0.5, chunk 48, 64 documents per batch, A warm-started, on q, k, v, o, mlp and
  lm_head (R0611 log and §6.4); phased: 3 phases over 2,500 documents, SGD lr 1e-3 cosine over
  32,768-token chunks, momentum 0.9, clip 1.0, 32 rows of 2,048 per step; AdamW: 1 epoch, lr 1e-3, the first 10 of 11 blocks frozen; SLOT: L-BFGS 25 iterations,
  history 20, strong Wolfe, δ clamped to ±5, focal loss on the last 128 scored positions;
  pre-quant TTT: 21 AdamW epochs, cosine lr 5e-4 → 5e-5. Windows of 2,048 tokens.
* ``smoke`` — the same methods scaled to the CPU smoke model (seq 256, 6 layers, 8,192 val
  tokens): larger learning rates, smaller rank and chunks, fewer phases' documents.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

TTT_MODES = ("none", "adamw", "lora", "phased")
SLOT_MODES = ("none", "causal")
RESEARCH_MODES = ("none", "prequant", "slot_window")


@dataclass
class LoRAConfig:
    rank: int = 80
    alpha: float = 144.0
    targets: str = "q,k,v,o,mlp,lm_head"
    """Adapted matrices: q, k, v, o, mlp of every virtual layer, and lm_head (d → V, before the softcap)."""
    lr: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.99
    eps: float = 1e-10
    weight_decay: float = 0.5
    chunk: int = 48
    """Targets per scoring/update step of a document."""
    grad_steps: int = 1
    """Optimizer steps per chunk (R0611 ttt_grad_steps); steps after the first re-run the forward."""
    optimizer: str = "adam"
    """``adam`` (AdamW with beta1/beta2/eps/weight_decay) or ``sgd`` (momentum beta1, weight_decay), as R0611's ttt_optimizer."""
    batch_docs: int = 64
    warm_start_a: bool = True
    """Keep A across document batches (only B is zeroed). Makes a rank's results depend on which
    batches it processed before, so multi-rank results equal one process only when False."""
    backend: str = "reference"
    """Base matrices: ``reference`` (F.linear on the dequantized weights) or ``int6`` (golf_fast.int6_linear
    on the artifact's codes; the CUDA fast path, also runnable on CPU under bf16 autocast)."""


@dataclass
class AdamWConfig:
    lr: float = 1e-3
    epochs: int = 1
    freeze_blocks: int = 10
    """The first N physical blocks (and the embedding, skips and lane mixes) stay frozen."""
    chunk_tokens: int = 32_768
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    grad_clip: float = 0.0


@dataclass
class PhasedConfig:
    num_phases: int = 3
    prefix_docs: int = 2500
    lr: float = 1e-3
    momentum: float = 0.9
    chunk_tokens: int = 32_768
    grad_clip: float = 1.0
    epochs: int = 1
    batch_seqs: int = 32
    """Rows of ``seq_len`` per SGD step and row group (R0611 global_ttt_batch_seqs)."""
    row_groups: int = 8
    """How a chunk's rows are split, as the record's ranks split them (8: its 8×H100 run); each group
    is its own attention buffer and the step averages the groups' mean losses (global_sgd.py)."""
    warmup_chunks: int = 0
    """Chunks of linear lr warm-up from ``warmup_start_lr`` before the cosine (R0611: 0)."""
    warmup_start_lr: float = 0.0
    respect_doc_boundaries: bool = True
    """Attention segments at every BOS (and every seq_len tokens) of the phase text; False: plain rows."""


@dataclass
class SlotConfig:
    chunk_tokens: int = 64
    """Positions scored per window (δ is re-optimized between windows)."""
    max_iter: int = 25
    history: int = 20
    clamp: float = 5.0
    focal_positions: int = 128
    focal_gamma: float = 2.0
    l2: float = 0.0
    """Penalty ``l2 · mean(δ²)`` added to the focal loss (0 = the submission's unregularized fit)."""


@dataclass
class PrequantConfig:
    epochs: int = 21
    lr: float = 5e-4
    min_lr: float = 5e-5
    weight_decay: float = 0.0


@dataclass
class AdaptConfig:
    ttt: str = "none"
    slot: str = "none"
    research: str = "none"
    seq_len: int = 2048
    batch_seqs: int = 32
    """Windows per forward in the stream modes (adamw, SLOT, baseline)."""
    probe_every: int = 16
    """A normalization and a causality probe every N scored batches (and on the first, and on the first
    after the first update), at a random scored position."""
    probe_seed: int = -1
    """Seed of the probe positions (−1: a fresh random seed each run, reported in the notes)."""
    void_ratio: float = 0.7
    """Ternary threshold Δ = void_ratio · mean|w| per matrix for the void fraction."""
    seed: int = 0
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    adamw: AdamWConfig = field(default_factory=AdamWConfig)
    phased: PhasedConfig = field(default_factory=PhasedConfig)
    slot_cfg: SlotConfig = field(default_factory=SlotConfig)
    prequant: PrequantConfig = field(default_factory=PrequantConfig)

    def validate(self) -> None:
        def need(cond: bool, what: str) -> None:
            if not cond:
                raise ValueError(what)

        need(self.ttt in TTT_MODES, f"ttt: expected one of {TTT_MODES}, got {self.ttt!r}")
        need(self.slot in SLOT_MODES, f"slot: expected one of {SLOT_MODES}, got {self.slot!r}")
        need(self.research in RESEARCH_MODES, f"research: expected one of {RESEARCH_MODES}, got {self.research!r}")
        need(self.research == "none" or (self.ttt == "none" and self.slot == "none"),
             "research: a research mode runs alone (ttt none, slot none)")
        need(self.seq_len >= 2 and self.batch_seqs >= 1 and self.probe_every >= 1,
             "seq_len/batch_seqs/probe_every: expected >= 2 / >= 1 / >= 1")
        need(0 < self.void_ratio, f"void_ratio: expected > 0, got {self.void_ratio}")
        lo, aw, ph, sl = self.lora, self.adamw, self.phased, self.slot_cfg
        need(lo.rank >= 1 and lo.alpha > 0 and lo.lr > 0 and lo.chunk >= 1 and lo.batch_docs >= 1,
             "lora.rank/alpha/lr/chunk/batch_docs: expected positive values")
        need(lo.chunk <= self.seq_len, f"lora.chunk: expected <= seq_len ({self.seq_len}), got {lo.chunk}")
        need(lo.backend in ("reference", "int6"), f"lora.backend: expected reference or int6, got {lo.backend!r}")
        need(lo.grad_steps >= 1, f"lora.grad_steps: expected >= 1, got {lo.grad_steps}")
        need(lo.optimizer in ("adam", "sgd"), f"lora.optimizer: expected adam or sgd, got {lo.optimizer!r}")
        need(aw.lr > 0 and aw.epochs >= 1 and aw.freeze_blocks >= 0 and aw.chunk_tokens >= 1,
             "adamw.lr/epochs/freeze_blocks/chunk_tokens: expected > 0 / >= 1 / >= 0 / >= 1")
        need(ph.num_phases >= 1 and ph.prefix_docs >= 1 and ph.lr > 0 and ph.chunk_tokens >= 1 and ph.epochs >= 1
             and ph.batch_seqs >= 1 and ph.row_groups >= 1,
             "phased.num_phases/prefix_docs/lr/chunk_tokens/epochs/batch_seqs/row_groups: expected positive values")
        need(ph.warmup_chunks >= 0 and ph.warmup_start_lr >= 0,
             "phased.warmup_chunks/warmup_start_lr: expected >= 0")
        need(sl.chunk_tokens >= 1 and sl.max_iter >= 1 and sl.history >= 1 and sl.clamp > 0 and sl.focal_positions >= 1,
             "slot_cfg.chunk_tokens/max_iter/history/clamp/focal_positions: expected positive values")
        need(self.prequant.epochs >= 1 and self.prequant.lr > 0, "prequant.epochs/lr: expected positive values")

    @property
    def label(self) -> str:
        if self.research != "none":
            return f"research:{self.research}"
        parts = [f"ttt:{self.ttt}"] + ([f"slot:{self.slot}"] if self.slot != "none" else [])
        return "+".join(parts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _smoke() -> AdaptConfig:
    return AdaptConfig(
        seq_len=256, batch_seqs=16, probe_every=8,
        lora=LoRAConfig(rank=8, alpha=16.0, lr=3e-3, chunk=32, batch_docs=16, warm_start_a=False),
        adamw=AdamWConfig(lr=1e-3, epochs=2, freeze_blocks=3, chunk_tokens=512),
        phased=PhasedConfig(num_phases=2, prefix_docs=60, lr=3e-2, chunk_tokens=512),
        slot_cfg=SlotConfig(chunk_tokens=256, max_iter=25, history=20, clamp=5.0, focal_positions=128, l2=10.0),
        prequant=PrequantConfig(epochs=3, lr=1e-3, min_lr=1e-4),
    )


def _record() -> AdaptConfig:
    return AdaptConfig(ttt="phased")


ADAPT_PRESETS = {"smoke": _smoke, "record": _record}


def adapt_preset(name: str) -> AdaptConfig:
    if name not in ADAPT_PRESETS:
        raise ValueError(f"preset: expected one of {sorted(ADAPT_PRESETS)}, got {name!r}")
    return ADAPT_PRESETS[name]()
