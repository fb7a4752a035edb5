"""``golf-fast eval ARTIFACT``: a fresh process evaluates an artifact file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("golf_fast.artifact", reason="needs golf_fast.artifact (the artifact format)")

from golf_fast.artifact import save_artifact  # noqa: E402
from golf_fast.data.build import build_dataset  # noqa: E402
from golf_fast.data.byte_table import TokenByteTable  # noqa: E402
from golf_fast.data.shards import list_shards, load_tokens  # noqa: E402
from golf_fast.eval import evaluate  # noqa: E402
from golf_fast.model.config import ModelConfig  # noqa: E402
from golf_fast.model.gpt import GPT  # noqa: E402
from golf_fast.quant.formats import quantize_rtn  # noqa: E402
from golf_fast.model.from_artifact import load_model_from_artifact  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_eval_artifact_in_a_fresh_process(tmp_path):
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat while dogs ran far away from home".split()
    docs = [" ".join(rng.choice(words, size=rng.integers(3, 30))) for _ in range(120)]
    data = build_dataset(docs, tmp_path / "d", vocab_size=300, val_docs=20, progress=lambda s: None)
    cfg = ModelConfig(vocab_size=300, num_layers=4, model_dim=64, num_heads=2, num_kv_heads=1, loop_start=1,
                      loop_end=2, parallel_start_layer=3, max_seqlen=64, rope_dims=8)
    torch.manual_seed(0)
    model = GPT(cfg)
    state = model.unbanked_state_dict()
    tensors = {k: (quantize_rtn(v, 6, 12.0) if k in model.matrix_names() else v.half()) for k, v in state.items()}
    path = tmp_path / "m.gfa"
    size = save_artifact(path, tensors, cfg)
    assert size == os.path.getsize(path)
    fresh = load_model_from_artifact(path, torch.device("cpu"))
    fresh.looping_active = True
    val = load_tokens(list_shards(data, "val"))
    table = TokenByteTable.from_sentencepiece(str(data / "tokenizer.model"), vocab_size=300)
    want = evaluate(fresh, val, table, seq_len=32)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "golf_fast.cli", "eval", str(path), "--data.data_dir", str(data),
                        "--eval.seq_len", "32", "--eval.stride", "8", "--eval.adapt.ttt", "none",
                        "--run.precision", "fp32"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["plain"]["val_bpb"] == pytest.approx(want.val_bpb, rel=1e-6)
    assert out["sliding"]["tokens"] == want.tokens and out["artifact_bytes"] == size
    assert out["weights"] == "dequantized"  # auto on CPU
    # the same artifact with its block matrices kept as int6 codes (CPU: the fp32 reference product)
    p = subprocess.run([sys.executable, "-m", "golf_fast.cli", "eval", str(path), "--data.data_dir", str(data),
                        "--eval.seq_len", "32", "--eval.stride", "0", "--eval.weights", "int6",
                        "--eval.adapt.ttt", "none", "--run.precision", "fp32"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    out6 = json.loads(p.stdout)
    assert out6["weights"] == "int6"
    assert out6["plain"]["val_bpb"] == pytest.approx(want.val_bpb, rel=1e-5)  # fp32 summation order only
    path.write_bytes(path.read_bytes()[:-10])  # truncated: a clear error, no traceback soup
    p = subprocess.run([sys.executable, "-m", "golf_fast.cli", "eval", str(path), "--data.data_dir", str(data)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "truncated" in p.stderr
