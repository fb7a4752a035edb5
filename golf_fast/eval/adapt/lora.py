"""Per-document LoRA adapters for score-first TTT (parameter_golf.md §6.3–6.4, RVAR/R0611).

One adapter per document of a batch (row b): for target ``t`` of layer ``i``,
``Δ_t(n) = (α/r) · (n·A_{i,b}ᵀ)·B_{i,b}ᵀ`` with ``A (r, d)`` ~ U(±1/√d) and ``B (out_t, r)`` = 0
at a reset, so a fresh adapter changes nothing. Targets and where the delta is added (the input
``n`` is always the block's normed input of that branch, as in RVAR):

* ``q``, ``k``, ``v``: added to ``n·Wᵀ`` of c_q, c_k, c_v (out = d, kv_dim, kv_dim);
* ``o``: added to the attention output projection, input = the attention branch's normed input;
* ``mlp``: d → d, added to the MLP output (input = the MLP branch's normed input);
* ``lm_head``: d → V, added to the tied output projection ``h·Eᵀ`` *before* the softcap (input =
  the final normed hidden state), one slot (R0611's ``lm_head_lora``).

Initialization as the record draws it (so one seeded generator gives the record's adapters bit for
bit): every A ~ U(±1/√d) with ``Tensor.uniform_``, one (batch, r, d) tensor per target and slot,
in the record's module order — ``lm_head``, then q, v, k, mlp, o, each over its slots in ascending
order (:data:`DRAW_ORDER`).

Adapters are per *virtual* layer, like RVAR's (17 slots for the record's 11 layers with layers
3–5 looped twice more): the k-th visit of physical layer i in a forward uses its own slot. Visits
are counted by the hook (reset when layer 0, always the first, is entered); without looping each
layer uses the slot of its first visit. Parameters per target are stacked ``A (S, batch, r, d)``,
``B (S, batch, out, r)`` with S slots (one Adam group). ``rows`` selects which adapter rows the
current forward's rows use (documents finish at different chunks).

Base matrices, two branches:

* reference (any device): ``F.linear(x, w)`` with the model's (dequantized) weight, plus ``Δ``;
* ``int6`` (for CUDA; CPU-testable, where ``golf_fast.int6_linear`` runs its eager reference):
  the base is ``int6_linear(x, packed, scales)`` read from the artifact's int6 codes, and when the
  forward has one document and the target's input is the linear's own input (q, k, v), the LoRA is
  fused into the same call as its low-rank term: ``lowrank = ((α/r)·B, A)`` gives
  ``x·Aᵀ·((α/r)B)ᵀ`` with gradients to A and B from the op. A matrix with an LQER correction uses
  the low-rank term for it (``W = q·s + A_lqer·B_lqer``) and takes its LoRA unfused. The int6 branch is only valid while
  the base weights are the artifact's: a base that changed (phased SGD) raises.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from golf_fast.model.config import ModelConfig
from golf_fast.ops.int6_matmul import int6_linear
from golf_fast.quant.formats import QuantizedTensor
from golf_fast.quant.lqer import pop_state_entries

TARGETS = ("q", "k", "v", "o", "mlp", "lm_head")
DRAW_ORDER = ("lm_head", "q", "v", "k", "mlp", "o")
"""The record's BatchedTTTLoRA module order: the order A is drawn in (construction and reset)."""
HEAD_NAME = "tok_emb.weight"
"""The linear-hook name of the tied output projection (golf_fast.model.gpt.EMBED_NAME)."""
_MATRIX_TO_TARGET = {"attn.c_q": "q", "attn.c_k": "k", "attn.c_v": "v", "attn.proj": "o", "mlp.fc": None,
                     "mlp.proj": "mlp"}


def parse_targets(text: str) -> tuple[str, ...]:
    """``"q,k,v,o,mlp"`` → a tuple of targets, checked."""
    t = tuple(x.strip() for x in str(text).split(",") if x.strip())
    bad = [x for x in t if x not in TARGETS]
    if not t or bad or len(set(t)) != len(t):
        raise ValueError(f"targets: expected a comma-separated subset of {','.join(TARGETS)}, got {text!r}")
    return t


class BatchedLoRA(nn.Module):
    """``batch`` independent adapters of rank ``rank`` on ``targets`` of every layer of a ``cfg`` model."""

    def __init__(self, cfg: ModelConfig, batch: int, rank: int, alpha: float, targets=TARGETS,
                 device: Optional[torch.device] = None) -> None:
        super().__init__()
        for name, v in (("batch", batch), ("rank", rank)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        if not alpha > 0:
            raise ValueError(f"alpha: expected > 0, got {alpha!r}")
        self.targets = parse_targets(",".join(targets)) if not isinstance(targets, str) else parse_targets(targets)
        self.cfg, self.batch, self.rank, self.scale = cfg, batch, rank, float(alpha) / rank
        L, d = cfg.num_layers, cfg.model_dim
        order = list(range(L))
        if cfg.num_loops > 0:
            seg = list(range(cfg.loop_start, cfg.loop_end + 1))
            order = list(range(cfg.loop_start)) + seg * (cfg.num_loops + 1) + list(range(cfg.loop_end + 1, L))
        self.slots_of = [[k for k, i in enumerate(order) if i == layer] for layer in range(L)]
        """Slot of each visit of each physical layer, in visit order."""
        S = len(order)
        out = {"q": d, "k": cfg.kv_dim, "v": cfg.kv_dim, "o": d, "mlp": d, "lm_head": cfg.vocab_size}
        slots = {t: (1 if t == "lm_head" else S) for t in self.targets}
        self.A = nn.ParameterDict({t: nn.Parameter(torch.zeros(slots[t], batch, rank, d, device=device))
                                   for t in self.targets})
        self.B = nn.ParameterDict({t: nn.Parameter(torch.zeros(slots[t], batch, out[t], rank, device=device))
                                   for t in self.targets})
        self.rows: Optional[torch.Tensor] = None

    @torch.no_grad()
    def reset(self, generator: torch.Generator, keep_a: bool = False) -> None:
        """B ← 0; A ← U(±1/√d) drawn from ``generator`` (CPU) unless ``keep_a`` (warm start): one
        ``uniform_`` per (batch, r, d) slot tensor in :data:`DRAW_ORDER`, as the record's modules draw."""
        if not isinstance(generator, torch.Generator) and not keep_a:
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        bound = 1.0 / math.sqrt(self.cfg.model_dim)
        for t in self.targets:
            self.B[t].zero_()
        if keep_a:
            return
        for t in DRAW_ORDER:
            if t not in self.targets:
                continue
            for s in range(self.A[t].shape[0]):
                a = torch.empty(self.A[t].shape[1:], dtype=torch.float32).uniform_(-bound, bound, generator=generator)
                self.A[t][s].copy_(a.to(self.A[t].device))

    def slot(self, layer: int, visit: int) -> int:
        s = self.slots_of[layer]
        return s[min(visit, len(s) - 1)]

    def factors(self, target: str, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (b, r, d), B (b, out, r)) of virtual-layer ``slot``, for the rows in use."""
        a, b = self.A[target][slot], self.B[target][slot]
        if self.rows is not None:
            a, b = a.index_select(0, self.rows), b.index_select(0, self.rows)
        return a, b

    def delta(self, target: str, slot: int, n: torch.Tensor) -> torch.Tensor:
        """``(α/r)·(n Aᵀ) Bᵀ`` per row: n (b, T, d) → (b, T, out)."""
        a, b = self.factors(target, slot)
        if n.shape[0] != a.shape[0]:
            raise ValueError(f"n: {n.shape[0]} rows, but the adapter has {a.shape[0]} rows in use")
        h = torch.bmm(n, a.transpose(1, 2).to(n.dtype))
        return torch.bmm(h, b.transpose(1, 2).to(n.dtype)) * self.scale


class Int6Base:
    """The artifact's int6 matrices, packed for ``golf_fast.int6_linear``: name → (packed, scales),
    and the LQER corrections some of them carry: name → (A (N, r), B (r, K)) fp32, which are
    int6_linear's own low-rank term (``W = q·s + A·B``, as the artifact's dequantization folds them)."""

    def __init__(self, state: dict, model: nn.Module, device: torch.device) -> None:
        self.packed: dict = {}
        rest = dict(state)
        self.lqer = {n: tuple(t.to(device) for t in f.factors()) for n, f in pop_state_entries(rest).items()}
        for name, v in rest.items():
            if isinstance(v, QuantizedTensor) and v.bits == 6 and name.startswith("blocks."):
                self.packed[name] = (v.packed().to(device), v.scales.to(device))
        if not self.packed:
            raise ValueError("state: the artifact has no int6 block matrices (the int6 branch needs them)")
        self.model = model
        self.versions = self._versions()

    def _versions(self) -> tuple:
        return tuple(p._version for n, p in self.model.named_parameters() if n.endswith("_bank"))

    def check_unchanged(self) -> None:
        if self._versions() != self.versions:
            raise RuntimeError("int6 LoRA branch: the model's base weights changed since the int6 base was read "
                               "(phased SGD updates them); use the reference branch")


class LoRAHook:
    """The model's linear hook: base matrix (reference or int6 branch) + the batched LoRA deltas."""

    def __init__(self, lora: BatchedLoRA, int6: Optional[Int6Base] = None) -> None:
        self.lora, self.int6 = lora, int6
        self._inputs: dict = {}
        self._parsed: dict = {}
        self._visits: dict = {}

    def _parse(self, name: str) -> tuple[int, str]:
        if name not in self._parsed:
            parts = name.split(".")  # blocks.{i}.{attn|mlp}.{m}.weight
            self._parsed[name] = (int(parts[1]), f"{parts[2]}.{parts[3]}")
        return self._parsed[name]

    def base_linear(self, name: str, x: torch.Tensor, w: torch.Tensor, fused=None) -> torch.Tensor:
        """``x·Wᵀ`` of matrix ``name`` (+ ``x·fused[1]ᵀ·fused[0]ᵀ``): F.linear with the model's weight ``w``
        (reference branch) or int6_linear on the artifact's codes with its LQER term (int6 branch)."""
        if self.int6 is None:
            return F.linear(x, w.to(x.dtype))
        if name not in self.int6.packed:
            raise KeyError(f"int6 LoRA branch: {name} is not an int6 matrix of the artifact")
        packed, scales = self.int6.packed[name]
        if fused is None:
            fused = self.int6.lqer.get(name)
        elif name in self.int6.lqer:
            raise ValueError(f"int6 LoRA branch: {name} already uses the low-rank term for its LQER correction")
        if x.dtype not in (torch.bfloat16, torch.float16):
            if not torch.is_autocast_enabled(x.device.type):
                raise TypeError(f"int6 LoRA branch: x must be bf16/fp16 (run under autocast), got {x.dtype}")
            x = x.to(torch.get_autocast_dtype(x.device.type))
        return int6_linear(x, packed, scales, lowrank=fused)

    def __call__(self, name: str, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if name == HEAD_NAME:  # the tied output projection, before the softcap
            y = F.linear(x, w.to(x.dtype))
            if "lm_head" not in self.lora.targets:
                return y
            return y + self.lora.delta("lm_head", 0, x).to(y.dtype)
        layer, m = self._parse(name)
        target = _MATRIX_TO_TARGET[m]
        if m == "attn.c_q":  # a block visit starts with its c_q; layer 0 starts every forward
            if layer == 0:
                self._visits.clear()
                if self.int6 is not None:  # once per forward: the base weights cannot change within one
                    self.int6.check_unchanged()
            self._visits[layer] = self._visits.get(layer, -1) + 1
        slot = self.lora.slot(layer, self._visits.get(layer, 0))
        if m in ("attn.c_q", "mlp.fc"):
            self._inputs[(layer, m[:3])] = x  # the branch's normed input, for o and mlp
        if target is None or target not in self.lora.targets:
            return self.base_linear(name, x, w)
        if target in ("q", "k", "v") and self.int6 is not None and x.shape[0] == 1 and name not in self.int6.lqer:
            a, b = self.lora.factors(target, slot)
            return self.base_linear(name, x, w, fused=(b[0] * self.lora.scale, a[0]))
        n = x if target in ("q", "k", "v") else self._inputs[(layer, "att" if target == "o" else "mlp")]
        y = self.base_linear(name, x, w)
        return y + self.lora.delta(target, slot, n).to(y.dtype)
