"""``torchrun --nproc_per_node=2`` (gloo) under the record's wallclock clock with the whole post-training
pipeline: the ranks agree on when to stop (the clock's max over ranks), the Hessians are summed, GPTQ is
split across the ranks, and the run finishes with a round-tripped artifact."""

import json
import random

import pytest

from golf_fast.artifact import load_artifact
from golf_fast.data.build import build_dataset
from tiny_run import WALLCLOCK_TINY, torchrun_train

WORDS = "a quick brown fox jumps over the lazy dog she sells sea shells by the shore".split()
TINY = {**WALLCLOCK_TINY, "schedule.max_wallclock_s": 90, "quant.calibration_batches": 1, "eval.stride": 0}


@pytest.mark.slow
def test_two_ranks_wallclock_clock_with_gptq_and_artifact(tmp_path):
    rng = random.Random(81)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40))) for _ in range(200)]
    data = build_dataset(docs, tmp_path / "data", vocab_size=320, val_docs=20, progress=lambda s: None)
    args = sum(([f"--{k}", str(v)] for k, v in {**TINY, "data.data_dir": str(data), "run.out_dir": str(tmp_path),
                                                  "run.name": "wc2"}.items()), [])
    out = torchrun_train(args, 2, tmp_path, timeout=300)
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
    # the README's torchrun line is the one program: it counts the exported script's code bytes
    # and budgets code + artifact with them
    assert "code bytes:" in out
    assert isinstance(final.get("code_bytes"), int) and final["code_bytes"] > 0, final
