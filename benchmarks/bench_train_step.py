"""pytest-benchmark: one training step of the trainer (run with `pytest benchmarks/bench_train_step.py`).

* CPU: the ``smoke`` model (6 layers, d=128, 4,096 tokens per step), eager — CPU timings.
* CUDA: the record model (R0611, 98,304 tokens per step on one GPU): ``ours`` = torch.compile +
  the package's kernels (Muon's Newton-Schulz kernel, the fused softcapped CE and LeakyReLU² MLP,
  FA3/FA2 when installed) against ``compiled`` = torch.compile of the same model without
  golf_fast's kernels (reference Newton-Schulz, eager CE and MLP code) and ``eager`` = that model
  in eager PyTorch.

A step = forward + backward + gradient clipping + optimizer step, on a synthetic packed batch
(random tokens, a BOS every ~600 tokens). ``extra_info`` has ms/step and tokens/s.
"""

from __future__ import annotations

import time

import pytest
import torch

from golf_fast.data.loader import cu_seqlens_from_bos
from golf_fast.model.gpt import GPT
from golf_fast.train.config import preset
from golf_fast.train.optimizers import build_optimizers, clip_grad_norm

CUDA = torch.cuda.is_available()


def _muon_available() -> bool:
    try:
        from golf_fast.optim import Muon  # noqa: F401
        return True
    except ImportError:
        return False


def _setup(impl: str):
    cfg = preset("h100x1" if CUDA else "smoke")
    device = torch.device("cuda" if CUDA else "cpu")
    if not _muon_available():
        cfg.optim.matrix_optimizer = "adam"
    torch.manual_seed(0)
    model = GPT(cfg.model).to(device)
    model.resolve_attention(device)
    opt = build_optimizers(model, cfg.optim, distributed=False)
    if impl != "ours":
        model.fused_kernels.cross_entropy = model.fused_kernels.mlp = "never"
    if impl != "ours" and cfg.optim.matrix_optimizer == "muon":
        for o in opt.optimizers:
            if type(o).__name__ == "Muon":
                o.defaults["backend"] = "reference"
                for g in o.param_groups:
                    g["backend"] = "reference"
    fwd = torch.compile(model, dynamic=False, fullgraph=True) if (CUDA and impl != "eager") else model
    T = cfg.data.train_batch_tokens
    x = torch.randint(4, cfg.model.vocab_size, (1, T))
    x[0, ::600] = cfg.model.bos_id
    cu = torch.from_numpy(cu_seqlens_from_bos(x[0].numpy(), cfg.model.bos_id, cfg.model.max_seqlen)).to(device)
    x = x.to(device)
    y = torch.roll(x, -1, 1)
    params = list(model.parameters())
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if CUDA else torch.autocast("cpu", enabled=False)

    def step():
        with amp:
            loss = fwd(x, y, cu)
        loss.backward()
        clip_grad_norm(params, cfg.optim.grad_clip)
        opt.step()
        opt.zero_grad()
        if CUDA:
            torch.cuda.synchronize()

    return step, T


@pytest.mark.parametrize("impl", ["ours", "compiled", "eager"] if CUDA else ["ours"])
def test_train_step(benchmark, impl):
    step, tokens = _setup(impl)
    for _ in range(3 if CUDA else 1):  # compile / warm-up
        step()
    t0 = time.perf_counter()
    benchmark.pedantic(step, rounds=10 if CUDA else 3, iterations=1)
    ms = 1000 * benchmark.stats.stats.mean
    benchmark.extra_info.update(ms_per_step=round(ms, 2), tokens_per_s=round(tokens / (ms / 1000)),
                                device=torch.cuda.get_device_name() if CUDA else "cpu", tokens=tokens,
                                wall_s=round(time.perf_counter() - t0, 1))
