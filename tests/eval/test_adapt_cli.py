"""``golf-fast eval``'s adaptive part: the train config's ``--eval.adapt.*`` overrides and presets,
the report's entries."""

from __future__ import annotations

import argparse

import pytest

from golf_fast.cli.eval import add_arguments, resolve_eval_config, run, run_adapt

from .adapt_helpers import byte_table, tiny_model, tiny_stream


def _cfg(*argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return resolve_eval_config(p.parse_args(["m.gfa", "--data.data_dir", "d", *argv]))


def test_presets_and_overrides_are_the_train_configs():
    cfg = _cfg("--preset", "smoke", "--eval.adapt.ttt", "lora", "--eval.adapt.lora.rank", "3",
               "--eval.adapt.lora.warm_start_a", "--eval.adapt.seq_len", "128").eval.adapt
    assert (cfg.ttt, cfg.lora.rank, cfg.lora.warm_start_a, cfg.seq_len, cfg.lora.chunk) == ("lora", 3, True, 128, 32)
    rec = _cfg()  # eval's default preset is the record's: phased LoRA TTT, stride 64
    assert rec.eval.adapt.ttt == "phased" and rec.eval.stride == 64 and rec.eval.adapt.adapts()
    assert not _cfg("--eval.adapt.ttt", "none").eval.adapt.adapts()
    for bad, match in ((("--eval.adapt.ttt", "sgd"), "eval.adapt.ttt: expected one of"),
                       (("--eval.adapt.lora.rank", "x"), "expected int"),
                       (("--eval.adapt.lora.rank", "0"), r"eval.adapt.lora.rank: expected an int in \[1"),
                       (("--eval.adapt.research", "prequant"), "eval.adapt.research: a research mode runs alone")):
        with pytest.raises(ValueError, match=match):
            _cfg(*bad)
    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(ValueError, match="data.data_dir"):
        resolve_eval_config(p.parse_args(["m.gfa"]))
    with pytest.raises(SystemExit):  # --set is gone: one way to override
        p.parse_args(["m.gfa", "--set", "lora.rank=3"])


def test_report_has_baseline_adaptive_verdicts_and_prediction():
    cfg = _cfg("--preset", "smoke", "--eval.adapt.ttt", "lora", "--eval.adapt.seq_len", "32",
               "--eval.adapt.lora.chunk", "8", "--eval.adapt.lora.batch_docs", "4", "--eval.adapt.lora.rank", "4",
               "--eval.adapt.lora.lr", "0.01").eval.adapt
    out = run_adapt(cfg, lambda: tiny_model(81), tiny_stream(81, n_docs=6, max_len=40), byte_table(), 0, 1, None, None,
                    compare=True, predict_h100=True)
    assert out["baseline"]["mode"] == "ttt:none (per-document)" and out["adaptive"]["mode"] == "ttt:lora"
    assert out["baseline"]["tokens"] == out["adaptive"]["tokens"]  # the same positions, scored once each
    assert out["baseline"]["eval_compliance"] == out["adaptive"]["eval_compliance"] == "compliant"
    assert out["adaptive"]["audit"] == "unaudited"  # no --audit: the report says so
    pred = out["predicted_8xh100"]
    assert pred["seconds"] > 0 and any("predicted, not measured" in ln for ln in pred["arithmetic"])
    assert out["adapt_config"]["lora"]["rank"] == 4


def test_audit_flag_replays_and_reports(capsys):
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["m.gfa", "--data.data_dir", "d", "--preset", "smoke", "--eval.adapt.ttt", "lora",
                         "--audit", "2", "--eval.adapt.seq_len", "32", "--eval.adapt.lora.chunk", "8",
                         "--eval.adapt.lora.batch_docs", "4", "--eval.adapt.lora.rank", "4",
                         "--eval.adapt.lora.lr", "0.01"])
    assert args.audit == 2  # an eval-own flag, like --compare, not a config key
    out = run_adapt(resolve_eval_config(args).eval.adapt, lambda: tiny_model(82), tiny_stream(82, n_docs=5, max_len=40),
                    byte_table(), 0, 1, None, None, audit=args.audit)
    a = out["adaptive"]
    assert a["audit"]["verdict"] == "passed" and len(a["audit"]["positions"]) == 2, a["audit"]
    assert a["eval_compliance"] == "compliant" and a["stream_targets"] == a["scored_positions"]
    cfg = _cfg("--preset", "smoke", "--eval.adapt.ttt", "lora").eval.adapt
    with pytest.raises(ValueError, match="audit"):
        run_adapt(cfg, lambda: tiny_model(82), tiny_stream(82), byte_table(), 0, 1, None, None, audit=-1)
    bad = p.parse_args(["m.gfa", "--data.data_dir", "d", "--audit", "-1"])
    assert run(bad) == 2 and "--audit: expected N >= 0" in capsys.readouterr().err  # before any file is read


def test_one_rule_decides_whether_an_adaptation_runs():
    """``AdaptConfig.adapts`` over every valid mode combination: on an artifact any mode runs; in the
    trainer's round trip prequant does not (it ran before GPTQ)."""
    import itertools
    import typing

    from golf_fast.eval.adapt.config import AdaptConfig, ResearchMode, SlotMode, TTTMode

    seen = 0
    for ttt, slot, research in itertools.product(typing.get_args(TTTMode), typing.get_args(SlotMode),
                                                 typing.get_args(ResearchMode)):
        a = AdaptConfig(ttt=ttt, slot=slot, research=research)
        try:
            a.validate("eval.adapt")
        except ValueError:
            continue  # a research mode runs alone
        seen += 1
        any_mode = ttt != "none" or slot != "none" or research != "none"
        assert a.adapts() == any_mode, (ttt, slot, research)
        assert a.adapts(prequant_ran=True) == (any_mode and research != "prequant"), (ttt, slot, research)
    assert seen == 4 * 2 + 2
