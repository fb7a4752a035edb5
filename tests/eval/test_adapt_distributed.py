"""Two gloo ranks under torchrun give the one-process result for every adaptive mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .adapt_worker import MODES, run_modes

WORKER = Path(__file__).with_name("adapt_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tmp_path):
    out = tmp_path / "two.json"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                           str(WORKER), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = json.loads(out.read_text())
    assert two["world"] == 2
    one = run_modes(0, 1)
    assert set(one) == set(two["modes"]) == set(MODES)
    for name, r1 in one.items():
        r2 = two["modes"][name]
        assert r2["tokens"] == r1["tokens"], name  # every position scored once, on some rank
        # per-document LoRA is bit-identical; gradient sums over ranks change only fp32 rounding
        assert r2["val_bpb"] == pytest.approx(r1["val_bpb"], rel=1e-6, abs=0), name
        assert r1["flag"] == r2["flag"] == "compliant", (name, r1["flag"], r2["flag"])
        if name == "lora":
            assert r2["val_bpb"] == r1["val_bpb"]
