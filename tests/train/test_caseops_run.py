"""A short training run on CaseOps data: val_bpb counts the sidecar's original-text bytes, the record's
precision recipe and calibration reader run end to end, and the artifact carries gates and LQER."""

import random

import pytest

from golf_fast.artifact import load_artifact
from golf_fast.data.build import build_dataset
from golf_fast.data.loader import DocumentPackingLoader
from golf_fast.data.shards import list_shards, load_tokens, load_val_bytes
from golf_fast.data.windows import RandomWindowLoader
from golf_fast.distributed import Dist
from golf_fast.train.batches import TrainData
from golf_fast.train.config import apply_overrides, preset
from golf_fast.train.loop import train

WORDS = ["The", "cat", "NASA", "iPhone", "sat", "on", "McDonald", "mat", "A", "quick", "Brown", "fox", "OK", "dog"]
TINY = {
    "model.vocab_size": 320, "model.num_layers": 4, "model.model_dim": 32, "model.num_heads": 4,
    "model.num_kv_heads": 2, "model.loop_start": 1, "model.loop_end": 2, "model.parallel_start_layer": 3,
    "model.max_seqlen": 64, "model.rope_dims": 8, "model.xsa_last_n": 4, "model.gate_window": 8,
    "data.train_batch_tokens": 512, "data.grad_accum": 1, "data.prefetch": 1,
    "schedule.clock": "steps", "schedule.max_steps": 4, "schedule.enable_looping_at": 0.5,
    "quant.calibration_batches": 2, "eval.seq_len": 64, "eval.stride": 0, "eval.batch_seqs": 8,
    "run.log_every": 1, "run.compile": "off", "run.device": "cpu",
}


def _docs(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def caseops_dir(tmp_path_factory):
    return build_dataset(_docs(300, 1550), tmp_path_factory.mktemp("data") / "caseops", vocab_size=320, val_docs=30,
                         caseops=True, progress=lambda s: None)


def _cfg(data_dir, tmp_path, **extra):
    ov = {**TINY, "data.data_dir": str(data_dir), "run.out_dir": str(tmp_path), "run.name": "run", **extra}
    return apply_overrides(preset("smoke"), ov)


def test_run_on_caseops_counts_original_bytes(caseops_dir, tmp_path, capsys):
    res = train(_cfg(caseops_dir, tmp_path, **{"data.caseops": True, "run.precision": "record"}))
    out = capsys.readouterr().out
    assert "CaseOps sidecars" in out and "precision: record" in out and "calibration: windows" in out
    assert "int8 per-row gates: 4" in out and "LQER: " in out
    val_files = list_shards(caseops_dir, "val")
    nb = load_val_bytes(val_files)
    T = ((load_tokens(val_files).size - 1) // 64) * 64
    for r in (res.pre_quant, res.round_trip):  # the bytes are the sidecar's, target by target
        assert r["tokens"] == T and r["bytes"] == int(nb[1:T + 1].sum())
    art = load_artifact(res.artifact_path)
    assert art.state["blocks.0.attn.attn_gate_w"].bits == 8
    assert sum(k.endswith(".lqer.meta") for k in art.state) == 3
    assert abs(res.round_trip["val_bpb"] - res.pre_quant["val_bpb"]) < 0.05


def test_caseops_flag_needs_sidecars(tmp_path):
    plain = build_dataset(_docs(60, 1551), tmp_path / "plain", vocab_size=320, val_docs=6, progress=lambda s: None)
    cfg = _cfg(plain, tmp_path, **{"data.caseops": True})
    with pytest.raises(FileNotFoundError, match="data.caseops"):
        TrainData.load(cfg, Dist(), lambda s: None)
    data = TrainData.load(_cfg(plain, tmp_path), Dist(), lambda s: None)
    assert data.val_bytes is None  # plain data keeps the lookup tables


def test_calibration_reader_follows_the_config(caseops_dir, tmp_path):
    data = TrainData.load(_cfg(caseops_dir, tmp_path), Dist(), lambda s: None)
    assert data.val_bytes is not None and len(data.val_bytes) == len(data.val)
    w = data.calibration_loader()
    assert isinstance(w, RandomWindowLoader)
    b = w.next_batch()
    assert b.x.shape == (512 // 64, 64)  # tokens_per_rank // seq_len windows of max_seqlen
    data = TrainData.load(_cfg(caseops_dir, tmp_path, **{"quant.calibration": "batches"}), Dist(), lambda s: None)
    p = data.calibration_loader()
    try:
        assert isinstance(p, DocumentPackingLoader) and p.next_batch().x.shape == (1, 512)
    finally:
        p.close()
