"""Run under ``torchrun --nproc_per_node=2`` (gloo, CPU) by test_parallel_muon.py.

Every rank builds the same parameters, draws every rank's gradients from fixed seeds, and runs
Parallel Muon on its own gradients; rank 0 also runs single-process Muon on the mean gradients
and writes the largest parameter difference per reduce-scatter mode to the JSON file argv[1].
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

from golf_fast.optim import CommConfig, Muon

SHAPES = [(3, 16, 24), (2, 8, 24), (5, 40, 16), (12, 20)]  # banks padded 3→4, 2→2, 5→6; a 2-D matrix
STEPS = 4


def grads(step: int, rank: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 * step + rank)
    return [torch.randn(s, generator=gen) for s in SHAPES]


def make_params() -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(7)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]


def options() -> dict:
    return dict(lr=0.05, momentum=0.95, momentum_warmup_start=0.85, momentum_warmup_steps=3, weight_decay=0.1,
                row_normalize=True)


def main() -> None:
    out_path = sys.argv[1]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    result = {"world": world}
    for mode in ("native", "all_reduce"):
        params = make_params()
        opt = Muon(params, distributed=True, comm_config=CommConfig(reduce_scatter=mode), **options())
        ref_params = make_params()
        ref = Muon(ref_params, **options())
        for step in range(STEPS):
            for p, g in zip(params, grads(step, rank)):
                p.grad = g
            opt.step()
            per_rank = [grads(step, r) for r in range(world)]
            for i, p in enumerate(ref_params):
                p.grad = sum(g[i] for g in per_rank) / world
            ref.step()
        diff = max(float((p - q).detach().abs().max()) for p, q in zip(params, ref_params))
        moved = min(float((p - q).detach().abs().max()) for p, q in zip(params, make_params()))
        # every rank must hold identical parameters
        flat = torch.cat([p.detach().flatten() for p in params])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        same = all(torch.equal(gathered[0], t) for t in gathered)
        result[mode] = {"max_abs_diff": diff, "min_param_change": moved, "ranks_identical": same}
    if rank == 0:
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    dist.barrier()  # no rank tears the group down while another still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
