"""A small parameter-golf style training script, written the way competitors write theirs.

GPT (tied embeddings, RMSNorm, rotary attention, LeakyReLU(0.5)² MLP, logit softcap 30), Muon with
the baseline's quintic Newton-Schulz for the matrices and Adam for the rest, bf16 autocast. It
trains on a synthetic token stream (a fixed random bigram process) so it runs anywhere on a CPU.

``train_swapped.py`` is this file with golf_fast's kernels swapped in; diff the two to see the
swap (tests/examples/test_swap_guide.py checks that the diff is only those lines, and that both
scripts train to the same losses).

    python examples/train_peer.py --steps 20
"""

from __future__ import annotations

import argparse
import json
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ----------------------------------------------------------------------------- Muon

def zeropower_via_newtonschulz5(G: Tensor, steps: int = 10, eps: float = 1e-7) -> Tensor:
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16()
    X /= X.norm() + eps
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if transposed else X


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, backend_steps: int, nesterov: bool = True):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(g)
                if group["nesterov"]:
                    g = g.add(buf, alpha=group["momentum"])
                g = zeropower_via_newtonschulz5(g, steps=group["backend_steps"])
                g = g * max(1, g.size(0) / g.size(1)) ** 0.5
                p.add_(g.to(p.dtype), alpha=-group["lr"])


# ----------------------------------------------------------------------------- model

class CastedLinear(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype))


class Rotary(nn.Module):
    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)), persistent=False)

    def forward(self, seq_len: int) -> tuple[Tensor, Tensor]:
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), self.inv_freq)
        return freqs.cos()[None, None], freqs.sin()[None, None]


def apply_rotary_emb(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos), dim=-1).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = CastedLinear(dim, 3 * dim, bias=False)
        self.proj = CastedLinear(dim, dim, bias=False)
        self.rotary = Rotary(dim // num_heads)

    def forward(self, x: Tensor) -> Tensor:
        bsz, seqlen, dim = x.shape
        q, k, v = self.qkv(x).view(bsz, seqlen, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        cos, sin = self.rotary(seqlen)
        q, k = apply_rotary_emb(q, cos, sin), apply_rotary_emb(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(bsz, seqlen, dim))


class MLP(nn.Module):
    def __init__(self, dim: int, mlp_mult: int):
        super().__init__()
        self.fc = CastedLinear(dim, mlp_mult * dim, bias=False)
        self.proj = CastedLinear(mlp_mult * dim, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.leaky_relu(self.fc(x), negative_slope=0.5).square())


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_mult: int):
        super().__init__()
        self.attn = CausalSelfAttention(dim, num_heads)
        self.mlp = MLP(dim, mlp_mult)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(F.rms_norm(x, (x.size(-1),)))
        return x + self.mlp(F.rms_norm(x, (x.size(-1),)))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, num_layers: int, dim: int, num_heads: int, mlp_mult: int,
                 logit_softcap: float):
        super().__init__()
        self.logit_softcap = logit_softcap
        self.tok_emb = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.tok_emb.weight, std=0.02)
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_mult) for _ in range(num_layers)])

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        x = F.rms_norm(self.tok_emb(input_ids), (self.tok_emb.embedding_dim,))
        for block in self.blocks:
            x = block(x)
        x = F.rms_norm(x, (x.size(-1),)).reshape(-1, x.size(-1))
        logits_proj = F.linear(x, self.tok_emb.weight)
        targets = target_ids.reshape(-1)
        logits = self.logit_softcap * torch.tanh(logits_proj / self.logit_softcap)
        return F.cross_entropy(logits.float(), targets, reduction="mean")


# ----------------------------------------------------------------------------- data and training

def synthetic_batch(step: int, batch: int, seq_len: int, vocab: int) -> tuple[Tensor, Tensor]:
    """Tokens of a fixed random bigram process (seeded per step: both scripts see the same data)."""
    gen = torch.Generator().manual_seed(1000 + step)
    table = torch.Generator().manual_seed(7)
    next_tok = torch.randint(0, vocab, (vocab, 4), generator=table)  # each token has 4 likely successors
    toks = torch.empty(batch, seq_len + 1, dtype=torch.int64)
    toks[:, 0] = torch.randint(0, vocab, (batch,), generator=gen)
    for i in range(seq_len):
        choice = torch.randint(0, 4, (batch,), generator=gen)
        noise = torch.randint(0, vocab, (batch,), generator=gen)
        keep = torch.rand(batch, generator=gen) < 0.9
        toks[:, i + 1] = torch.where(keep, next_tok[toks[:, i], choice], noise)
    return toks[:, :-1], toks[:, 1:]


def train(steps: int = 20, seed: int = 1337, vocab: int = 256, num_layers: int = 2, dim: int = 64,
          num_heads: int = 4, mlp_mult: int = 4, batch: int = 8, seq_len: int = 64) -> list[float]:
    """Train for ``steps`` steps on the CPU; returns the training loss of every step."""
    torch.manual_seed(seed)
    model = GPT(vocab, num_layers, dim, num_heads, mlp_mult, logit_softcap=30.0)
    matrices = [p for n, p in model.blocks.named_parameters() if p.ndim == 2]
    others = [model.tok_emb.weight]
    muon = Muon(matrices, lr=0.04, momentum=0.95, backend_steps=5)
    adam = torch.optim.Adam(others, lr=0.05, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for step in range(steps):
        x, y = synthetic_batch(step, batch, seq_len, vocab)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            loss = model(x, y)
        loss.backward()
        for opt in (muon, adam):
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    losses = train(args.steps, args.seed)
    assert all(math.isfinite(v) for v in losses)
    print(json.dumps({"losses": losses}))


if __name__ == "__main__":
    main()
