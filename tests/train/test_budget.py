"""The 16,000,000-byte budget: the verdict, the clip-sigma fit, and the trainer refusing an over-budget run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golf_fast.artifact.fit import CHALLENGE_LIMIT
from golf_fast.quant.recipe import RECORD_RECIPE
from golf_fast.train.budget import fit_to_budget, scaled_recipe, verdict
from golf_fast.train.loop import train

from train.test_loop import _cfg, data_dir  # noqa: F401  (the tiny corpus fixture)


def test_verdict():
    assert verdict(15_000_000, 1_000_000) == (True, "16,000,000 bytes ≤ 16,000,000 (0 to spare)")
    ok, why = verdict(15_000_000, 1_000_001)
    assert ok is False and "over by 1" in why
    assert verdict(None, 10)[0] is None and verdict(10, None)[0] is None


def test_scaled_recipe_scales_every_clip_sigma():
    r = scaled_recipe(RECORD_RECIPE, 1.5)
    assert [x.clip_sigmas for x in r.rules] == [1.5 * x.clip_sigmas for x in RECORD_RECIPE.rules]
    assert r.default_clip_sigmas == 1.5 * RECORD_RECIPE.default_clip_sigmas
    assert [x.bits for x in r.rules] == [x.bits for x in RECORD_RECIPE.rules] and r.lqer == RECORD_RECIPE.lqer
    with pytest.raises(ValueError, match="factor"):
        scaled_recipe(RECORD_RECIPE, 0.0)


def test_fit_bisects_to_the_smallest_fitting_factor():
    """A size that falls with the factor: the fit lands within rel_tol above the true threshold."""
    size = lambda f: int(1_000_000 / f)  # noqa: E731
    code = CHALLENGE_LIMIT - 400_000      # fits for f ≥ 2.5
    calls = []

    def quantize_at(f):
        calls.append(f)
        return {"f": f}

    fit = fit_to_budget(quantize_at, lambda t: size(t["f"]), code, hi=4.0, rel_tol=0.01, max_tries=20, log=None)
    assert 2.5 <= fit.factor <= 2.5 * 1.05 and fit.nbytes <= fit.budget == 400_000
    assert fit.tensors == {"f": fit.factor} and calls[0] == 4.0 and len(fit.tries) == len(calls)
    with pytest.raises(ValueError, match="too small"):
        fit_to_budget(quantize_at, lambda t: size(t["f"]), CHALLENGE_LIMIT - 100_000, log=None)
    with pytest.raises(ValueError, match="code_bytes"):
        fit_to_budget(quantize_at, lambda t: 1, -1, log=None)


def _final(run_dir):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "final"][-1]


@pytest.mark.slow
def test_trainer_fits_or_refuses(data_dir, tmp_path):  # noqa: F811
    cfg = _cfg(data_dir, tmp_path, **{"eval.stride": 0, "run.name": "near"})
    # ~1,000 bytes of room: the artifact (~28 KB) cannot fit → not a submission
    res = train(cfg, code_bytes=CHALLENGE_LIMIT - 1_000)
    assert res.submission_ok is False and "over by" in res.budget
    assert _final(res.run_dir)["submission_ok"] is False
    # over by 3% of the factor-1 artifact: the fit coarsens the clip sigmas until it fits
    a1 = res.artifact_bytes
    code = CHALLENGE_LIMIT - int(0.97 * a1)
    res2 = train(_cfg(data_dir, tmp_path, **{"eval.stride": 0, "run.name": "fit"}), code_bytes=code)
    assert res2.submission_ok is True and res2.clip_factor > 1.0, res2.budget
    assert res2.artifact_bytes + code <= CHALLENGE_LIMIT
    assert Path(res2.artifact_path).stat().st_size == res2.artifact_bytes
    assert res2.round_trip is not None  # the fitted artifact was reloaded and scored
