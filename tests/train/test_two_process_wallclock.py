"""``torchrun --nproc_per_node=2`` (gloo) under the record's wallclock clock with the whole post-training
pipeline: the ranks agree on when to stop (the clock's max over ranks), the Hessians are summed, GPTQ is
split across the ranks, and the run finishes with a round-tripped artifact."""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from golf_fast.artifact import load_artifact
from golf_fast.data.build import build_dataset

ROOT = Path(__file__).resolve().parents[2]
WORDS = "a quick brown fox jumps over the lazy dog she sells sea shells by the shore".split()
TINY = {
    "model.vocab_size": 320, "model.num_layers": 2, "model.model_dim": 32, "model.num_heads": 2,
    "model.num_kv_heads": 1, "model.loop_start": 0, "model.loop_end": 1, "model.parallel_start_layer": 1,
    "model.max_seqlen": 64, "model.rope_dims": 8, "model.xsa_last_n": 2,
    "data.train_batch_tokens": 512, "data.grad_accum": 1, "data.prefetch": 1,
    "schedule.clock": "wallclock", "schedule.max_wallclock_s": 90, "schedule.max_steps": 3,
    "quant.calibration_batches": 1, "eval.seq_len": 64, "eval.stride": 0, "eval.batch_seqs": 8,
    "run.log_every": 1, "run.compile": "off", "run.device": "cpu", "optim.grad_clip": 0,
}


@pytest.mark.slow
def test_two_ranks_wallclock_clock_with_gptq_and_artifact(tmp_path):
    rng = random.Random(81)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(200)]
    data = build_dataset(docs, tmp_path / "data", vocab_size=320, val_docs=20, progress=lambda s: None)
    args = sum(([f"--{k}", str(v)] for k, v in {**TINY, "data.data_dir": str(data), "run.out_dir": str(tmp_path),
                                                  "run.name": "wc2"}.items()), [])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "golf_fast.train"] + args
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=300)
    except subprocess.TimeoutExpired:  # a rank that stopped alone would leave the other waiting
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        pytest.fail("torchrun timed out (did the ranks disagree on the last step?):\n" + out[-3000:])
    assert p.returncode == 0, out[-4000:]
    events = [json.loads(ln) for ln in (tmp_path / "wc2" / "metrics.jsonl").read_text().splitlines()]
    header = next(e for e in events if e["event"] == "header")
    assert header["world_size"] == 2 and header["config"]["schedule"]["clock"] == "wallclock"
    final = next(e for e in events if e["event"] == "final")
    assert final["round_trip"]["val_bpb"] > 0
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(1, len(steps) + 1)) and 1 <= len(steps) <= 3
    art = load_artifact(tmp_path / "wc2" / "model.gfa")
    assert art.config["num_layers"] == 2
    assert "hessian reserve" in out and "round-trip val_bpb" in out
