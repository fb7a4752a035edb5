"""``run.device_profile``: every ``auto`` resolves as on an H100 and the run goes through train →
artifact → reload → eval → phased TTT → export on this CPU, each choice through its stand-in."""

import json
import random
from pathlib import Path

import pytest

from golf_fast import cli
from golf_fast.artifact import load_artifact
from golf_fast.data.build import build_dataset
from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.shards import list_shards, load_tokens
from golf_fast.eval import evaluate
from golf_fast.model import model_from_artifact
from golf_fast.train.config import apply_overrides, preset
from golf_fast.train.device_profile import fused_modes, resolve_profile
from golf_fast.train.loop import train
from tiny_run import TEXT, TINY

H100 = {"run.device": "cuda", "run.autocast": "bf16", "run.compile": "on", "run.attention": "fa3",
        "optim.graph_step": "on", "eval.weights": "int6", "model.fused_cross_entropy": "golf_fast op",
        "model.fused_mlp": "golf_fast op", "ops.backends": "triton"}
CPU = {"run.device": "cpu", "run.autocast": "fp32", "run.compile": "off", "run.attention": "sdpa",
       "optim.graph_step": "off", "eval.weights": "dequantized", "model.fused_cross_entropy": "eager",
       "model.fused_mlp": "eager", "ops.backends": "cpp/reference"}
AUTO = {"run.device": "auto", "run.autocast": "auto", "run.compile": "auto", "run.attention": "auto",
        "optim.graph_step": "auto", "eval.weights": "auto"}


def _cfg(**ov):
    return apply_overrides(preset("smoke"), {**AUTO, **ov})


@pytest.mark.parametrize("name,device,want", [("h100", "cpu", H100), ("h100", "cuda", H100), ("cpu", "cpu", CPU),
                                              ("cpu", "cuda", CPU), ("auto", "cuda", H100), ("auto", "cpu", CPU)])
def test_every_auto_resolves_as_the_profile_says(name, device, want):
    p = resolve_profile(_cfg(**{"run.device_profile": name}), device)
    values = {k: c.value for k, c in p.choices.items()}
    assert {k: v for k, v in values.items() if k != "run.device"} == {k: v for k, v in want.items() if k != "run.device"}
    assert p.here("run.device") == device
    # on the profile's own device nothing stands in; an H100 profile on a CPU names a stand-in for
    # every GPU-only choice
    stand_ins = {k for k, c in p.choices.items() if c.stand_in}
    if p.target == device:
        assert stand_ins == set()
    elif name == "h100":
        assert stand_ins == set(H100)
    assert fused_modes(p) == (("always", "always") if name == "h100" and device == "cpu" else ("cuda", "cuda"))


def test_explicit_values_win_over_the_profile():
    p = resolve_profile(_cfg(**{"run.device_profile": "h100", "run.compile": "off", "eval.weights": "dequantized",
                                "run.autocast": "fp32"}), "cpu")
    assert p.value("run.compile") == "off" and p.value("eval.weights") == "dequantized"
    assert fused_modes(p) == ("always", "cuda")  # the fused MLP needs bf16: eager under fp32, as on an H100
    p = resolve_profile(_cfg(**{"run.device_profile": "cpu", "optim.graph_step": "on"}), "cuda")
    assert p.value("optim.graph_step") == "on"


def test_the_readme_table_lists_every_choice():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for key in ("run.device", "run.autocast", "run.compile", "run.attention", "optim.graph_step", "eval.weights"):
        assert f"| `{key}` |" in text, key
    assert "--device-profile h100" in text


@pytest.fixture(scope="module")
def h100_run(tmp_path_factory):
    rng = random.Random(3)
    docs = [" ".join(rng.choice(TEXT) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    data_dir = build_dataset(docs, tmp_path_factory.mktemp("data") / "tiny", vocab_size=320, val_docs=12,
                             progress=lambda s: None)
    out = tmp_path_factory.mktemp("runs")
    calls = {"softcapped_cross_entropy": 0, "leaky_relu_square_mlp": 0, "bank_linear@int6": 0}

    def counting(name, fn, when=lambda *a: True):
        def wrapped(*args, **kwargs):
            if when(*args):
                calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    import golf_fast.model.gpt as gpt
    from golf_fast.nn.int6_bank import Int6Matrix
    ov = {**TINY, **AUTO, "run.device": "cpu", "data.data_dir": str(data_dir), "run.out_dir": str(out),
          "run.name": "h100", "run.device_profile": "h100", "eval.adapt.ttt": "phased", "data.max_val_tokens": 1024,
          "model.max_seqlen": 256}  # the smoke TTT window is 256
    with pytest.MonkeyPatch.context() as mp:  # count the fused and int6 paths this run takes
        mp.setattr(gpt, "softcapped_cross_entropy", counting("softcapped_cross_entropy", gpt.softcapped_cross_entropy))
        mp.setattr(gpt, "leaky_relu_square_mlp", counting("leaky_relu_square_mlp", gpt.leaky_relu_square_mlp))
        mp.setattr(gpt, "bank_linear", counting("bank_linear@int6", gpt.bank_linear,
                                                lambda x, w, *a: isinstance(w, Int6Matrix)))
        res = train(apply_overrides(preset("smoke"), ov))
    return res, data_dir, out, calls


def test_h100_profile_runs_the_whole_pipeline_through_its_stand_ins(h100_run, tmp_path):
    res, data_dir, out, calls = h100_run
    run_dir = Path(res.run_dir)
    events = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    prof = next(e for e in events if e["event"] == "device_profile")
    assert prof["name"] == "h100" and {k: v["value"] for k, v in prof["choices"].items() if k != "run.device"} == \
        {k: v for k, v in H100.items() if k != "run.device"}
    log = (run_dir / "train.log").read_text()
    for line in ("autocast: torch.bfloat16", "muon step: eager", "round-trip weights: int6",
                 "device profile h100 on cpu", "run.compile: on  (stand-in here: off (eager))",
                 "round-trip model: block matrices packed int6 codes"):
        assert line in log, line
    # the fused CE (training loss), the fused MLP (bf16) and int6_linear (round-trip eval) ran as golf_fast ops
    assert calls["softcapped_cross_entropy"] == res.steps  # every training step's loss
    assert calls["leaky_relu_square_mlp"] > 0 and calls["bank_linear@int6"] > 0, calls
    for op in ("softcapped_ce@cpu", "leaky_relu_square_mlp@cpu", "int6_linear@cpu"):
        assert op in log, op  # the final table names the CPU backend that stood in
    # the round trip ran (no stub) and phased TTT scored every token with the checker's verdict
    assert res.round_trip is not None and res.adaptive is not None
    assert res.adaptive["eval_compliance"] == "compliant" and res.adaptive["tokens"] > 0

    # reload: the artifact as int6 banks with the profile's kernels gives the run's number again
    m = model_from_artifact(load_artifact(res.artifact_path), weights="int6")
    m.fused_kernels.cross_entropy, m.fused_kernels.mlp = "always", "always"
    m.looping_active = True
    import torch
    val = load_tokens(list_shards(data_dir, "val"))[:1024]
    table = TokenByteTable.from_sentencepiece(str(data_dir / "tokenizer.model"), vocab_size=320)
    r = evaluate(m, val, table, seq_len=64, batch_seqs=8, dtype=torch.bfloat16)
    assert r.val_bpb == pytest.approx(res.round_trip["val_bpb"], abs=1e-9)

    # export: the records folder with a train_gpt.py that carries the profile
    dest = tmp_path / "records"
    assert cli.main(["export", str(run_dir), "--out", str(dest)]) == 0
    script = dest / "train_gpt.py"
    assert script.is_file() and script.stat().st_size > 0
    sub = json.loads((dest / "submission.json").read_text())
    assert sub["val_bpb"] == pytest.approx(res.adaptive["val_bpb"]) or sub["val_bpb"] == pytest.approx(
        res.round_trip_sliding["val_bpb"]) or sub["val_bpb"] == pytest.approx(res.round_trip["val_bpb"])
