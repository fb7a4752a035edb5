"""The smallest trainer configuration that still runs every stage (looping, parallel lanes, XSA, EMA,
Hessians, GPTQ, golf-rans artifact, reload, plain + sliding eval) and the text it trains on; shared by
the end-to-end tests of the trainer and of the export (tests/ is on sys.path); :func:`torchrun_train`
runs ``golf_fast.cli train`` under torchrun in a subprocess."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TEXT = ["the cat sat on the mat and the dog sat on the log", "a quick brown fox jumps over the lazy dog",
        "she sells sea shells by the sea shore", "peter piper picked a peck of pickled peppers",
        "how much wood would a woodchuck chuck if a woodchuck could chuck wood"]

TINY = {
    "model.vocab_size": 320, "model.num_layers": 4, "model.model_dim": 32, "model.num_heads": 2,
    "model.num_kv_heads": 1, "model.loop_start": 1, "model.loop_end": 2, "model.parallel_start_layer": 3,
    "model.max_seqlen": 64, "model.rope_dims": 8, "model.xsa_last_n": 4,
    "data.train_batch_tokens": 512, "data.grad_accum": 1, "data.prefetch": 1,
    "schedule.clock": "steps", "schedule.max_steps": 4, "schedule.enable_looping_at": 0.5,
    "quant.calibration_batches": 2, "eval.seq_len": 64, "eval.stride": 32, "eval.batch_seqs": 8,
    "run.log_every": 1, "run.compile": "off", "run.device": "cpu",
}

WALLCLOCK_TINY = {
    **TINY, "model.num_layers": 2, "model.loop_start": 0, "model.loop_end": 1, "model.parallel_start_layer": 1,
    "model.xsa_last_n": 2, "schedule.clock": "wallclock", "schedule.max_wallclock_s": 120.0, "schedule.max_steps": 3,
    "optim.grad_clip": 0.0,  # Parallel Muon on the banks
}
"""Two layers under the wallclock clock (the record default): the multi-rank clock and collectives."""


def torchrun_train(args: list, nproc: int, cwd, timeout: float = 240) -> str:
    """``python -m torch.distributed.run --nproc_per_node=nproc -m golf_fast.cli train *args`` in ``cwd``
    (one CPU thread per rank); its output. Fails the test on a timeout (killing the launcher and its
    workers) or a non-zero exit."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "golf_fast.cli", "train"] + list(args)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a rank that stopped alone would leave the other waiting
        os.killpg(p.pid, signal.SIGKILL)  # the launcher and the workers it started
        out, _ = p.communicate()
        pytest.fail("torchrun timed out:\n" + out[-3000:])
    assert p.returncode == 0, out[-4000:]
    return out
