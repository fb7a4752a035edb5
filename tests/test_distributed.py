"""golf_fast.distributed: process setup and collectives, one process and two gloo processes."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import requires_cuda

from golf_fast import distributed
from golf_fast.distributed import Dist, device_for_backend, init_distributed
from golf_fast.train.schedule import TrainClock


def test_group_device_follows_the_backend():
    assert device_for_backend("nccl", 3) == torch.device("cuda", 3)
    assert device_for_backend("NCCL", 0) == torch.device("cuda", 0)
    assert device_for_backend("gloo") == torch.device("cpu")
    assert device_for_backend("gloo", 2) == torch.device("cpu")
    with pytest.raises(ValueError, match="backend"):
        device_for_backend("")
    with pytest.raises(ValueError, match="cuda_index"):
        device_for_backend("nccl", -1)


def test_one_process_collectives_are_the_identity(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    d = init_distributed("cpu")
    assert (d.rank, d.world, d.device, d.initialized_here, d.main) == (0, 1, torch.device("cpu"), False, True)
    g = torch.Generator().manual_seed(11)
    t = torch.randn(5, generator=g)
    want = t.clone()
    assert distributed.all_reduce(t, op="max") is t and torch.equal(t, want)
    assert distributed.all_reduce(t, async_op=True).wait()
    assert distributed.broadcast(t) is t and torch.equal(t, want)
    assert torch.equal(distributed.all_gather(t), want[None])
    assert distributed.broadcast_str("runs/x") == "runs/x"
    assert distributed.world_size() == 1 and distributed.rank() == 0
    distributed.barrier()
    distributed.shutdown(d)


def test_bad_arguments_are_named(monkeypatch):
    with pytest.raises(ValueError, match="op"):
        distributed.all_reduce(torch.ones(2), op="mean")
    with pytest.raises(TypeError, match="tensor"):
        distributed.all_reduce([1.0, 2.0])
    with pytest.raises(ValueError, match="device_pref"):
        init_distributed("tpu")
    with pytest.raises(ValueError, match="src"):
        distributed.broadcast(torch.ones(2), src=1)
    with pytest.raises(TypeError, match="text"):
        distributed.broadcast_str(3)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK"):
        init_distributed("cpu")
    with pytest.raises(TypeError, match="Dist"):
        distributed.shutdown("not a Dist")
    with pytest.raises(TypeError, match="synchronize"):
        distributed.shutdown(distributed.Dist(), synchronize="yes")


def test_synchronized_shutdown_waits_at_a_barrier_then_destroys(monkeypatch):
    calls = []
    monkeypatch.setattr(distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "barrier", lambda *a, **k: calls.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda *a, **k: calls.append("destroy"))
    mine = distributed.Dist(initialized_here=True)
    distributed.shutdown(mine, synchronize=True)
    assert calls == ["barrier", "destroy"]
    calls.clear()
    distributed.shutdown(mine)  # the error path: no barrier that could wait for a failed rank
    assert calls == ["destroy"]
    calls.clear()
    distributed.shutdown(distributed.Dist(initialized_here=False), synchronize=True)  # not ours: untouched
    assert calls == []


def _worker(rank: int, world: int, store_path: str, q) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        out = {}
        g = torch.Generator().manual_seed(100 + rank)
        x = torch.randn(3, 4, generator=g, dtype=torch.float64)
        out["x"] = x.clone()
        s = x.clone()
        assert distributed.all_reduce(s, op="sum") is s
        out["sum"] = s
        m = x.clone()
        distributed.all_reduce(m, op="max")
        out["max"] = m
        a = x.clone()
        distributed.all_reduce(a, op="sum", async_op=True).wait()
        out["async_sum"] = a
        b = x.clone()
        distributed.broadcast(b, src=1)
        out["bcast"] = b
        out["gather"] = distributed.all_gather(x)
        out["text"] = distributed.broadcast_str(f"runs/rank{rank}-é" if rank == 0 else "other")
        out["world"], out["rank"] = distributed.world_size(), distributed.rank()
        out["group_device"] = str(distributed.group_device())
        # the training clock: each rank's timer runs at its own speed; every tick is the max over ranks
        t = {"now": 0.0}

        def timer():
            return t["now"]

        clock = TrainClock(agree_across_ranks=True, timer=timer)
        clock.start()
        ticks = []
        for i in range(3):
            t["now"] += (1.0 + i) * (0.5 if rank == 0 else 1.5)
            ticks.append(clock.tick())
        out["clock"] = (clock.train_s, ticks)
        # numpy arrays travel by value (a tensor in a Queue is shared memory owned by this process)
        q.put((rank, {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in out.items()}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    store = str(tmp_path / "store")
    env_keep = {k: os.environ.pop(k) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK") if k in os.environ}
    try:
        procs = [ctx.Process(target=_worker, args=(r, 2, store, q)) for r in range(2)]
        for p in procs:
            p.start()
        got = dict(q.get(timeout=180) for _ in procs)
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    finally:
        os.environ.update(env_keep)
    got = {r: {k: torch.from_numpy(v) if hasattr(v, "dtype") else v for k, v in o.items()} for r, o in got.items()}
    x0, x1 = got[0]["x"], got[1]["x"]
    assert not torch.equal(x0, x1)
    for r in (0, 1):
        o = got[r]
        assert torch.equal(o["sum"], x0 + x1) and torch.equal(o["async_sum"], x0 + x1)
        assert torch.equal(o["max"], torch.maximum(x0, x1))
        assert torch.equal(o["bcast"], x1)
        assert torch.equal(o["gather"], torch.stack([x0, x1]))
        assert o["text"] == "runs/rank0-é"
        assert (o["world"], o["rank"], o["group_device"]) == (2, r, "cpu")
        # rank 1's steps are slower (1.5, 3.0, 4.5 s): both ranks count those
        train_s, ticks = o["clock"]
        assert ticks == pytest.approx([1.5, 3.0, 4.5]) and train_s == pytest.approx(9.0)


def test_dist_main_property():
    assert Dist(rank=0).main and not Dist(rank=1, world=2).main


@pytest.mark.gpu
@requires_cuda
def test_nccl_collectives_take_cpu_tensors_through_the_gpu(tmp_path):
    """NCCL reduces only CUDA tensors: the wrappers stage a CPU tensor through cuda:<current>."""
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert distributed.group_device() == torch.device("cuda", 0)
        g = torch.Generator().manual_seed(12)
        t = torch.randn(7, generator=g, dtype=torch.float64)
        want = t.clone()
        with pytest.raises(Exception):
            dist.all_reduce(t.clone())  # the raw collective refuses a CPU tensor
        assert distributed.all_reduce(t, op="max") is t and t.device.type == "cpu" and torch.equal(t, want)
        assert torch.equal(distributed.all_gather(t), want[None])
        assert distributed.broadcast_str("run") == "run"
    finally:
        dist.destroy_process_group()


def test_all_reduce_packed_in_one_process_and_bad_input(monkeypatch):
    g = torch.Generator().manual_seed(21)
    ts = [torch.randn(3, generator=g), torch.randn(2, 2, generator=g).bfloat16()]
    want = [t.clone() for t in ts]
    calls = []
    real = distributed.all_reduce

    def counting(t, op="sum", group=None, async_op=False):
        calls.append(t.numel())
        return real(t, op, group, async_op)

    monkeypatch.setattr(distributed, "all_reduce", counting)
    distributed.all_reduce_packed(ts)  # no process group: values unchanged, dtypes kept, one collective
    assert calls == [7] and all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(ts, want))
    distributed.all_reduce_packed([])
    with pytest.raises(TypeError, match=r"tensors\[1\]"):
        distributed.all_reduce_packed([torch.ones(1), [1.0]])
    with pytest.raises(ValueError, match="one device"):
        distributed.all_reduce_packed([torch.ones(1), torch.ones(1, device="meta")])
