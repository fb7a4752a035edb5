"""The R0611 record GPT (parameter_golf.md §3.1, §3.3) with switchable features.

Shapes: tokens (B, T) int64 → hidden (B, T, d) → logits (B, T, V). Training uses B = 1 with the
whole packed buffer and ``cu_seqlens`` at document starts; eval uses rows (each row its own
sequence) plus document starts inside rows. Attention never crosses a segment.

Per block (physical layer i, ln = 1/sqrt(i+1) when ``ln_scale``)::

    x_in = resid_mix[0]·x + resid_mix[1]·x0
    n    = rms_norm(x_in)·ln
    q,k,v = n Wqᵀ, n Wkᵀ, n Wvᵀ;  q,k ← rms_norm per head;  partial RoPE;  q ← q·q_gain[h]
    y    = attn(q,k,v);  y ← y − (y·v̂)v̂ (XSA);  y ← y·σ(scale·W_g n[:12]) (sparse gate);  a = y Woᵀ
    x    = x_in + attn_scale·a;  x = x + mlp_scale·(leaky_relu(rms_norm(x)·ln Wupᵀ, 0.5)² Wdownᵀ)

Embedding: e = tok_emb[ids]; SmearGate e_t += λσ(W_s e_t[:12])·e_{t−1}·[ids_t ≠ BOS]; x0 = rms_norm(e).
U-Net: encoder outputs are stacked; decoder step j pops one: x = lerp(w_j ⊙ skip, x, σ(g_j)).
Depth recurrence (``looping_active``): virtual order [0..s−1] + [s..e]×(1+loops) + [e+1..]; two-lane
parallel residuals for decoder layers ≥ ``parallel_start_layer``; final hidden = mean of the lanes
(``parallel_final_lane``: or lane 0 / lane 1 alone).
Output: logits = softcap·tanh(rms_norm(h) tok_embᵀ / softcap); loss = CE in fp32.

The matrices live in four banks that Parallel Muon shards: ``qo_bank (2L, d, d)`` ([0..L) Wq,
[L..2L) Wo), ``kv_bank (2L, kv, d)`` (Wk, Wv), ``mlp_up_bank (L, hidden, d)``,
``mlp_down_bank (L, d, hidden)``. :meth:`GPT.unbanked_state_dict` names them per layer
(``blocks.i.attn.c_q.weight`` ...) for quantization.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from golf_fast.model.attention import resolve_attention_backend, varlen_attention
from golf_fast.model.config import ModelConfig
from golf_fast.model.kernel_paths import FusedKernels, compute_dtype
from golf_fast.nn.int6_bank import Int6Bank, bank_linear
from golf_fast.ops.fused_mlp import leaky_relu_square_mlp
from golf_fast.ops.softcapped_ce import softcapped_cross_entropy

ActivationHook = Callable[[str, torch.Tensor], None]
"""``hook(matrix_name, x)`` gets the input rows (…, in_features) of each matrix (calibration)."""
LinearHook = Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]
"""``hook(matrix_name, x, w) -> y`` computes ``F.linear(x, w)`` plus anything else (eval-time adapters)."""

BANK_NAMES = ("qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank")
EMBED_NAME = "tok_emb.weight"
LAYER_MATRICES = (("attn.c_q", "qo_bank", 0), ("attn.c_k", "kv_bank", 0), ("attn.c_v", "kv_bank", 1),
                  ("attn.proj", "qo_bank", 1), ("mlp.fc", "mlp_up_bank", 0), ("mlp.proj", "mlp_down_bank", 0))
"""The one bank-slot → matrix-name mapping: ``(matrix, bank, group)`` per matrix of a layer, in the
record's un-banked order (Wq, Wk, Wv, Wo, Wup, Wdown); layer ``i``'s ``blocks.{i}.{matrix}.weight``
is slot ``group · L + i`` of ``bank`` (L = num_layers)."""
MATRICES_PER_LAYER = {b: sum(1 for _, bank, _ in LAYER_MATRICES if bank == b) for b in BANK_NAMES}
"""Matrices each bank holds per layer (its slots are ``[0, L)`` then ``[L, 2L)`` for the two-matrix banks)."""


def bank_matrix_names(num_layers: int) -> dict[str, list[str]]:
    """Bank → the un-banked names of its matrices, in slot order (:data:`LAYER_MATRICES`)."""
    if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 0:
        raise ValueError(f"num_layers: expected an int >= 0, got {num_layers!r}")
    out: dict[str, list[str]] = {b: [""] * (MATRICES_PER_LAYER[b] * num_layers) for b in BANK_NAMES}
    for m, bank, group in LAYER_MATRICES:
        for i in range(num_layers):
            out[bank][group * num_layers + i] = f"blocks.{i}.{m}.weight"
    return out


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rope_dims: int) -> torch.Tensor:
    """Rotate-half RoPE on the first ``rope_dims`` of the last dim; x (B, T, H, D), cos/sin (T, rope_dims/2)."""
    half = rope_dims // 2
    c, s = cos[None, :, None, :].to(x.dtype), sin[None, :, None, :].to(x.dtype)
    x1, x2, rest = x[..., :half], x[..., half:rope_dims], x[..., rope_dims:]
    return torch.cat((x1 * c + x2 * s, x1 * -s + x2 * c, rest), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init, dtype=torch.float32))
        self.use_xsa = layer >= cfg.num_layers - cfg.xsa_last_n
        if cfg.sparse_attn_gate:
            self.attn_gate_w = nn.Parameter(torch.zeros(cfg.num_heads, cfg.gate_window, dtype=torch.float32))
        self.linear_hook: Optional[LinearHook] = None
        self.names = {m: f"blocks.{layer}.attn.{m}.weight" for m in ("c_q", "c_k", "c_v", "proj")}
        rd = cfg.rope_dims or cfg.head_dim
        self.register_buffer("inv_freq", 1.0 / (cfg.rope_base ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd)),
                             persistent=False)

    def forward(self, n: torch.Tensor, q_w, k_w, v_w, o_w, cu_seqlens: torch.Tensor, max_seqlen: int,
                backend: str, hook: Optional[ActivationHook]) -> torch.Tensor:
        cfg = self.cfg
        B, T, _ = n.shape
        H, Hkv, D = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        if hook is not None:
            for m in ("c_q", "c_k", "c_v"):
                hook(self.names[m], n)
        q = _linear(self.linear_hook, self.names["c_q"], n, q_w).view(B, T, H, D)
        k = _linear(self.linear_hook, self.names["c_k"], n, k_w).view(B, T, Hkv, D)
        v = _linear(self.linear_hook, self.names["c_v"], n, v_w).view(B, T, Hkv, D)
        q = F.rms_norm(q, (D,))
        k = F.rms_norm(k, (D,))
        # positions within each row (training: the whole packed buffer, as in the record; RoPE is
        # relative, so a document's attention does not depend on where it sits in the buffer)
        freqs = torch.outer(torch.arange(T, device=n.device, dtype=torch.float32), self.inv_freq)
        rd = cfg.rope_dims or D
        q = rotary(q, freqs.cos(), freqs.sin(), rd)
        k = rotary(k, freqs.cos(), freqs.sin(), rd)
        q = q * self.q_gain.to(q.dtype)[None, None, :, None]
        y = varlen_attention(q.reshape(B * T, H, D), k.reshape(B * T, Hkv, D), v.reshape(B * T, Hkv, D),
                             cu_seqlens, max_seqlen, backend).view(B, T, H, D)
        if self.use_xsa:  # exclusive self-attention, GQA-aware, no repeat_interleave
            yg = y.view(B, T, Hkv, H // Hkv, D)
            vn = F.normalize(v, dim=-1).unsqueeze(-2)
            y = (yg - (yg * vn).sum(dim=-1, keepdim=True) * vn).view(B, T, H, D)
        if cfg.sparse_attn_gate:
            g = torch.sigmoid(cfg.sparse_attn_gate_scale *
                              F.linear(n[..., :cfg.gate_window].contiguous(), self.attn_gate_w.to(n.dtype)))
            y = y * g[..., None]
        y = y.reshape(B, T, H * D)
        if hook is not None:
            hook(self.names["proj"], y)
        return _linear(self.linear_hook, self.names["proj"], y, o_w)


def _linear(hook: Optional[LinearHook], name: str, x: torch.Tensor, w) -> torch.Tensor:
    """``x @ wᵀ`` through the linear hook when one is set (TTT adapters), else ``bank_linear`` (dense
    slices as ``F.linear``, int6 matrices through the fused int6 kernel)."""
    return bank_linear(x, w) if hook is None else hook(name, x, w)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        self.attn = Attention(cfg, layer)
        d = cfg.model_dim
        self.attn_scale = nn.Parameter(torch.ones(d, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(d, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(d), torch.zeros(d))).float())
        self.ln = 1.0 / math.sqrt(layer + 1) if cfg.ln_scale else 1.0
        self.fused = FusedKernels()  # GPT shares its own object with every block
        self.linear_hook: Optional[LinearHook] = None
        self.names = {m: f"blocks.{layer}.mlp.{m}.weight" for m in ("fc", "proj")}

    def mlp(self, n: torch.Tensor, up_w, down_w, hook: Optional[ActivationHook]) -> torch.Tensor:
        # the fused kernel takes dense weights; int6 banks (evaluation from codes) keep bank_linear
        # (and a linear hook, e.g. TTT's LoRA, needs the plain matmuls)
        if hook is None and self.linear_hook is None and isinstance(up_w, torch.Tensor) \
                and isinstance(down_w, torch.Tensor) and self.fused.use_mlp(n):
            dt = compute_dtype(n)
            return leaky_relu_square_mlp(n.to(dt), up_w.to(dt), down_w.to(dt), self.cfg.leaky_slope)
        if hook is not None:
            hook(self.names["fc"], n)
        h = F.leaky_relu(_linear(self.linear_hook, self.names["fc"], n, up_w),
                         negative_slope=self.cfg.leaky_slope).square()
        if hook is not None:
            hook(self.names["proj"], h)
        return _linear(self.linear_hook, self.names["proj"], h, down_w)

    def attn_branch(self, x, x0, w, cu, ms, backend, hook):
        mix = self.resid_mix.to(x.dtype)
        x_in = mix[0] * x + mix[1] * x0
        a = self.attn(F.rms_norm(x_in, (x_in.shape[-1],)) * self.ln, *w[:4], cu, ms, backend, hook)
        return x_in, self.attn_scale.to(a.dtype) * a

    def mlp_branch(self, x, w, hook):
        m = self.mlp(F.rms_norm(x, (x.shape[-1],)) * self.ln, w[4], w[5], hook)
        return self.mlp_scale.to(m.dtype) * m

    def forward(self, x, x0, w, cu, ms, backend, hook):
        x_in, a = self.attn_branch(x, x0, w, cu, ms, backend, hook)
        x = x_in + a
        return x + self.mlp_branch(x, w, hook)


class GPT(nn.Module):
    """The record model; see the module docstring. ``looping_active`` switches depth recurrence on."""

    def __init__(self, cfg: ModelConfig, attention_backend: str = "auto") -> None:
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg: expected a ModelConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.attention_backend = attention_backend
        L, d = cfg.num_layers, cfg.model_dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        self.qo_bank = nn.Parameter(torch.empty(2 * L, d, d))
        self.kv_bank = nn.Parameter(torch.empty(2 * L, cfg.kv_dim, d))
        self.mlp_up_bank = nn.Parameter(torch.empty(L, cfg.hidden_dim, d))
        self.mlp_down_bank = nn.Parameter(torch.empty(L, d, cfg.hidden_dim))
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(L))
        self.num_encoder_layers = L // 2
        if cfg.num_loops > 0:
            seg = list(range(cfg.loop_start, cfg.loop_end + 1))
            order = list(range(cfg.loop_start)) + seg * (cfg.num_loops + 1) + list(range(cfg.loop_end + 1, L))
            self.encoder_indices = order[:len(order) // 2]
            self.decoder_indices = order[len(order) // 2:]
        else:
            self.encoder_indices = list(range(self.num_encoder_layers))
            self.decoder_indices = list(range(self.num_encoder_layers, L))
        self.num_skip_weights = min(len(self.encoder_indices), len(self.decoder_indices))
        self.skip_weights = nn.Parameter(torch.ones(self.num_skip_weights, d, dtype=torch.float32))
        if cfg.skip_gates:
            self.skip_gates = nn.Parameter(torch.zeros(self.num_skip_weights, d, dtype=torch.float32))
        if cfg.parallel_start_layer > 0:
            self.parallel_post_lambdas = nn.Parameter(torch.ones(L, 2, 2, dtype=torch.float32))
            self.parallel_resid_lambdas = nn.Parameter(torch.full((L, 2), 1.1, dtype=torch.float32))
        if cfg.smear_gate:
            self.smear_gate = nn.Linear(cfg.gate_window, 1, bias=False)
            self.smear_lambda = nn.Parameter(torch.zeros(1, dtype=torch.float32))
        self.looping_active = False
        self.int6_banks: Optional[nn.ModuleDict] = None
        self.fused_kernels = FusedKernels()
        """Where the fused CE and MLP kernels run (golf_fast.model.kernel_paths); default: on CUDA."""
        for blk in self.blocks:
            blk.fused = self.fused_kernels
        self.activation_hook: Optional[ActivationHook] = None
        self.linear_hook: Optional[LinearHook] = None
        """The output projection's hook (``EMBED_NAME``), set with the blocks' by :meth:`set_linear_hook`."""
        self.resolved_attention: Optional[str] = None
        if not self.qo_bank.is_meta:
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The record's init: tok_emb ~ N(0, 0.005); Wq, Wk, Wv, Wup orthogonal; Wo, Wdown zero; gates zero."""
        nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.cfg.tied_embed_init_std)
        L = self.cfg.num_layers
        for i in range(L):
            nn.init.orthogonal_(self.qo_bank[i], gain=1.0)
            nn.init.zeros_(self.qo_bank[L + i])
            nn.init.orthogonal_(self.kv_bank[i], gain=1.0)
            nn.init.orthogonal_(self.kv_bank[L + i], gain=1.0)
            nn.init.orthogonal_(self.mlp_up_bank[i], gain=1.0)
            nn.init.zeros_(self.mlp_down_bank[i])
        if self.cfg.smear_gate:
            nn.init.zeros_(self.smear_gate.weight)

    def set_linear_hook(self, hook: Optional[LinearHook]) -> None:
        """Route the six block matrices and the tied output projection (name ``EMBED_NAME``, before the
        softcap) through ``hook(name, x, w)`` (None: plain ``F.linear``)."""
        if hook is not None and not callable(hook):
            raise TypeError(f"hook: expected a callable (name, x, w) -> y or None, got {type(hook).__name__}")
        self.linear_hook = hook
        for blk in self.blocks:
            blk.linear_hook = hook
            blk.attn.linear_hook = hook

    def resolve_attention(self, device: torch.device) -> str:
        """Fix the attention backend for ``device`` (call before torch.compile: no lookups in the graph)."""
        self.resolved_attention = resolve_attention_backend(device, self.attention_backend)
        return self.resolved_attention

    # ------------------------------------------------------------------ helpers

    def bank_weights(self, i: int):
        """Layer i's (Wq, Wk, Wv, Wo, Wup, Wdown): bank slices, or Int6Matrix views of the int6 banks."""
        L = self.cfg.num_layers
        banks = self.int6_banks if self.int6_banks is not None else {n: getattr(self, n) for n in BANK_NAMES}
        return tuple(banks[bank][group * L + i] for _, bank, group in LAYER_MATRICES)

    def bank_shapes(self) -> dict[str, tuple[int, int, int]]:
        """(matrices, rows, cols) of each bank, from the config."""
        cfg, L, d = self.cfg, self.cfg.num_layers, self.cfg.model_dim
        return {"qo_bank": (2 * L, d, d), "kv_bank": (2 * L, cfg.kv_dim, d), "mlp_up_bank": (L, cfg.hidden_dim, d),
                "mlp_down_bank": (L, d, cfg.hidden_dim)}

    def use_int6_banks(self, banks: dict[str, Int6Bank], drop_float: bool = True) -> None:
        """Run the block matrices from int6 banks (name → :class:`Int6Bank`, one per ``BANK_NAMES``).

        The forward then multiplies straight from the packed codes (``golf_fast.int6_linear``).
        ``drop_float``: replace the float banks by empty tensors to free their memory
        (:meth:`unbanked_state_dict` then dequantizes the int6 matrices; :meth:`restore_float_banks`
        brings float banks back). The embedding stays dense (it is the LM head too).
        """
        if not isinstance(banks, dict) or set(banks) != set(BANK_NAMES):
            raise ValueError(f"banks: expected a dict with exactly the keys {BANK_NAMES}, got "
                             f"{sorted(banks) if isinstance(banks, dict) else type(banks).__name__}")
        for name in BANK_NAMES:
            b = banks[name]
            if not isinstance(b, Int6Bank):
                raise TypeError(f"banks[{name!r}]: expected an Int6Bank, got {type(b).__name__}")
            want = self.bank_shapes()[name]
            if (b.num_matrices, b.out_features, b.in_features) != want:
                raise ValueError(f"banks[{name!r}]: expected shape {want}, got "
                                 f"{(b.num_matrices, b.out_features, b.in_features)}")
        self.int6_banks = nn.ModuleDict(banks)
        if drop_float:
            for name in BANK_NAMES:
                getattr(self, name).data = torch.empty(0, dtype=getattr(self, name).dtype,
                                                       device=getattr(self, name).device)

    @torch.no_grad()
    def restore_float_banks(self) -> None:
        """Leave the int6 banks: the float banks become their dequantized matrices, ``code · s (+ A·B)``
        computed in fp32 and stored in the banks' dtype (for the features that train or read float
        weights: TTT, SLOT, phased SGD). A no-op on a model already running from float banks."""
        if not self.runs_from_int6:
            return
        banks = self.int6_banks
        for name in BANK_NAMES:
            old = getattr(self, name)
            dense = banks[name].dequantize(torch.float32)
            old.data = dense.to(device=old.device, dtype=old.dtype)
        self.int6_banks = None

    def _row_cu_seqlens(self, B: int, T: int, device) -> torch.Tensor:
        return torch.arange(0, (B + 1) * T, T, device=device, dtype=torch.int32)

    def _skip(self, x, skip, j):
        w = self.skip_weights[j].to(x.dtype)
        if self.cfg.skip_gates:
            return torch.lerp(w * skip, x, torch.sigmoid(self.skip_gates[j].to(x.dtype)))
        return x + w * skip

    def _parallel_block(self, i, lane0, lane1, x0, w, cu, ms, backend, hook):
        blk = self.blocks[i]
        _, a = blk.attn_branch(lane0, x0, w, cu, ms, backend, hook)
        m = blk.mlp_branch(lane1, w, hook)
        r = self.parallel_resid_lambdas[i].to(lane0.dtype)
        p = self.parallel_post_lambdas[i].to(lane0.dtype)
        return r[0] * lane0 + p[0, 0] * a + p[1, 0] * m, r[1] * lane1 + p[0, 1] * a + p[1, 1] * m

    # ------------------------------------------------------------------ forward

    def hidden(self, input_ids: torch.Tensor, cu_seqlens: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Final-normed hidden states (B, T, d) for ``input_ids`` (B, T).

        ``cu_seqlens`` (int32, over the flattened B·T buffer) isolates segments; None = each row is one.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids: expected (B, T) token ids, got shape {tuple(input_ids.shape)}")
        cfg, hook = self.cfg, self.activation_hook
        B, T = input_ids.shape
        if cu_seqlens is None:  # each row is one segment of T tokens, whatever cfg.max_seqlen says
            cu_seqlens = self._row_cu_seqlens(B, T, input_ids.device)
            ms = T
        else:
            ms = min(cfg.max_seqlen, B * T) if B == 1 else min(cfg.max_seqlen, T)
        backend = self.resolved_attention or resolve_attention_backend(input_ids.device, self.attention_backend)
        x = self.tok_emb(input_ids)
        if cfg.smear_gate:
            g = self.smear_lambda.to(x.dtype) * torch.sigmoid(
                F.linear(x[:, 1:, :cfg.gate_window].contiguous(), self.smear_gate.weight.to(x.dtype)))
            not_bos = (input_ids[:, 1:] != cfg.bos_id).to(x.dtype).unsqueeze(-1)
            x = torch.cat([x[:, :1], x[:, 1:] + g * x[:, :-1] * not_bos], dim=1)
        x = F.rms_norm(x, (x.shape[-1],))
        x0 = x
        loop = self.looping_active and cfg.num_loops > 0
        enc = self.encoder_indices if loop else range(self.num_encoder_layers)
        dec = self.decoder_indices if loop else range(self.num_encoder_layers, cfg.num_layers)
        skips = []
        for i in enc:
            x = self.blocks[i](x, x0, self.bank_weights(i), cu_seqlens, ms, backend, hook)
            skips.append(x)
        psl = cfg.parallel_start_layer
        lane0 = lane1 = None
        for j, i in enumerate(dec):
            w = self.bank_weights(i)
            if psl > 0 and i >= psl:
                if lane0 is None:
                    lane0 = lane1 = x
                if j < self.num_skip_weights and skips:
                    lane0 = self._skip(lane0, skips.pop(), j)
                lane0, lane1 = self._parallel_block(i, lane0, lane1, x0, w, cu_seqlens, ms, backend, hook)
            else:
                if j < self.num_skip_weights and skips:
                    x = self._skip(x, skips.pop(), j)
                x = self.blocks[i](x, x0, w, cu_seqlens, ms, backend, hook)
        if lane0 is not None:
            lane = cfg.parallel_final_lane
            x = lane0 if lane == "attn" else lane1 if lane == "mlp" else 0.5 * (lane0 + lane1)
        x = F.rms_norm(x, (x.shape[-1],))
        if hook is not None:
            hook(EMBED_NAME, x)
        return x

    def logits(self, input_ids: torch.Tensor, cu_seqlens: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Softcapped logits (B, T, V) in the compute dtype."""
        z = self.head(self.hidden(input_ids, cu_seqlens), input_ids)
        c = self.cfg.logit_softcap
        return c * torch.tanh(z / c)

    def head(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Pre-softcap logits (B, T, V): the tied embedding applied to the final hidden states (through
        the linear hook when one is set: the TTT adapters' ``lm_head`` LoRA)."""
        w = self.tok_emb.weight.to(self.dtype_for(input_ids))
        if self.linear_hook is not None:
            return self.linear_hook(EMBED_NAME, hidden, w)
        return F.linear(hidden, w)

    def dtype_for(self, input_ids: torch.Tensor) -> torch.dtype:
        if torch.is_autocast_enabled(input_ids.device.type):
            return torch.get_autocast_dtype(input_ids.device.type)
        return self.tok_emb.weight.dtype

    def forward(self, input_ids: torch.Tensor, target_ids: torch.Tensor, cu_seqlens: Optional[torch.Tensor] = None,
                reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy (nats) of ``target_ids`` under the softcapped logits, computed in fp32.

        ``reduction="mean"``: a scalar; ``"none"``: (B, T) per-token losses.
        """
        if target_ids.shape != input_ids.shape:
            raise ValueError(f"target_ids: shape {tuple(target_ids.shape)} must equal input_ids {tuple(input_ids.shape)}")
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction: expected 'mean' or 'none', got {reduction!r}")
        fk = self.fused_kernels
        if torch.is_grad_enabled() and fk.use(fk.cross_entropy, input_ids):
            z = self.head(self.hidden(input_ids, cu_seqlens), input_ids)
            return softcapped_cross_entropy(z, target_ids, self.cfg.logit_softcap, reduction)
        logits = self.logits(input_ids, cu_seqlens).float()
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), target_ids.reshape(-1), reduction=reduction)
        return loss if reduction == "mean" else loss.view(target_ids.shape)

    # ------------------------------------------------------------------ banks ↔ per-layer matrices

    @property
    def runs_from_int6(self) -> bool:
        """True when the block matrices run from int6 banks (:meth:`use_int6_banks`)."""
        return self.int6_banks is not None

    def unbanked_state_dict(self) -> dict[str, torch.Tensor]:
        """The state with banks split into per-layer matrices named like the record's un-banked model.

        A model running from int6 banks gives its block matrices dequantized, ``code · s (+ A·B)``
        in fp32 (:meth:`golf_fast.nn.Int6Matrix.dequantize`): the weights its forward multiplies by,
        made dense one matrix at a time (the float banks it may have dropped are never read).
        """
        L = self.cfg.num_layers
        out: dict[str, torch.Tensor] = {}
        for name, t in self.state_dict().items():
            if name in BANK_NAMES or name.startswith("int6_banks."):
                continue
            out[name] = t
        for i in range(L):
            for (m, _, _), w in zip(LAYER_MATRICES, self.bank_weights(i)):
                w = w.dequantize(torch.float32) if self.runs_from_int6 else w
                out[f"blocks.{i}.{m}.weight"] = w.detach()
        return out

    @torch.no_grad()
    def load_unbanked_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`unbanked_state_dict` (missing or unexpected names are an error)."""
        expected = set(self.unbanked_state_dict())
        got = set(state)
        if expected != got:
            raise KeyError(f"state: missing {sorted(expected - got)[:5]}, unexpected {sorted(got - expected)[:5]}")
        banked = bank_matrix_names(self.cfg.num_layers)
        for bank, names in banked.items():
            for slot, name in enumerate(names):
                getattr(self, bank)[slot].copy_(state[name])
        matrices = {n for names in banked.values() for n in names}
        rest = {k: v for k, v in state.items() if k not in matrices}
        missing, unexpected = self.load_state_dict(rest, strict=False)
        missing = [m for m in missing if m not in BANK_NAMES]
        if missing or unexpected:
            raise KeyError(f"state: missing {missing[:5]}, unexpected {unexpected[:5]}")

    def matrix_names(self) -> list[str]:
        """Names of the matrices GPTQ quantizes: the 6 per layer plus the tied embedding."""
        return [EMBED_NAME] + [f"blocks.{i}.{m}.weight" for i in range(self.cfg.num_layers)
                               for m, _, _ in LAYER_MATRICES]
