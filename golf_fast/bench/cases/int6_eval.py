"""Benchmark of evaluation from int6 codes: the model's forward with int6 banks vs dequantized banks.

The record model (GPU) or the smoke-sized model (CPU) with random weights quantized to int6
(round to nearest, SDClip scales); one forward (``GPT.logits``) under bf16 autocast:

* ours: the block matrices as :class:`golf_fast.nn.Int6Bank` (``golf_fast.int6_linear`` from the
  packed codes: the fused kernel on CUDA);
* ``vs eager``: the same model with dequantized float banks (``F.linear`` on bf16 weights, what
  evaluation did before);
* ``vs torch.compile``: the dequantized model under ``torch.compile(dynamic=False)``.

Shapes: M = 1 × 2048 tokens (one TTT chunk / one sequence) and 8 × 2048 (an eval batch).
Counts: FLOPs of the six block matrices ``2·M·Σ N·K`` per layer visit; bytes: the block weights
once at 0.75 byte each (ours; 2 bytes for the baselines) plus the activations.

Prediction (H100; not measured): at M ≥ 2048 every block matmul is compute-bound (M·N·K ≥ 0.5
GFLOP against 0.2–0.8 MB of weights), so the int6 GEMM (dequantization in registers, wgmma) is
predicted at 0.8–1.0× cuBLAS bf16 per matmul; the model's forward is dominated by attention and
elementwise work, so the int6 forward is predicted within ±10% of the dequantized eager one, and
behind torch.compile (which fuses the elementwise work) by what compile saves there. What int6
buys in evaluation is memory (0.75 vs 2 bytes per weight: the record's 31.7M block weights take
23.8 MB instead of 63.4 MB in bf16) and no dequantization pass; the speed win is at small M
(``int6_matmul`` benchmark, M ≤ 16).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from golf_fast.bench.case import Benchmark, BenchCase
from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT
from golf_fast.nn.int6_bank import Int6Bank
from golf_fast.quant.formats import quantize_rtn
from golf_fast.quant.recipe import RECORD_RECIPE
from golf_fast.train.config import preset


def _models(cfg: ModelConfig, dev: torch.device) -> tuple[GPT, GPT]:
    torch.manual_seed(0)
    deq = GPT(cfg)
    with torch.no_grad():
        for p in deq.parameters():
            p.add_(0.02 * torch.randn_like(p))
        banks = {}
        for name, bank in (("qo_bank", deq.qo_bank), ("kv_bank", deq.kv_bank), ("mlp_up_bank", deq.mlp_up_bank),
                           ("mlp_down_bank", deq.mlp_down_bank)):
            qs = [quantize_rtn(w, 6, RECORD_RECIPE.default_clip_sigmas) for w in bank]
            banks[name] = Int6Bank.from_quantized([q.codes for q in qs], [q.scales for q in qs])
            bank.copy_(torch.stack([q.dequantize() for q in qs]))
    int6 = GPT(cfg)
    int6.load_state_dict(deq.state_dict())
    int6.use_int6_banks(banks)
    for m in (deq, int6):
        m.to(dev).eval()
        m.looping_active = True
        m.resolve_attention(dev)
    return int6, deq


@lru_cache(maxsize=None)
def _compiled(model: GPT):
    return torch.compile(model.logits, dynamic=False)


def _forward(model, compiled=False):
    def run(inputs):
        ids, dev = inputs[2], inputs[3]
        fn = _compiled(model) if compiled else model.logits
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
            return fn(ids)
    return run


def _case(cfg: ModelConfig, rows: int, seq: int, baseline: str) -> BenchCase:
    L, d, kv, h = cfg.num_layers, cfg.model_dim, cfg.kv_dim, cfg.hidden_dim
    visits = L + (cfg.loop_end - cfg.loop_start + 1) * cfg.num_loops
    per_layer = d * d * 2 + kv * d * 2 + 2 * h * d
    m = rows * seq
    flops = 2.0 * m * per_layer * visits
    moved = 0.75 * per_layer * L + 2.0 * m * d * 6 * visits

    def make(dev):
        int6, deq = _models(cfg, dev)
        ids = torch.randint(2, cfg.vocab_size, (rows, seq), device=dev)
        return int6, deq, ids, dev

    def ours(inputs):
        return _forward(inputs[0])(inputs)

    def base(inputs):
        return _forward(inputs[1], compiled=baseline == "torch.compile")(inputs)

    return BenchCase(f"{rows}x{seq} tokens vs {baseline}", make, ours, base, flops=flops, bytes_moved=moved,
                     baseline={"eager": "dequantized bf16 banks, eager",
                               "torch.compile": "dequantized bf16 banks, torch.compile"}[baseline])


def _cases(device: torch.device) -> list[BenchCase]:
    if device.type == "cuda":
        cfg, shapes = ModelConfig(), ((1, 2048), (8, 2048))
    else:
        cfg, shapes = preset("smoke").model, ((1, 256),)
    return [_case(cfg, r, t, b) for r, t in shapes for b in ("eager", "torch.compile")]


BENCHMARK = Benchmark(
    name="int6_eval",
    cases=_cases,
    description="model forward (logits) with int6 banks vs dequantized bf16 banks, eager and torch.compile",
    notes=["predicted on H100 (not measured): int6 forward within +-10% of the dequantized eager forward at "
           "M >= 2048; the int6 gain is memory and no dequantization pass, the speed gain is at M <= 16",
           "on CPU int6_linear runs its eager reference: CPU rows time PyTorch, not the kernel"],
)
