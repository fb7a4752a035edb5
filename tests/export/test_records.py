"""Record or not: the refusals (non-compliant evaluation, budget, time, hardware, seeds) and the folder."""

from __future__ import annotations

import json

import pytest

from golf_fast.export.records import load_runs, review, write_folder
from golf_fast.export.stub import ExportedScript
from golf_fast.train.config import preset

SCRIPT = ExportedScript(text=b"print(1)\n", wrapper="minify-lzma", modules=["golf_fast"], raw_bytes=100,
                        bundle_bytes=90, minified_bytes=80, counted=30_000, compiled_left_out=["golf_fast._C"])


def _run(root, seed, *, art=15_900_000, code=30_000, eval_s=300.0, train_s=590.0, compliance=None, cfg=None,
         device="NVIDIA H100 80GB HBM3", world=8, ok=True, adaptive_verdict="compliant"):
    d = root / f"seed{seed}"
    d.mkdir(parents=True)
    config = cfg or preset("record").to_dict()
    config = json.loads(json.dumps(config))
    config["run"]["seed"] = seed
    final = {"event": "final", "steps": 4900, "train_seconds": train_s, "seed": seed,
             "pre_quant": {"val_loss": 2.33, "val_bpb": 1.064, "tokens": 100, "bytes": 240},
             "round_trip": {"val_loss": 2.34, "val_bpb": 1.07, "tokens": 100, "bytes": 240},
             "round_trip_sliding": {"val_loss": 2.32 + seed * 1e-4, "val_bpb": 1.06 + seed * 1e-5, "tokens": 100,
                                    "bytes": 240},
             "artifact_bytes": art, "code_bytes": code, "submission_ok": ok,
             "phases": {"hessians": 4.0, "eval_round_trip": eval_s, "eval_adaptive": eval_s, "artifact_load": 10.0,
                        "artifact_load_exported": 10.0}}
    if compliance is not None:
        final["compliance"] = compliance
    if config["eval"]["adapt"].get("ttt", "none") != "none" and compliance is None:  # what the trainer records
        final["adaptive"] = {"mode": config["eval"]["adapt"]["ttt"], "val_loss": 2.31 + seed * 1e-4,
                             "val_bpb": 1.055 + seed * 1e-5, "tokens": 100, "bytes": 240,
                             "eval_compliance": adaptive_verdict}
    header = {"event": "header", "config": config, "device": device, "world_size": world, "git": "abc",
              "versions": {"torch": "2.9.1+cu128", "python": "3.12.3"}}
    (d / "metrics.jsonl").write_text(json.dumps(header) + "\n" + json.dumps(final) + "\n")
    (d / "train.log").write_text(f"seed {seed} log\n")
    return d


def test_a_compliant_three_seed_run_is_a_record(tmp_path):
    tok = tmp_path / "sp.model"
    tok.write_bytes(b"tokenizer bytes")
    cfg = preset("record").to_dict()
    cfg["data"]["tokenizer"] = str(tok)
    assert cfg["data"]["caseops"] is True
    for s in (42, 0, 1234):
        _run(tmp_path / "runs", s, cfg=cfg)
    runs = load_runs(tmp_path / "runs")
    rv = review(runs, SCRIPT, baseline=True)
    assert rv.record, rv.reasons
    files = write_folder(tmp_path / "out", runs, SCRIPT, rv, name="x")
    assert files == ["README.md", "prepare_caseops_data.py", "requirements.txt", "submission.json",
                     "tokenizers/sp.model", "train_gpt.py", "train_seed0.log", "train_seed1234.log", "train_seed42.log"]
    assert (tmp_path / "out" / "tokenizers" / "sp.model").read_bytes() == b"tokenizer bytes"
    sub = json.loads((tmp_path / "out" / "submission.json").read_text())
    assert sub["track"] == "10min_16mb" and sub["seeds"] == [0, 1234, 42] and sub["code_bytes"] == 30_000
    assert sub["bytes_total"] == 15_930_000 and sub["val_bpb"] == pytest.approx(1.055 + 1276 / 3 * 1e-5)
    s42 = sub["seed_results"]["42"]  # as in the records: artifact_bytes counts model + code
    assert s42["artifact_bytes"] == 15_930_000 and s42["model_bytes"] == 15_900_000
    assert sub["artifact_bytes_max"] == 15_930_000
    assert (s42["pre_quant_val_bpb"], s42["post_quant_val_bpb"]) == (1.064, pytest.approx(1.06 + 42e-5))
    assert s42["post_ttt_val_bpb"] == pytest.approx(1.055 + 42e-5)
    assert "CaseOps" in sub["technique_summary"] and "GPTQ" in sub["technique_summary"]
    assert "eval phased TTT" in sub["technique_summary"]  # the record preset's eval.adapt.ttt
    assert "codemath3000" in sub["attribution"]["method"] and "golf_fast" in sub["attribution"]["code"]
    assert sub["compliance"]["record"] is True and len(sub["compliance"]["evaluation"]) == 3
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "| Pre-quant val_bpb | Post-quant val_bpb | **Post-TTT val_bpb** |" in readme
    assert "| 42 | 4,900 | 120.4 | 1.06400 | 1.06042 | **1.05542** |" in readme
    assert "## Reproducing" in readme and "python prepare_caseops_data.py build --caseops" in readme
    assert "SEED=1234 RUN_ID=seed1234 torchrun --standalone --nproc_per_node=8 train_gpt.py" in readme
    assert "TOKENIZER_PATH=tokenizers/sp.model" in readme
    assert "**Record submission.**" in readme and "compliant (the evaluation checker's recorded verdict)" in readme
    assert "adaptive (phased) val_bpb" in readme


@pytest.mark.parametrize("kind, kwargs, needle", [
    ("verdict", {"compliance": {"compliant": False, "reason": "pre-quant TTT on val"}},
     "not compliant (recorded verdict: non-compliant (pre-quant TTT on val))"),
    ("verdict-str", {"compliance": {"round_trip_ttt": {"eval_compliance": "non-compliant: condition 1, 3"}}},
     "recorded verdict: non-compliant: condition 1, 3"),
    ("unverified", {"compliance": {"verdict": "unverified: condition 2"}}, "recorded verdict: unverified: condition 2"),
    ("budget", {"art": 15_990_000}, "> 16,000,000"),
    ("trainer-budget", {"ok": False}, "over budget"),
    ("eval-time", {"eval_s": 640.0}, "evaluation (exported artifact load + scoring) took 650.0 s > 600 s"),
    ("train-time", {"train_s": 599.0}, "training + Hessians took 603.0 s"),
    ("code-changed", {"code": 29_000}, "the package changed since the run"),
    ("code-unmeasured", {"code": None}, "code bytes were not measured"),
    ("hardware", {"device": "cpu", "world": 1}, "not 8×H100"),
    ("ttt-verdict", {"adaptive_verdict": "non-compliant: condition 3"}, "recorded verdict: non-compliant: condition 3"),
])
def test_refusals(tmp_path, kind, kwargs, needle):
    for s in (42, 0):
        _run(tmp_path / "runs", s)
    _run(tmp_path / "runs", 1234, **kwargs)
    runs = load_runs(tmp_path / "runs")
    rv = review(runs, SCRIPT, baseline=True)
    assert not rv.record
    assert any(needle in r and r.startswith("seed 1234") for r in rv.reasons), rv.reasons
    write_folder(tmp_path / "out", runs, SCRIPT, rv, name="x")
    assert needle in (tmp_path / "out" / "README.md").read_text()
    assert json.loads((tmp_path / "out" / "submission.json").read_text())["track"] == "non_record_16mb"


def test_adaptation_without_a_verdict_is_refused_and_few_seeds_too(tmp_path):
    cfg = preset("record").to_dict()
    cfg["eval"]["adapt"]["research"] = "prequant"  # issue 14's research mode
    cfg["eval"]["adapt"]["ttt"] = "none"
    _run(tmp_path / "runs", 42, cfg=cfg)
    rv = review(load_runs(tmp_path / "runs" / "seed42"), SCRIPT)
    assert not rv.record
    assert any("no compliance verdict was recorded" in r for r in rv.reasons)
    assert any("a record needs 3" in r for r in rv.reasons)


def test_a_compliant_verdict_is_reported(tmp_path):
    cfg = preset("record").to_dict()
    cfg["eval"]["adapt"]["ttt"] = "lora"
    for s in (42, 0, 1234):
        _run(tmp_path / "runs", s, cfg=cfg, compliance={"ttt": {"eval_compliance": "compliant"}})
    rv = review(load_runs(tmp_path / "runs"), SCRIPT, baseline=True)
    assert rv.record, rv.reasons
    assert "compliant (the evaluation checker's recorded verdict)" in rv.compliance


def test_runs_must_share_a_configuration(tmp_path):
    _run(tmp_path / "runs", 42)
    cfg = preset("record").to_dict()
    cfg["model"]["num_layers"] = 10
    _run(tmp_path / "runs", 0, cfg=cfg)
    with pytest.raises(ValueError, match="another configuration"):
        load_runs(tmp_path / "runs")
    with pytest.raises(FileNotFoundError, match="run_dir"):
        load_runs(tmp_path / "nope")


def test_three_seeds_without_a_baseline_are_not_a_record_and_the_score_is_the_compliant_one(tmp_path):
    for s in (42, 0, 1234):
        _run(tmp_path / "runs", s, adaptive_verdict="non-compliant: condition 1" if s == 0 else "compliant")
    runs = load_runs(tmp_path / "runs")
    rv = review(runs, SCRIPT)
    assert any("no --baseline" in r for r in rv.reasons)
    by_seed = {r.seed: r for r in runs}
    assert by_seed[0].score() is by_seed[0].final["round_trip_sliding"]  # not the non-compliant adaptive score
    assert by_seed[42].score() is by_seed[42].final["adaptive"]
    write_folder(tmp_path / "out", runs, SCRIPT, rv, name="x")
    sub = json.loads((tmp_path / "out" / "submission.json").read_text())
    assert sub["seed_results"]["0"]["val_bpb"] == by_seed[0].final["round_trip_sliding"]["val_bpb"]
    assert sub["seed_results"]["42"]["eval_time_s"] == 310.0  # the adaptive evaluation + the exported load


def test_an_unmeasured_exported_load_is_not_a_record(tmp_path):
    for s in (42, 0, 1234):
        d = _run(tmp_path / "runs", s)
        lines = (d / "metrics.jsonl").read_text().splitlines()
        final = json.loads(lines[1])
        del final["phases"]["artifact_load_exported"]  # only the package's own load was timed
        (d / "metrics.jsonl").write_text(lines[0] + "\n" + json.dumps(final) + "\n")
    rv = review(load_runs(tmp_path / "runs"), SCRIPT, baseline=True)
    assert not rv.record and all("evaluation time not measured" in r for r in rv.reasons), rv.reasons
