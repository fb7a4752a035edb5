"""The 16,000,000-byte budget: the verdict, the clip-sigma fit, and the trainer refusing an over-budget run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from golf_fast.artifact.fit import CHALLENGE_LIMIT
from golf_fast.artifact.format import encode_artifact
from golf_fast.model.config import ModelConfig
from golf_fast.train.budget import METADATA_MARGIN, fit_to_budget, verdict
from golf_fast.train.loop import train

from train.test_loop import _cfg, data_dir  # noqa: F401  (the tiny corpus fixture)


def test_verdict():
    assert verdict(15_000_000, 1_000_000) == (True, "16,000,000 bytes ≤ 16,000,000 (0 to spare)")
    ok, why = verdict(15_000_000, 1_000_001)
    assert ok is False and "over by 1" in why
    assert verdict(None, 10)[0] is None and verdict(10, None)[0] is None


def test_fit_to_budget_finds_a_coarser_factor_that_fits():
    g = torch.Generator().manual_seed(1701)
    names = ["blocks.0.mlp.fc.weight", "blocks.0.attn.c_q.weight", "tok_emb.weight"]
    state = {n: torch.randn(96, 64, generator=g) * 0.05 for n in names}
    hessians = {}
    for n in names:
        x = torch.randn(512, 64, generator=g)
        hessians[n] = x.T @ x / 512
    passthrough = {"blocks.0.attn_scale": torch.ones(64, dtype=torch.float16)}
    cfg = ModelConfig(vocab_size=96, num_layers=1, model_dim=64, num_heads=2, num_kv_heads=1, num_loops=0,
                      parallel_start_layer=0, xsa_last_n=1, gate_window=8)
    # sizes at factor 1 and at factor 4 (via a huge budget), then a budget in between
    at1 = fit_to_budget(state, hessians, names, passthrough, 0, cfg, "brotli-11", log=None)
    assert at1.factor == 1.0
    at4 = fit_to_budget(state, hessians, names, passthrough, 0, cfg, "brotli-11", hi=4.0, log=None)
    n1 = at1.nbytes
    smallest = min(t.nbytes for t in at4.tries)
    assert smallest < n1
    code = CHALLENGE_LIMIT - METADATA_MARGIN - (n1 + smallest) // 2
    fit = fit_to_budget(state, hessians, names, passthrough, code, cfg, "brotli-11", log=None)
    assert 1.0 < fit.factor <= 4.0 and fit.nbytes <= fit.budget < n1
    assert len(encode_artifact(fit.state, cfg, codec="brotli-11")) == fit.nbytes
    with pytest.raises(ValueError, match="too small"):
        fit_to_budget(state, hessians, names, passthrough, CHALLENGE_LIMIT - METADATA_MARGIN - 50, cfg, "brotli-11",
                      log=None)
    with pytest.raises(ValueError, match="code_bytes"):
        fit_to_budget(state, hessians, names, passthrough, -1, cfg, "brotli-11", log=None)


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
