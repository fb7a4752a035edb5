"""Model configuration: the R0611 record architecture with each feature switchable.

Defaults reproduce R0611 (parameter_golf.md §3.1, §3.3): 35,945,671 parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golf_fast.model.typed_config import bounds, check_config


@dataclass
class ModelConfig:
    vocab_size: int = field(default=8192, metadata=bounds(2, 1 << 16))
    """Token ids are stored as uint16 in shards, so at most 65,536."""
    num_layers: int = field(default=11, metadata=bounds(1, 1024))
    model_dim: int = field(default=512, metadata=bounds(2, 1 << 16))
    num_heads: int = field(default=8, metadata=bounds(1, 1024))
    num_kv_heads: int = field(default=4, metadata=bounds(1, 1024))
    mlp_mult: float = field(default=4.0, metadata=bounds(0, 64, lo_open=True))
    leaky_slope: float = 0.5
    """MLP activation: leaky_relu(x, leaky_slope)²."""
    rope_dims: int = 16
    """Partial RoPE on the first ``rope_dims`` of each head's dims (0 = the whole head)."""
    rope_base: float = field(default=10000.0, metadata=bounds(1, lo_open=True))
    qk_gain_init: float = 5.0
    xsa_last_n: int = field(default=11, metadata=bounds(0))
    """Exclusive self-attention on the last N physical layers (0 = off)."""
    ln_scale: bool = True
    """Scale each block's normed inputs by 1/sqrt(layer + 1)."""
    skip_gates: bool = True
    """U-Net skips combined as lerp(w ⊙ skip, x, σ(g)); False: x + w ⊙ skip."""
    num_loops: int = field(default=2, metadata=bounds(0, 64))
    """Depth recurrence: layers loop_start..loop_end run 1 + num_loops times once looping is on (0 = off)."""
    loop_start: int = 3
    loop_end: int = 5
    parallel_start_layer: int = 8
    """Two-lane parallel residuals from this physical layer on (0 = off)."""
    parallel_final_lane: str = "mean"
    """Final hidden of the two lanes: ``mean`` (the record), ``attn`` (lane 0) or ``mlp`` (lane 1)."""
    smear_gate: bool = True
    """SmearGate on the embedding with the BOS fix."""
    gate_window: int = field(default=12, metadata=bounds(1))
    sparse_attn_gate: bool = True
    sparse_attn_gate_scale: float = 0.5
    logit_softcap: float = field(default=30.0, metadata=bounds(0, lo_open=True))
    tied_embed_init_std: float = field(default=0.005, metadata=bounds(0))
    bos_id: int = field(default=1, metadata=bounds(0))
    max_seqlen: int = field(default=2048, metadata=bounds(1, 1 << 24))
    """Longest attention segment (documents are cut into pieces of at most this many tokens)."""

    def __post_init__(self) -> None:
        check_config(self, "model")  # types, finiteness and the ranges declared above
        def need(cond: bool, field: str, expected: str) -> None:
            if not cond:
                raise ValueError(f"model.{field}: expected {expected}, got {getattr(self, field)!r}")

        for f in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "max_seqlen"):
            need(isinstance(getattr(self, f), int) and getattr(self, f) > 0, f, "a positive int")
        need(self.model_dim % self.num_heads == 0, "num_heads", f"a divisor of model_dim {self.model_dim}")
        need(self.num_heads % self.num_kv_heads == 0, "num_kv_heads", f"a divisor of num_heads {self.num_heads}")
        hd = self.model_dim // self.num_heads
        need(hd % 2 == 0, "num_heads", "a head dim that is even (RoPE)")
        need(0 <= self.rope_dims <= hd and self.rope_dims % 2 == 0, "rope_dims", f"an even int in [0, {hd}]")
        need(self.mlp_mult > 0 and int(self.mlp_mult * self.model_dim) > 0, "mlp_mult", "a positive number")
        need(self.xsa_last_n >= 0, "xsa_last_n", "an int >= 0 (values >= num_layers: every layer)")
        need(self.num_loops >= 0, "num_loops", "an int >= 0")
        if self.num_loops:
            need(0 <= self.loop_start <= self.loop_end < self.num_layers, "loop_start",
                 f"0 <= loop_start <= loop_end < num_layers ({self.loop_start}..{self.loop_end})")
        need(0 <= self.parallel_start_layer <= self.num_layers, "parallel_start_layer", f"an int in [0, {self.num_layers}]")
        need(self.parallel_final_lane in ("mean", "attn", "mlp"), "parallel_final_lane", "one of mean, attn, mlp")
        need(0 < self.gate_window <= self.model_dim, "gate_window", f"an int in [1, {self.model_dim}]")
        need(self.logit_softcap > 0, "logit_softcap", "a positive number")
        need(0 <= self.bos_id < self.vocab_size, "bos_id", f"an id in [0, {self.vocab_size})")

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def hidden_dim(self) -> int:
        return int(self.mlp_mult * self.model_dim)
