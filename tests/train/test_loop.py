"""The training program end to end on a tiny corpus (the artifact holds exactly the quantizer's output; the
round-trip gap is bounded); NaN stop; 2-process gloo == 1 process."""

import json
import math
import os
from pathlib import Path

import pytest
import torch

import golf_fast.train.loop as loop_module
from golf_fast.artifact import load_artifact
from golf_fast.data.build import build_dataset
from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.shards import list_shards, load_tokens
from golf_fast.eval import evaluate
from golf_fast.model import model_from_artifact
from golf_fast.quant import QuantizedTensor
from golf_fast.train.config import apply_overrides, preset
from golf_fast.train.loop import train
from golf_fast.train.result import TrainingDiverged
from tiny_run import TEXT, TINY, torchrun_train



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    import random

    rng = random.Random(0)
    docs = [" ".join(rng.choice(TEXT) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    return build_dataset(docs, tmp_path_factory.mktemp("data") / "tiny", vocab_size=320, val_docs=30,
                         progress=lambda s: None)


def _cfg(data_dir, tmp_path, **extra):
    ov = {**TINY, "data.data_dir": str(data_dir), "run.out_dir": str(tmp_path), "run.name": "run", **extra}
    return apply_overrides(preset("smoke"), ov)


def _events(run_dir, kind):
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


# |round-trip − pre-quant| val_bpb of this 4-step run, measured 0.0013 (torch 2.13, CPU); the bound leaves a
# margin for other platforms' float rounding, and the zeroed-matrix control below is far outside it.
GAP_BOUND = 0.01


def test_short_end_to_end_run(data_dir, tmp_path, capsys, monkeypatch):
    captured = {}

    def spy(*args, **kwargs):  # keep what the quantizer produced, to compare with the file
        captured["rt"] = rt = real_round_trip(*args, **kwargs)
        return rt

    real_round_trip = loop_module.round_trip
    monkeypatch.setattr(loop_module, "round_trip", spy)
    res = train(_cfg(data_dir, tmp_path))
    assert res.steps == 4 and len(res.losses) == 4 and all(math.isfinite(v) for v in res.losses)
    assert res.losses[-1] < res.losses[0]
    assert 0 < res.pre_quant["val_bpb"] < 20 and res.pre_quant_sliding["tokens"] == res.pre_quant["tokens"]
    out = capsys.readouterr().out
    for needle in ("golf_fast train", "versions", "git:", "step     4", "ms/step", "tok/s", "ETA",
                   "pre-quant val_bpb", "round-trip val_bpb", "artifact bytes", "backends"):
        assert needle in out, needle
    assert [e["step"] for e in _events(res.run_dir, "step")] == [1, 2, 3, 4]
    assert res.phases["hessians"] > 0  # collected from training batches inside the window
    # the exported script's own load (portable decoder) is timed: it counts toward the evaluation time
    assert res.phases["artifact_load_exported"] > 0
    final = _events(res.run_dir, "final")[0]
    assert final["pre_quant"]["val_bpb"] == res.pre_quant["val_bpb"]
    assert res.round_trip is not None and res.notes == []  # GPTQ → artifact → fresh load → eval ran
    assert Path(res.artifact_path).is_file() and res.artifact_bytes == os.path.getsize(res.artifact_path)

    # the decoded artifact holds exactly what the quantizer produced (codes, scales, fp16 passthrough)
    quantized = captured["rt"].quantized
    art = load_artifact(res.artifact_path)
    assert set(art.state) == set(quantized)
    n_matrices = 0
    for name, want in quantized.items():
        got = art.state[name]
        if isinstance(want, QuantizedTensor):
            n_matrices += 1
            assert isinstance(got, QuantizedTensor) and got.bits == want.bits, name
            assert torch.equal(got.codes, want.codes) and torch.equal(got.scales, want.scales), name
        else:
            assert got.dtype == want.dtype and torch.equal(got, want), name
    assert n_matrices == 4 * 6 + 1  # the 6 matrices of each of the 4 layers and the embedding

    gap = abs(res.round_trip["val_bpb"] - res.pre_quant["val_bpb"])
    print(f"round-trip gap {gap:.6f} bpb")
    assert gap < GAP_BOUND
    # control: the same artifact with every quantized matrix zeroed lands far outside the bound
    art.state = {k: QuantizedTensor(torch.zeros_like(v.codes), v.scales, v.bits) if isinstance(v, QuantizedTensor)
                 else v for k, v in art.state.items()}
    zeroed = model_from_artifact(art)
    zeroed.looping_active = True
    val = load_tokens(list_shards(data_dir, "val"))
    table = TokenByteTable.from_sentencepiece(str(data_dir / "tokenizer.model"), vocab_size=320)
    r = evaluate(zeroed, val, table, seq_len=64, batch_seqs=8)
    print(f"zeroed-matrix gap {abs(r.val_bpb - res.pre_quant['val_bpb']):.6f} bpb")
    assert abs(r.val_bpb - res.pre_quant["val_bpb"]) > 10 * GAP_BOUND


def test_nan_loss_stops_with_step_loss_and_lrs(data_dir, tmp_path):
    cfg = _cfg(data_dir, tmp_path, **{"optim.scalar_lr": 1e30, "optim.embed_lr": 1e30, "optim.grad_clip": 0.0, "optim.scalar_wd": 0.0, "optim.embed_wd": 0.0,
                                      "schedule.max_steps": 6, "quant.enabled": False})
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) at step \d+ .*scalar=[0-9.]+e\+29"):
        train(cfg)




@pytest.mark.slow
def test_two_process_gloo_equals_one_process(data_dir, tmp_path):
    """World 2 × accum 1 and world 1 × accum 2 read the same tokens: the same loss curve.

    The banks go through Parallel Muon (reduce-scatter → Newton-Schulz on the shard → all-gather on
    two ranks; plain Muon on one), the other parameters through the trainer's packed all-reduce.
    """
    ov = {**TINY, "data.data_dir": str(data_dir), "run.out_dir": str(tmp_path), "quant.enabled": False,
          "eval.stride": 0, "optim.grad_clip": 0}  # Parallel Muon on the banks
    common = sum(([f"--{k}", str(v)] for k, v in ov.items() if k != "data.grad_accum"), [])
    common += ["--no-code-bytes"]  # the program counts code bytes by default (tested with two ranks elsewhere)
    torchrun_train(common + ["--run.name", "w2", "--data.grad_accum", "1"], 2, tmp_path)
    torchrun_train(common + ["--run.name", "w1", "--data.grad_accum", "2"], 1, tmp_path)
    l2 = [e["loss"] for e in _events(tmp_path / "w2", "step")]
    l1 = [e["loss"] for e in _events(tmp_path / "w1", "step")]
    assert len(l1) == len(l2) == 4
    assert l1 == pytest.approx(l2, rel=2e-5)
    h2, h1 = _events(tmp_path / "w2", "header")[0], _events(tmp_path / "w1", "header")[0]
    assert (h2["world_size"], h2["grad_accum"], h1["world_size"], h1["grad_accum"]) == (2, 1, 1, 2)
    assert h2["config"]["optim"]["matrix_optimizer"] == h1["config"]["optim"]["matrix_optimizer"] == "muon"
    v1 = _events(tmp_path / "w1", "eval")[0]["val_bpb"]
    v2 = _events(tmp_path / "w2", "eval")[0]["val_bpb"]
    assert v1 == pytest.approx(v2, rel=1e-5)
