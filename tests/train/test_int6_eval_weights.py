"""Evaluation from packed int6 codes (``eval.weights=int6``, what ``auto`` picks on CUDA) through the
real pipeline: train → GPTQ → artifact → reload as int6 banks → plain/sliding eval with the void
fraction → phased TTT (which builds float weights itself). No stub evaluation anywhere: the numbers
are compared with the dequantized model of the same artifact."""

import math

import pytest
import torch

from golf_fast.artifact import load_artifact
from golf_fast.data.build import build_dataset
from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.shards import list_shards, load_tokens
from golf_fast.eval import evaluate
from golf_fast.eval.adapt.config import smoke_adapt
from golf_fast.eval.adapt.run import run_adaptive
from golf_fast.eval.ternary_void import matrices_of, to_host, void_fractions
from golf_fast.model import model_from_artifact
from golf_fast.train.config import apply_overrides, preset
from golf_fast.train.loop import train
from tiny_run import TEXT, TINY


@pytest.fixture(scope="module")
def int6_run(tmp_path_factory):
    """One tiny training run evaluated from int6 codes, with phased TTT at the end."""
    import random

    rng = random.Random(1)
    docs = [" ".join(rng.choice(TEXT) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    data_dir = build_dataset(docs, tmp_path_factory.mktemp("data") / "tiny", vocab_size=320, val_docs=12,
                             progress=lambda s: None)
    out = tmp_path_factory.mktemp("runs")
    cfg = apply_overrides(preset("smoke"), {**TINY, "data.data_dir": str(data_dir), "run.out_dir": str(out),
                                            "run.name": "int6", "eval.weights": "int6", "eval.adapt.ttt": "phased",
                                            "data.max_val_tokens": 1024,
                                            "model.max_seqlen": 256})  # the smoke TTT window is 256
    return train(cfg), data_dir


def test_int6_round_trip_eval_runs_and_matches_the_dequantized_model(int6_run):
    res, data_dir = int6_run
    assert res.round_trip is not None and res.round_trip_sliding is not None
    art = load_artifact(res.artifact_path)
    deq = model_from_artifact(art, weights="dequantized")
    deq.looping_active = True
    val = load_tokens(list_shards(data_dir, "val"))[:1024]
    table = TokenByteTable.from_sentencepiece(str(data_dir / "tokenizer.model"), vocab_size=320)
    r = evaluate(deq, val, table, seq_len=64, batch_seqs=8)
    # int6 kernel (eager reference on CPU) vs dense fp32 matmul of the same weights: rounding only
    assert abs(res.round_trip["val_bpb"] - r.val_bpb) < 1e-4
    # the void fraction of the int6 model is the dequantized model's, measured on the same weights
    vf = to_host(*void_fractions(matrices_of(deq)))[1]
    assert res.round_trip["void_fraction"] == pytest.approx(vf, abs=1e-6)
    assert 0 < vf < 1


def test_int6_round_trip_runs_phased_ttt(int6_run):
    res, _ = int6_run
    assert res.adaptive is not None and math.isfinite(res.adaptive["val_bpb"])
    assert res.adaptive["eval_compliance"] == "compliant"  # the checker ran on the adapted stream


@pytest.fixture(scope="module")
def int6_artifact(int6_run):
    return load_artifact(int6_run[0].artifact_path)


def test_int6_model_gives_its_dequantized_matrices(int6_artifact):
    a = model_from_artifact(int6_artifact, weights="int6")
    b = model_from_artifact(int6_artifact, weights="dequantized")
    assert a.runs_from_int6 and not b.runs_from_int6
    sa, sb = a.unbanked_state_dict(), b.unbanked_state_dict()
    assert set(sa) == set(sb)
    for k in sb:
        assert torch.equal(sa[k], sb[k]), k


def test_restore_float_banks_equals_the_dequantized_load(int6_artifact):
    a = model_from_artifact(int6_artifact, weights="int6")
    b = model_from_artifact(int6_artifact, weights="dequantized")
    a.restore_float_banks()
    assert not a.runs_from_int6
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sb:
        assert torch.equal(sa[k], sb[k]), k
    x = torch.randint(0, 320, (1, 32))
    assert torch.equal(a.logits(x), b.logits(x))
    a.restore_float_banks()  # a no-op now


@pytest.mark.parametrize("mode", [dict(ttt="adamw"), dict(slot="causal"), dict(ttt="lora")])
def test_run_adaptive_on_an_int6_model_equals_the_dequantized_model(int6_run, int6_artifact, mode):
    _, data_dir = int6_run
    val = load_tokens(list_shards(data_dir, "val"))[:600]
    table = TokenByteTable.from_sentencepiece(str(data_dir / "tokenizer.model"), vocab_size=320)
    results = []
    for weights in ("int6", "dequantized"):
        cfg = smoke_adapt()
        cfg.seq_len = 64
        for k, v in mode.items():
            setattr(cfg, k, v)
        m = model_from_artifact(int6_artifact, weights=weights)
        results.append(run_adaptive(m, val, table, cfg).result.val_bpb)
        assert not m.runs_from_int6
    assert results[0] == results[1]
