"""golf_fast.distributed's tensor collectives of Parallel Muon (reduce-scatter, all-gather into a tensor) and
the cross-rank string check: one process, and the staging path through the recording fake group."""

import pytest
import torch

from fake_group import install
from golf_fast import distributed


def test_one_process_tensor_collectives_copy(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    g = torch.Generator().manual_seed(4501)
    inp = torch.randn(3, 4, generator=g)
    out = torch.empty(3, 4)
    assert distributed.reduce_scatter_tensor(out, inp) is out and torch.equal(out, inp)
    out2 = torch.empty(3, 4)
    assert distributed.all_gather_into_tensor(out2, inp, async_op=True).wait() and torch.equal(out2, inp)
    distributed.check_same_str("anything", "what")
    assert distributed.backend_name() == ""
    with pytest.raises(ValueError, match="inp: expected shape"):
        distributed.reduce_scatter_tensor(torch.empty(2, 4), inp)
    with pytest.raises(ValueError, match="out: expected shape"):
        distributed.all_gather_into_tensor(torch.empty(4, 4), inp)
    with pytest.raises(TypeError, match="text"):
        distributed.check_same_str(3, "what")


def test_staged_async_collectives_complete_at_wait(monkeypatch):
    rec = install(monkeypatch, world=2, rank=1)
    g = torch.Generator().manual_seed(4502)
    inp = torch.randn(4, 3, generator=g)
    out = torch.zeros(2, 3)
    work = distributed.reduce_scatter_tensor(out, inp, "sum", async_op=True)
    assert torch.equal(out, torch.zeros(2, 3))  # a staged result is copied back at wait()
    work.wait()
    assert torch.equal(out, 2 * inp[2:])  # rank 1's rows, summed over 2 (mirror) ranks
    full = torch.zeros(4, 3)
    distributed.all_gather_into_tensor(full, out, async_op=True).wait()
    assert torch.equal(full, torch.cat([out, out]))
    assert rec.violations() == [] and {c.collective for c in rec.calls} == {
        "reduce_scatter_tensor", "all_gather_into_tensor"}
    rec0 = install(monkeypatch, world=2, rank=0)  # rank 0 broadcasts its text; the mirror rank holds the same
    distributed.check_same_str("same", "what")
    assert rec0.violations() == [] and {c.collective for c in rec0.calls} == {"broadcast", "all_reduce"}
