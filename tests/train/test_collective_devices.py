"""Every collective of a training run (train, quant, eval, optim) reaches torch.distributed on the process
group's device, checked with the recording fake process group of tests/fake_group.py."""

import random

import pytest
import torch
import torch.distributed as dist

from fake_group import FAKE_GROUP_DEVICE, install
from golf_fast import distributed
from golf_fast.data.build import build_dataset
from golf_fast.distributed import Dist
from golf_fast.train.config import apply_overrides, preset
from golf_fast.train.loop import run
from tiny_run import WALLCLOCK_TINY

WORDS = "the cat sat on a mat and a dog ran to the log while fox jumps over lazy hens".split()


def test_the_recorder_catches_a_collective_that_bypasses_the_module(monkeypatch):
    rec = install(monkeypatch, world=2)
    t = torch.tensor([1.5, -2.0])
    distributed.all_reduce(t, "sum")  # placed on the group's device, reduced, copied back
    assert torch.equal(t, torch.tensor([3.0, -4.0]))
    assert rec.violations() == [] and rec.calls[-1].source_devices == ["cpu"]
    dist.all_reduce(torch.ones(2))  # straight to torch.distributed with a CPU tensor: the NCCL bug
    assert len(rec.violations()) == 1 and rec.violations()[0].caller == __name__
    w = distributed.all_reduce(torch.ones(3), "max", async_op=True)
    assert w.wait()
    assert distributed.group_device() == FAKE_GROUP_DEVICE


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    rng = random.Random(12)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(200)]
    return build_dataset(docs, tmp_path_factory.mktemp("data") / "tiny", vocab_size=320, val_docs=20,
                         progress=lambda s: None)


TINY = WALLCLOCK_TINY


def test_every_collective_of_a_run_is_on_the_group_device(data_dir, tmp_path, monkeypatch, capsys):
    """rank 0 of a (fake) 2-rank run under the wallclock clock with GPTQ, artifact and round-trip eval."""
    rec = install(monkeypatch, world=2, rank=0)
    cfg = apply_overrides(preset("smoke"), {**TINY, "data.data_dir": str(data_dir), "run.out_dir": str(tmp_path),
                                            "run.name": "fake2"})
    res = run(cfg, Dist(rank=0, world=2, local_rank=0, device=torch.device("cpu")))
    assert res.steps >= 1 and res.round_trip is not None
    with capsys.disabled():
        print("\n" + rec.table())
    assert rec.violations() == [], rec.table()
    callers = {c.caller.split(".")[1] for c in rec.calls if c.caller.startswith("golf_fast.")}
    # the clock (train), the packed gradient all-reduce (train), Parallel Muon (optim), the Hessian
    # sums and the GPTQ gather (quant), the val_bpb sums (eval)
    assert {"train", "optim", "quant", "eval"} <= callers, rec.table()
    kinds = {(c.collective, c.caller) for c in rec.calls}
    assert ("reduce_scatter_tensor", "golf_fast.optim.comm") in kinds
    assert ("all_gather_into_tensor", "golf_fast.optim.comm") in kinds
    assert ("all_reduce", "golf_fast.train.schedule") in kinds  # the wallclock clock's max over ranks
    assert ("all_reduce", "golf_fast.quant.hessian") in kinds
    assert ("broadcast", "golf_fast.quant.quantize_model") in kinds
