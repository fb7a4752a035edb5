"""The compile warm-up (train/warmup.py), run eagerly on CPU: the H100 path runs it under torch.compile,
the logic around the graphs (buckets, steps, restoring the model and the optimizer, progress lines) is
the same and is checked here."""

import copy
import types

import pytest
import torch

from golf_fast.train.config import OptimConfig
from golf_fast.train.optimizers import build_optimizers
from golf_fast.train.step import TrainStep, autocast_factory
from golf_fast.train.warmup import compile_warmup
from model_factories import randomized_gpt


class _Loader:
    def __init__(self, tiny, seed):
        self.g, self.tiny, self.closed = torch.Generator().manual_seed(seed), tiny, False

    def next_batch(self):
        return self.tiny.batch(self.g)

    def close(self):
        self.closed = True


def _data(tiny, made):
    def loaders(seed_offset=0):
        made.append(_Loader(tiny, 100 + seed_offset))
        return [made[-1]]
    return types.SimpleNamespace(loaders=loaders, tokens_per_rank=16, d=types.SimpleNamespace(device=torch.device("cpu")))


def test_warmup_restores_model_and_optimizer_and_reports_each_graph(tiny):
    model = randomized_gpt(tiny.cfg, 3)
    opt = build_optimizers(model, OptimConfig(matrix_optimizer="adam"), distributed=False)
    step = TrainStep(model, opt, list(model.parameters()), accum=1, grad_clip=0.0, world=1, device=torch.device("cpu"))
    before = copy.deepcopy(model.state_dict())
    made, lines = [], []
    compile_warmup(model, model, opt, step, _data(tiny, made), 2, autocast_factory(torch.device("cpu"), None),
                   progress=lines.append)
    # 16 tokens per rank in segments of max_seqlen 16: 2 boundaries fit every bucket; then 2 full steps
    assert len(lines) == 4 + 2, lines
    assert lines[0].startswith("compile warm-up: forward+backward") and lines[-1].endswith("2/2 (loop off)")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)  # the full steps changed nothing
    assert made and all(ld.closed for ld in made)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_warmup_rejects_bad_arguments(tiny):
    model = randomized_gpt(tiny.cfg, 4)
    opt = build_optimizers(model, OptimConfig(matrix_optimizer="adam"), distributed=False)
    step = TrainStep(model, opt, list(model.parameters()), accum=1, grad_clip=0.0, world=1, device="cpu")
    auto = autocast_factory(torch.device("cpu"), None)
    with pytest.raises(ValueError, match="steps"):
        compile_warmup(model, model, opt, step, _data(tiny, []), -1, auto)
    with pytest.raises(TypeError, match="progress"):
        compile_warmup(model, model, opt, step, _data(tiny, []), 1, auto, progress="log")
