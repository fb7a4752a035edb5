"""``golf-fast eval ... --ttt/--slot/--research``: flags, ``--set`` overrides, the report's entries."""

from __future__ import annotations

import argparse

import pytest

from golf_fast.cli.eval_adapt import add_adapt_arguments, resolve_adapt_config, run_adapt_cli, wants_adaptation

from .adapt_helpers import byte_table, tiny_model, tiny_stream


def _args(*argv):
    p = argparse.ArgumentParser()
    add_adapt_arguments(p)
    return p.parse_args(list(argv))


def test_flags_presets_and_overrides():
    assert not wants_adaptation(_args())
    cfg = resolve_adapt_config(_args("--ttt", "lora", "--adapt-preset", "smoke", "--set", "lora.rank=3",
                                     "--set", "lora.warm_start_a=true", "--set", "seq_len=128"))
    assert (cfg.ttt, cfg.lora.rank, cfg.lora.warm_start_a, cfg.seq_len) == ("lora", 3, True, 128)
    assert resolve_adapt_config(_args()).ttt == "phased"  # the record preset's default method
    assert resolve_adapt_config(_args("--slot", "causal")).ttt == "none"
    for bad, match in ((("--set", "lora.rnk=3"), "KEY=VALUE"), (("--set", "lora.rank=x"), "expected int"),
                       (("--ttt", "lora", "--research", "prequant"), "research")):
        with pytest.raises(ValueError, match=match):
            resolve_adapt_config(_args(*bad))


def test_report_has_baseline_adaptive_verdicts_and_prediction():
    args = _args("--ttt", "lora", "--adapt-preset", "smoke", "--compare", "--predict-h100", "--set", "seq_len=32",
                 "--set", "lora.chunk=8", "--set", "lora.batch_docs=4", "--set", "lora.rank=4", "--set", "lora.lr=0.01")
    out = run_adapt_cli(args, lambda: tiny_model(81), tiny_stream(81, n_docs=6, max_len=40), byte_table(), 0, 1, None, None)
    assert out["baseline"]["mode"] == "ttt:none (per-document)" and out["adaptive"]["mode"] == "ttt:lora"
    assert out["baseline"]["tokens"] == out["adaptive"]["tokens"]  # the same positions, scored once each
    assert out["baseline"]["eval_compliance"] == out["adaptive"]["eval_compliance"] == "compliant"
    pred = out["predicted_8xh100"]
    assert pred["seconds"] > 0 and any("predicted, not measured" in ln for ln in pred["arithmetic"])
    assert out["adapt_config"]["lora"]["rank"] == 4


def test_audit_flag_replays_and_reports():
    args = _args("--ttt", "lora", "--adapt-preset", "smoke", "--audit", "2", "--set", "seq_len=32",
                 "--set", "lora.chunk=8", "--set", "lora.batch_docs=4", "--set", "lora.rank=4", "--set", "lora.lr=0.01")
    out = run_adapt_cli(args, lambda: tiny_model(82), tiny_stream(82, n_docs=5, max_len=40), byte_table(), 0, 1,
                        None, None)
    a = out["adaptive"]
    assert a["audit"]["verdict"] == "passed" and len(a["audit"]["positions"]) == 2, a["audit"]
    assert a["eval_compliance"] == "compliant" and a["stream_targets"] == a["scored_positions"]
    with pytest.raises(ValueError, match="audit"):
        run_adapt_cli(_args("--ttt", "lora", "--audit", "-1"), lambda: tiny_model(82), tiny_stream(82), byte_table(),
                      0, 1, None, None)
