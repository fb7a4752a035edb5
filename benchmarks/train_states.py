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

# name → (layers, steps, tokens per step); the G* runs are sized for a GPU (``--device cuda``)
RUNS = {"L2_s150": (2, 150, 256), "L2_s600": (2, 600, 256), "L2_s1200": (2, 1200, 512), "L4_s2000": (4, 2000, 512), "L4_s800": (4, 800, 512), "L4_s1200": (4, 1200, 512),
        "G4_s2000": (4, 2000, 8192), "G11_s1200": (11, 1200, 16384)}


def train_command(name: str, layers: int, steps: int, batch: int, data_dir: str, out: str,
                  device: str = "cpu") -> list[str]:
    """The ``golf-fast train`` command line of one state (the smoke preset resized to record width;
    on ``device`` ``cuda`` eager, so the state does not depend on compile warm-up)."""
    return [sys.executable, "-m", "golf_fast.cli", "train", "--preset", "smoke", "--no-code-bytes",
            "--model.vocab_size", "8192", "--model.num_layers", str(layers), "--model.model_dim", "512",
            "--model.num_heads", "8", "--model.num_kv_heads", "4", "--model.mlp_mult", "4", "--model.num_loops", "0",
            "--model.loop_start", "1", "--model.loop_end", str(layers - 1), "--model.parallel_start_layer",
            str(layers - 1), "--model.xsa_last_n", str(layers), "--model.max_seqlen", "256",
            "--data.data_dir", data_dir, "--data.train_batch_tokens", str(batch), "--data.max_val_tokens", "4096",
            "--schedule.clock", "steps", "--schedule.max_steps", str(steps), "--schedule.ema_decay", "0.99",
            "--optim.muon_momentum_warmup_steps", "100", "--quant.calibration_batches", "4",
            "--eval.seq_len", "256", "--eval.stride", "256", "--run.out_dir", out, "--run.name", name,
            "--run.log_every", "50", "--run.cpu_threads", "1", "--run.device", device, "--run.compile", "off",
            "--eval.adapt.ttt", "none"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", required=True, help="training text (documents separated by blank lines)")
    ap.add_argument("--tokenizer", required=True, help="SentencePiece .model with 8192 pieces")
    ap.add_argument("--out", default="runs/states", help="folder of the runs (default runs/states, git-ignored)")
    ap.add_argument("--runs", default="L2_s150,L2_s600", help=f"comma-separated names among {sorted(RUNS)}")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the runs train")
    ap.add_argument("--parallel", action="store_true", help="start every run at once (one GPU holds them all)")
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
    todo = [n for n in names if not (out / n / "model.gfa").exists()]
    for n in sorted(set(names) - set(todo)):
        print(f"{n}: present, skipped")
    cmds = [train_command(n, *RUNS[n], str(data), str(out), args.device) for n in todo]
    if not args.parallel:
        for c in cmds:
            subprocess.run(c, check=True)
        return
    procs = [subprocess.Popen(c, stdout=open(out / f"{n}.log", "w"), stderr=subprocess.STDOUT) for n, c in zip(todo, cmds)]
    failed = [n for n, p in zip(todo, procs) if p.wait() != 0]
    if failed:
        raise SystemExit(f"runs failed: {failed} (logs: {out}/<name>.log)")


if __name__ == "__main__":
    main()
