"""Parallel Muon: two gloo ranks under torchrun equal single-process Muon; the overlap schedule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from conftest import requires_torchrun
from golf_fast.optim import CommConfig, Muon, comm
from golf_fast.optim import muon as muon_mod

WORKER = Path(__file__).with_name("parallel_muon_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@requires_torchrun
def test_torchrun_two_ranks_equal_single_process(tmp_path):
    """``torchrun --nproc_per_node=2`` on gloo: native and emulated reduce-scatter, 4 steps,
    banks padded to a multiple of the world size, a 2-D matrix, momentum warmup, MuonEq-R, WD."""
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--standalone", str(WORKER), str(out)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["world"] == 2
    for mode in ("native", "all_reduce"):
        r = result[mode]
        assert r["ranks_identical"], mode
        assert r["min_param_change"] > 1e-3, mode  # every parameter really moved
        assert r["max_abs_diff"] <= 1e-6, (mode, r)


class _Handle:
    def __init__(self, log, name):
        self.log, self.name = log, name

    def wait(self):
        self.log.append(("wait", self.name))


def test_schedule_overlaps_gather_with_next_bank(tmp_path, monkeypatch):
    """All reduce-scatters start first, largest bank first; NS of bank i is issued before the
    wait on bank i-1's all-gather (so the gather overlaps the next bank's compute)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        log = []
        real_rs, real_ag, real_ns = comm.reduce_scatter_avg, comm.all_gather, muon_mod.newton_schulz

        def rs(out, inp, group=None, config=CommConfig()):
            real_rs(out, inp, group, config).wait()
            log.append(("rs", tuple(inp.shape)))
            return _Handle(log, ("rs", tuple(inp.shape)))

        def ag(out, inp, group=None):
            real_ag(out, inp, group).wait()
            log.append(("ag", tuple(out.shape)))
            return _Handle(log, ("ag", tuple(out.shape)))

        def ns(u, *args, **kwargs):
            log.append(("ns", tuple(u.shape)))
            return real_ns(u, *args, **kwargs)

        monkeypatch.setattr(comm, "reduce_scatter_avg", rs)
        monkeypatch.setattr(comm, "all_gather", ag)
        monkeypatch.setattr(muon_mod, "newton_schulz", ns)
        params = [torch.nn.Parameter(torch.randn(s)) for s in [(2, 8, 8), (4, 16, 8), (3, 8, 16)]]
        for p in params:
            p.grad = torch.randn_like(p)
        before = [p.detach().clone() for p in params]
        Muon(params, lr=0.1, distributed=True).step()
        big, mid, small = (4, 16, 8), (3, 8, 16), (2, 8, 8)
        assert [e for e in log if e[0] == "rs"] == [("rs", big), ("rs", mid), ("rs", small)]
        assert log.index(("ns", mid)) < log.index(("wait", ("ag", big)))
        assert log.index(("ns", small)) < log.index(("wait", ("ag", mid)))
        assert all(not torch.equal(p, b) for p, b in zip(params, before))
    finally:
        dist.destroy_process_group()


def test_comm_checks_shapes(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="inp: expected leading dim 2"):
            comm.reduce_scatter_avg(torch.zeros(2, 3), torch.zeros(3, 3))
        with pytest.raises(ValueError, match="out: expected leading dim 2"):
            comm.all_gather(torch.zeros(3, 3), torch.zeros(2, 3))
        with pytest.raises(ValueError, match="reduce_scatter"):
            CommConfig(reduce_scatter="ring")
    finally:
        dist.destroy_process_group()
