"""Hessians summed across ranks and GPTQ split across ranks: two gloo processes given the same global
calibration data write an artifact byte-identical to the one-process run."""

import hashlib

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from golf_fast.data.loader import Batch
from golf_fast.model.config import ModelConfig
from golf_fast.quant import QuantizedTensor
from golf_fast.train.posttrain import collect_hessians, quantize, write_artifact
from model_factories import randomized_gpt

CFG = ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, loop_start=0,
                  loop_end=0, num_loops=0, parallel_start_layer=0, max_seqlen=16, rope_dims=8, xsa_last_n=0)
WORLD = 2
BATCHES_PER_RANK = 1


def _global_batches() -> list:
    """The global calibration data: rank r of world w reads batches r, r + w, ... (one each here)."""
    g = torch.Generator().manual_seed(71)
    out = []
    for _ in range(WORLD * BATCHES_PER_RANK):
        s = torch.randint(2, 64, (17,), generator=g)
        s[0] = 1
        out.append(Batch(s[None, :-1].clone(), s[None, 1:].clone(), torch.tensor([0, 16], dtype=torch.int32), 16))
    return out


def _digest(tensors: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        v = tensors[k]
        parts = (v.codes, v.scales) if isinstance(v, QuantizedTensor) else (v,)
        h.update(k.encode())
        for t in parts:
            h.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _pipeline(rank: int, world: int, out_dir: str) -> None:
    model = randomized_gpt(CFG, 72)
    mine = _global_batches()[rank::world]
    hessians = collect_hessians(model, mine, len(mine))
    tensors, _, table = quantize(model, hessians)
    with open(f"{out_dir}/digest_w{world}_r{rank}.txt", "w") as f:
        f.write(_digest(tensors))
    with open(f"{out_dir}/table_w{world}_r{rank}.txt", "w") as f:
        f.write(table)
    if rank == 0:
        write_artifact(f"{out_dir}/w{world}.gfa", tensors, CFG, metadata={"calibration_batches": 2})


def _worker(rank: int, world: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        _pipeline(rank, world, out_dir)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_write_the_one_process_artifact_byte_for_byte(tmp_path):
    torch.set_num_threads(1)
    _pipeline(0, 1, str(tmp_path))
    mp.spawn(_worker, args=(WORLD, str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    one, two = (tmp_path / "w1.gfa").read_bytes(), (tmp_path / f"w{WORLD}.gfa").read_bytes()
    assert len(one) > 1000 and one == two
    digests = {(tmp_path / f"digest_w{WORLD}_r{r}.txt").read_text() for r in range(WORLD)}
    assert digests == {(tmp_path / "digest_w1_r0.txt").read_text()}  # every rank holds the same model
    # the matrices really were split: the table's rank column (last) names both ranks
    rows = [ln.split() for ln in (tmp_path / f"table_w{WORLD}_r0.txt").read_text().splitlines()]
    ranks = {r[-1] for r in rows if r and r[0].endswith(".weight")}
    assert ranks == {"0", "1"}


def test_the_hessians_of_half_the_data_differ(tmp_path):
    """Control: without the cross-rank sum, rank 0's own Hessians (half the data) give another model."""
    torch.set_num_threads(1)
    model = randomized_gpt(CFG, 72)
    batches = _global_batches()
    full, _, _ = quantize(model, collect_hessians(model, batches, len(batches)))
    half, _, _ = quantize(model, collect_hessians(model, batches[:1], 1))
    assert _digest(full) != _digest(half)
