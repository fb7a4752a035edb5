"""The post-training part of ``golf-fast gpu-check``: Hessians → GPTQ → artifact at the record's shapes.

``python -m golf_fast.tools.gpu_check.pipeline [--batches 16] [--smoke]``

On one GPU: the record model (``preset("record")``, random weights), ``--batches`` calibration
batches of one rank's training shape (the record's 98,304 tokens on each of 8 GPUs) through the
trainer's own :func:`golf_fast.train.posttrain.collect_hessians` (bf16 autocast), then
:func:`~golf_fast.train.posttrain.quantize` (GPTQ of every matrix on this GPU: on 8 ranks each
runs about an eighth of them) and :func:`~golf_fast.train.posttrain.write_artifact`. Prints the
seconds of each phase and the artifact's size. ``--smoke``: the smoke model on the CPU.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch

from golf_fast.data.loader import Batch, cu_seqlens_from_bos
from golf_fast.model.gpt import GPT
from golf_fast.train.config import preset
from golf_fast.train.posttrain import collect_hessians, quantize, write_artifact


def calibration_batches(cfg, n: int, tokens: int, device: torch.device, seed: int = 0) -> list[Batch]:
    """``n`` packed batches of ``tokens`` random tokens with a BOS every 600 (documents)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randint(4, cfg.model.vocab_size, (1, tokens + 1), generator=g)
        x[0, ::600] = cfg.model.bos_id
        cu = torch.from_numpy(cu_seqlens_from_bos(x[0, :-1].numpy(), cfg.model.bos_id, cfg.model.max_seqlen))
        out.append(Batch(x[:, :-1].clone(), x[:, 1:].clone(), cu, cfg.model.max_seqlen).to(device))
    return out


def run_pipeline(batches: int = 16, smoke: bool = False) -> int:
    """Hessians → GPTQ → artifact at the record's shapes on the GPU (``smoke``, or no GPU: the smoke
    model on the CPU), timings printed as one JSON line. ``batches``: calibration batches (record: 16)."""
    if not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches: expected an int >= 1, got {batches!r}")
    a_batches = batches
    smoke = smoke or not torch.cuda.is_available()
    device = torch.device("cpu" if smoke else "cuda")
    cfg = preset("smoke" if smoke else "record")
    tokens = 1024 if smoke else 98_304
    n = min(a_batches, 2) if smoke else a_batches
    torch.manual_seed(0)
    model = GPT(cfg.model).to(device)
    model.resolve_attention(device)
    model.looping_active = cfg.model.num_loops > 0
    batches = calibration_batches(cfg, n, tokens, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else contextlib.nullcontext
    phases = {}
    t0 = time.perf_counter()
    hessians = collect_hessians(model, batches, n, autocast)
    sync()
    phases["hessians_s"] = time.perf_counter() - t0
    tensors, phases["gptq_s"], table = quantize(model, hessians)
    print(table)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        size = write_artifact(Path(tmp) / "model.gfa", tensors, cfg.model, metadata={"gpu_check": True})
        phases["artifact_write_s"] = time.perf_counter() - t0
    print(json.dumps({"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                      "model": "smoke" if smoke else "record", "calibration": f"{n} x {tokens} tokens",
                      "matrices": len(model.matrix_names()), "artifact_bytes": size,
                      **{k: round(v, 3) for k, v in phases.items()}}))
    return 0

