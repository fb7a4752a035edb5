"""Train the CPU states that ``bench_compression.py --states`` compares codecs on.

Record-width models (model_dim 512, 8 heads / 4 KV heads, MLP ×4: the record's attention and MLP
matrix shapes, vocabulary 8192 with the fineweb_8192 tokenizer) trained by ``golf-fast train``
on CPU, then GPTQ'd with the record's recipe; each run's ``model.gfa`` holds its codes. Lengths
differ so the benchmark shows how the codecs' gap moves with training. CPU cost (2 shared
cores, ``nice``): ~2-7 s per step of 256 tokens for 2 layers.

    PYTHONPATH=. python benchmarks/train_states.py --text /path/to/tinyshakespeare.txt \\
        --tokenizer /path/to/fineweb_8192_bpe.model --out runs/states [--runs L2_s150,L2_s600]

Runs already present (``<out>/<name>/model.gfa``) are skipped. ``runs/`` is git-ignored.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

# name → (layers, steps, tokens per step)
RUNS = {"L2_s150": (2, 150, 256), "L2_s600": (2, 600, 256), "L2_s1200": (2, 1200, 512), "L4_s2000": (4, 2000, 512)}


def train_command(name: str, layers: int, steps: int, batch: int, data_dir: str, out: str) -> list[str]:
    """The ``golf-fast train`` command line of one state (the smoke preset resized to record width)."""
    return [sys.executable, "-m", "golf_fast.cli", "train", "--preset", "smoke", "--no-code-bytes",
            "--model.vocab_size", "8192", "--model.num_layers", str(layers), "--model.model_dim", "512",
            "--model.num_heads", "8", "--model.num_kv_heads", "4", "--model.mlp_mult", "4", "--model.num_loops", "0",
            "--model.loop_start", "1", "--model.loop_end", str(layers - 1), "--model.parallel_start_layer",
            str(layers - 1), "--model.xsa_last_n", str(layers), "--model.max_seqlen", "256",
            "--data.data_dir", data_dir, "--data.train_batch_tokens", str(batch), "--data.max_val_tokens", "4096",
            "--schedule.clock", "steps", "--schedule.max_steps", str(steps), "--schedule.ema_decay", "0.99",
            "--optim.muon_momentum_warmup_steps", "100", "--quant.calibration_batches", "4",
            "--eval.seq_len", "256", "--eval.stride", "256", "--run.out_dir", out, "--run.name", name,
            "--run.log_every", "50", "--run.cpu_threads", "1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", required=True, help="training text (documents separated by blank lines)")
    ap.add_argument("--tokenizer", required=True, help="SentencePiece .model with 8192 pieces")
    ap.add_argument("--out", default="runs/states", help="folder of the runs (default runs/states, git-ignored)")
    ap.add_argument("--runs", default="L2_s150,L2_s600", help=f"comma-separated names among {sorted(RUNS)}")
    args = ap.parse_args()
    names = [n for n in args.runs.split(",") if n]
    bad = [n for n in names if n not in RUNS]
    if bad:
        ap.error(f"--runs: unknown {bad}; expected names among {sorted(RUNS)}")
    out = pathlib.Path(args.out)
    data = out / "data"
    if not (data / "COMPLETE").exists():
        subprocess.run([sys.executable, "-m", "golf_fast.cli", "data", "build", "--input", args.text,
                        "--vocab-size", "8192", "--out", str(data), "--tokenizer", args.tokenizer], check=True)
    for n in names:
        if (out / n / "model.gfa").exists():
            print(f"{n}: present, skipped")
            continue
        subprocess.run(train_command(n, *RUNS[n], str(data), str(out)), check=True)


if __name__ == "__main__":
    main()
