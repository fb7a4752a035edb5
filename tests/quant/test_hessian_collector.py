"""HessianCollector: shared q/k/v input counted once, depth recurrence, sum/mean, explicit calls,
misuse errors, and a 2-process gloo all-reduce equal to the single-process result."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import pytest

from golf_fast.quant.hessian import HessianCollector


class Block(nn.Module):
    """An attention-shaped block: q, k, v read one normed input; proj, fc and down read their own."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_q, self.c_k, self.c_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        self.fc = nn.Linear(d, 2 * d)
        self.down = nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.rms_norm(x, (x.shape[-1],))
        q, k, v = self.c_q(h), self.c_k(h), self.c_v(h)
        x = x + self.proj(torch.tanh(q * k + v))
        return x + self.down(F.relu(self.fc(F.rms_norm(x, (x.shape[-1],)))).square())


class Tiny(nn.Module):
    """Two blocks; block 1 is looped (visited twice per forward), as in depth recurrence."""

    def __init__(self, d: int = 24) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(d), Block(d)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](x)
        for _ in range(2):
            x = self.blocks[1](x)
        return x


def _linears(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


class Recorder:
    """The float64 ground truth: every Linear's inputs, recorded by plain hooks."""

    def __init__(self, model: nn.Module) -> None:
        self.inputs: dict[str, list[torch.Tensor]] = {}
        for n, m in _linears(model).items():
            m.register_forward_hook(lambda mod, args, out, n=n: self.inputs.setdefault(n, []).append(
                args[0].detach().reshape(-1, args[0].shape[-1]).double()))

    def hessian(self, name: str) -> tuple[torch.Tensor, int]:
        xs = torch.cat(self.inputs[name])
        return xs.T @ xs, xs.shape[0]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b).norm() / b.norm())


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_collector_matches_float64_and_shares_qkv(reduction):
    torch.manual_seed(0)
    model = Tiny().eval()
    rec = Recorder(model)
    col = HessianCollector().attach(_linears(model))
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 7, 24))
    res = col.finalize(reduction)
    assert res.reduction == reduction
    for name in _linears(model):
        ref, tokens = rec.hessian(name)
        if reduction == "mean":
            ref = ref / tokens
        assert res.tokens[name] == tokens
        assert _rel(res.hessians[name], ref) <= 1e-5, name
    # q, k, v of each block form one group with one accumulation per distinct input
    for b in ("blocks.0", "blocks.1"):
        assert (f"{b}.c_q", f"{b}.c_k", f"{b}.c_v") in res.groups
        assert res.hessians[f"{b}.c_q"] is res.hessians[f"{b}.c_v"]
    # 3 forwards; block 0 once per forward, block 1 twice (depth recurrence)
    assert res.accumulations["blocks.0.c_q"] == 3
    assert res.accumulations["blocks.1.c_k"] == 6
    assert res.tokens["blocks.1.c_k"] == 2 * res.tokens["blocks.0.c_k"] == 6 * 14
    # one accumulation per distinct input: 4 groups per block (qkv, proj, fc, down)
    assert len(res.groups) == 8
    assert sum(res.accumulations[g[0]] for g in res.groups) == 4 * 3 + 4 * 6


def test_explicit_calls_and_declared_sharing():
    torch.manual_seed(1)
    x1, x2, y = torch.randn(5, 16, dtype=torch.bfloat16), torch.randn(3, 16), torch.randn(4, 8)
    col = HessianCollector()
    col.add(("q", "k", "v"), x1)
    col.add("q", x2)  # new input for the group through its first member
    col.add("k", x2)
    col.add("v", x2)
    col.add("out", y)
    res = col.finalize("sum")
    xs = torch.cat([x1.double(), x2.double()])
    assert _rel(res.hessians["k"], xs.T @ xs) <= 1e-5
    assert res.tokens == {"q": 8, "k": 8, "v": 8, "out": 4}
    assert res.accumulations["v"] == 2
    assert _rel(res.hessians["out"], y.double().T @ y.double()) <= 1e-5


def test_group_member_that_diverges_is_an_error():
    torch.manual_seed(301)
    col = HessianCollector()
    x = torch.randn(4, 8)
    col.add("q", x)
    col.add("k", x)  # groups q and k
    col.add("q", torch.randn(4, 8))
    with pytest.raises(RuntimeError, match=r"'k' consumed the same input twice|did not consume"):
        col.add("q", torch.randn(4, 8))  # k never consumed the previous input


def test_in_place_modified_input_is_a_new_input():
    torch.manual_seed(302)
    col = HessianCollector()
    x = torch.randn(4, 8)
    col.add("a", x)
    x.mul_(2)  # same object, new version: not shared with "b"
    col.add("b", x)
    res = col.finalize("sum")
    assert res.groups == [("a",), ("b",)]
    assert torch.allclose(res.hessians["b"], 4 * res.hessians["a"], rtol=1e-5)


def test_collector_argument_errors():
    torch.manual_seed(303)
    col = HessianCollector()
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        col.add("a", [1.0])
    with pytest.raises(TypeError, match="name: expected"):
        col.add("", torch.randn(2, 3))
    with pytest.raises(TypeError, match="modules: expected"):
        col.attach([("a", 3)])
    col.add("a", torch.randn(2, 3))
    with pytest.raises(ValueError, match="K=3"):
        col.add("a", torch.randn(2, 4))
    with pytest.raises(ValueError, match="reduction: expected"):
        col.finalize("median")
    with pytest.raises(RuntimeError, match="all_reduce: torch.distributed is not initialized"):
        HessianCollector(all_reduce=True).finalize()


def test_hooks_are_removed_by_finalize():
    torch.manual_seed(304)
    model = Tiny().eval()
    col = HessianCollector().attach(_linears(model))
    with torch.no_grad():
        model(torch.randn(1, 3, 24))
    col.finalize()
    with torch.no_grad():
        model(torch.randn(1, 3, 24))  # no hook left: no error about add() after finalize()


# --------------------------------------------------------------------------- 2-process all-reduce


def _worker(rank: int, world: int, init_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(7)
        model = Tiny().eval()  # same weights on both ranks
        data = [torch.randn(2, 5, 24) for _ in range(2 * world)]  # same data everywhere; rank takes its share
        col = HessianCollector(all_reduce=True).attach(_linears(model))
        with torch.no_grad():
            for x in data[rank::world]:
                model(x)
        res = col.finalize("mean")
        single = HessianCollector().attach(_linears(model))  # one process over all the data
        with torch.no_grad():
            for x in data:
                model(x)
        ref = single.finalize("mean")
        for name, h in ref.hessians.items():
            assert res.tokens[name] == ref.tokens[name], name
            err = float((res.hessians[name].double() - h.double()).norm() / h.double().norm())
            assert err <= 1e-5, (name, err)
    finally:
        dist.destroy_process_group()


def test_all_reduce_two_processes_gloo(tmp_path):
    import torch.multiprocessing as mp

    mp.start_processes(_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True, start_method="spawn")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_side_stream_on_cuda_matches_float64():
    torch.manual_seed(3)
    model = Tiny().cuda().eval().to(torch.bfloat16)
    rec = Recorder(model)
    col = HessianCollector(side_stream=True).attach(_linears(model))
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 300, 24, device="cuda", dtype=torch.bfloat16))
    res = col.finalize("sum")
    for name in _linears(model):
        ref, tokens = rec.hessian(name)
        assert res.tokens[name] == tokens
        assert _rel(res.hessians[name], ref) <= 1e-5, name
