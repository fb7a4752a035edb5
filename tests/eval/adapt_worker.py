"""Worker for the multi-process test: every adaptive mode on the tiny model, results as JSON.

``torchrun --nproc_per_node=N adapt_worker.py OUT.json`` (gloo), or :func:`run_modes` in-process.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from adapt_helpers import byte_table, tiny_config, tiny_model, tiny_stream  # noqa: E402

from golf_fast.eval.adapt.run import run_adaptive  # noqa: E402

MODES = {"lora": dict(ttt="lora"), "phased": dict(ttt="phased"), "adamw": dict(ttt="adamw"),
         "slot": dict(slot="causal"), "lora_slot": dict(ttt="lora", slot="causal"), "none": dict()}


def run_modes(rank: int, world: int) -> dict:
    torch.set_num_threads(1)
    out = {}
    for i, (name, kw) in enumerate(MODES.items()):
        model = tiny_model(40 + i)
        res = run_adaptive(model, tiny_stream(40 + i), byte_table(), tiny_config(**kw), rank=rank, world_size=world)
        out[name] = {"val_bpb": res.result.val_bpb, "tokens": res.result.tokens, "flag": res.flag,
                     "events": res.compliance.stats}
    return out


def main(path: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        out = run_modes(rank, world)
        if rank == 0:
            Path(path).write_text(json.dumps({"world": world, "modes": out}))
        dist.barrier()  # no rank tears the group down while another still talks to it
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main(sys.argv[1])
    # The result is written and the group destroyed: skip interpreter finalization, where gloo's worker
    # threads can still abort the process ("terminate called without an active exception", SIGABRT; seen
    # once in CI, see pytorch/pytorch#179291) after the work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
