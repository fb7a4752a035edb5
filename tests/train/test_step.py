"""One optimizer step (micro-step accumulation, clipping, loss averaging) and the weight EMA."""

import copy

import pytest
import torch

from golf_fast.train.config import OptimConfig
from golf_fast.train.optimizers import build_optimizers
from golf_fast.train.step import TrainStep, WeightEma, autocast_factory
from model_factories import randomized_gpt


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_step_averages_micro_steps_and_clips(clip, tiny):
    g = torch.Generator().manual_seed(21)
    batches = [tiny.batch(g), tiny.batch(g)]
    ocfg = OptimConfig(matrix_optimizer="adam", grad_clip=clip)
    model = randomized_gpt(tiny.cfg, 5)
    twin = copy.deepcopy(model)
    opt = build_optimizers(model, ocfg, distributed=False)
    step = TrainStep(model, opt, list(model.parameters()), accum=2, grad_clip=clip, world=1,
                     device=torch.device("cpu"))
    loss = step([tiny.FixedLoader(b) for b in batches])
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0  # stays a tensor: no host read in the step

    # the same step written out by hand on the twin: mean loss, mean gradient, clip, AdamW
    topt = build_optimizers(twin, ocfg, distributed=False)
    losses = [twin(b.x, b.y, b.cu_seqlens) for b in batches]
    (sum(losses) / 2).backward()
    if clip:
        norm = torch.nn.utils.clip_grad_norm_(list(twin.parameters()), clip)
        assert norm > clip  # the clip really acted
    topt.step()
    assert float(loss) == pytest.approx(float(sum(losses).detach() / 2), rel=1e-6)
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=n)
    assert all(p.grad is None for p in model.parameters())  # gradients cleared


def test_step_rejects_bad_arguments(tiny):
    model = randomized_gpt(tiny.cfg, 6)
    opt = build_optimizers(model, OptimConfig(matrix_optimizer="adam"), distributed=False)
    with pytest.raises(ValueError, match="accum"):
        TrainStep(model, opt, list(model.parameters()), accum=0, grad_clip=0, world=1, device="cpu")
    with pytest.raises(ValueError, match="grad_clip"):
        TrainStep(model, opt, list(model.parameters()), accum=1, grad_clip=-1, world=1, device="cpu")
    step = TrainStep(model, opt, list(model.parameters()), accum=2, grad_clip=0, world=1, device="cpu")
    with pytest.raises(ValueError, match="loaders"):
        step([tiny.FixedLoader(None)])
    with pytest.raises(ValueError, match="dtype"):
        autocast_factory(torch.device("cpu"), torch.float64)


def test_ema_matches_the_closed_form():
    g = torch.Generator().manual_seed(22)
    p = torch.nn.Parameter(torch.randn(4, 3, generator=g))
    start = p.detach().clone()
    ema = WeightEma([p], decay=0.75)
    values = [torch.randn(4, 3, generator=g) for _ in range(3)]
    for v in values:
        with torch.no_grad():
            p.copy_(v)
        ema.update()
    want = start
    for v in values:
        want = 0.75 * want + 0.25 * v
    torch.testing.assert_close(ema.shadow[0], want, rtol=1e-6, atol=1e-7)
    ema.copy_to_params()
    torch.testing.assert_close(p.detach(), want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="decay"):
        WeightEma([p], 1.0)
