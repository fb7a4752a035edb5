"""Size fitting: bisection of the clip-sigma factor lands just under the budget."""

from __future__ import annotations

import pytest
import torch

from golf_fast.artifact import budget_bytes, decode_artifact, fit_clip_scale
from golf_fast.artifact.synthetic import heavy_tailed_weights, record_matrix_shapes
from golf_fast.quant.formats import quantize_rtn
from golf_fast.quant.recipe import RECORD_RECIPE


@pytest.fixture(scope="module")
def small_model():
    shapes = record_matrix_shapes(num_layers=2, model_dim=48, kv_dim=24, mlp_mult=2, vocab_size=96)
    weights = heavy_tailed_weights(shapes, seed=3)
    return weights, RECORD_RECIPE.plan(shapes)


def test_budget_bytes():
    assert budget_bytes(31_999, margin=8_000) == 16_000_000 - 39_999
    with pytest.raises(ValueError, match="code"):
        budget_bytes(15_999_000, margin=8_000)
    with pytest.raises(ValueError, match="margin"):
        budget_bytes(10, margin=-1)


def test_fit_lands_just_under_budget(small_model):
    weights, plan = small_model
    calls = []

    def quantize(name, w, bits, k):
        calls.append((name, k))
        return quantize_rtn(w, bits, k)

    logs = []
    probe = fit_clip_scale(weights, plan, 10**9, quantize=quantize, codec="brotli-11", lo=0.5, hi=2.0,
                           log=logs.append)
    assert probe.factor == 0.5 and len(probe.tries) == 2  # everything fits: lo at once
    big, small = probe.tries[1].nbytes, probe.tries[0].nbytes
    assert big > small  # finer quantization (smaller clip sigmas) costs bytes
    budget = (big + small) // 2
    calls.clear()
    logs.clear()
    res = fit_clip_scale(weights, plan, budget, quantize=quantize, codec="brotli-11", lo=0.5, hi=2.0,
                         rel_tol=0.01, log=logs.append)
    assert res.nbytes == len(res.data) <= budget
    assert 0.5 < res.factor < 2.0
    over = [t for t in res.tries if not t.fits]
    assert over and max(t.factor for t in over) < res.factor
    assert res.factor - max(t.factor for t in over) <= 0.01 * 2.0 + 1e-12  # bracketed to the tolerance
    assert len(logs) == len(res.tries) + 1 and "fit try 1" in logs[0] and "chose" in logs[-1]
    assert len(calls) == len(plan) * len(res.tries)
    # the clip sigmas really were scaled: the chosen state quantizes with k = factor · k_role
    name = "blocks.1.mlp.fc.weight"
    bits, k = plan[name]
    want = quantize_rtn(weights[name], bits, k * res.factor)
    assert torch.equal(res.state[name].codes, want.codes)
    art = decode_artifact(res.data)
    assert torch.equal(art.state[name].codes, want.codes)


def test_fit_errors(small_model):
    weights, plan = small_model
    with pytest.raises(ValueError, match="budget"):
        fit_clip_scale(weights, plan, 100, codec="lzma-9", log=None)
    with pytest.raises(ValueError, match="weights"):
        fit_clip_scale({}, plan, 10**6, log=None)
    with pytest.raises(ValueError, match="plan"):
        fit_clip_scale(weights, {}, 10**6, log=None)
    with pytest.raises(TypeError, match="quantize"):
        fit_clip_scale(weights, plan, 10**9, quantize=lambda *a: torch.zeros(2, 2), codec="lzma-9", log=None)


def test_quantize_cli_fits_budget(tmp_path, small_model, capsys):
    from golf_fast import cli

    weights, plan = small_model
    sd = dict(weights)
    sd["blocks.0.attn_scale"] = torch.ones(48)
    torch.save(sd, tmp_path / "sd.pt")
    script = tmp_path / "train_gpt.py"
    script.write_text("print('hi')\n" * 50)
    out = tmp_path / "m.gfa"
    margin = 16_000_000 - 600 - 20_000  # leaves a budget of ~20 KB for the model
    assert cli.main(["quantize", "--weights", str(tmp_path / "sd.pt"), "--code", str(script), "--out", str(out),
                     "--wrapper", "lzma", "--codec", "lzma-9", "--min-numel", "100", "--margin", str(margin)]) == 0
    text = capsys.readouterr().out
    assert "fit try" in text and "wrote" in text
    art = decode_artifact(out.read_bytes())
    assert set(art.state) == set(sd) and art.state["blocks.0.attn_scale"].dtype == torch.float16
    from golf_fast.artifact import code_bytes

    assert art.file_bytes <= 16_000_000 - margin - code_bytes(script, wrapper="lzma").counted


def test_one_bisection_for_both_fitters():
    """``smallest_fitting_factor``: hi first, lo only with ``try_lo``; lands within rel_tol of the threshold."""
    from golf_fast.artifact.fit import smallest_fitting_factor

    seen = []

    def attempt(f):
        seen.append(f)
        return int(1000 / f), f"payload@{f}"

    f, n, payload = smallest_fitting_factor(attempt, 400, 1.0, 4.0, rel_tol=0.01, max_tries=20, try_lo=False)
    assert seen[0] == 4.0 and 1.0 not in seen and 2.5 <= f <= 2.5 * 1.0101 and n <= 400 and payload == f"payload@{f}"
    seen.clear()
    assert smallest_fitting_factor(attempt, 1000, 1.0, 4.0, rel_tol=0.01, max_tries=20, try_lo=True)[0] == 1.0
    assert seen == [4.0, 1.0]
    seen.clear()
    smallest_fitting_factor(attempt, 400, 1.0, 4.0, rel_tol=0.01, max_tries=3, try_lo=True)
    assert len(seen) == 3  # max_tries counts every attempt
    with pytest.raises(ValueError, match="too small"):
        smallest_fitting_factor(attempt, 100, 1.0, 4.0, rel_tol=0.01, max_tries=20, try_lo=False)
    with pytest.raises(ValueError, match="lo, hi"):
        smallest_fitting_factor(attempt, 400, 4.0, 1.0, rel_tol=0.01, max_tries=20, try_lo=False)
