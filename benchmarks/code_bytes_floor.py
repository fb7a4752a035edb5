"""How small could the exported ``train_gpt.py`` get by pruning alone? An estimate, not an export.

Run (CPU, a few minutes on 2 cores)::

    PYTHONPATH=. python benchmarks/code_bytes_floor.py [--work /tmp/code_floor] [--top 40]

1. Trains a tiny configuration of the ``record`` preset on CPU (4 layers, 32 wide, 4 steps, plain
   data instead of CaseOps, the ``smoke`` adaptation settings so phased TTT fits 256 tokens) with
   ``golf_fast._C`` blocked, under a profiler that records every ``golf_fast`` function called.
2. Builds the bundle of ``golf_fast.export.entry`` twice, minified as the exporter does: all
   functions (what ``golf-fast export`` ships), and only the functions (module level and methods)
   that run executed, everything else at module level kept.
3. Prints brotli-11 of both bundles (the counted size is within ~1% of it), of the bundle
   ``golf-fast export`` ships for the record preset (tree-shaken statically for the config,
   annotations nothing reads dropped, locals renamed: ``golf_fast.export.stub.build_script``), and
   per module the alone-compressed bytes of the first two.

What it cannot see: functions only an H100 run calls (Triton launchers and kernels, CUDA-graph
and multi-GPU paths) were not executed here, so the real floor of a record run is *higher* than
the "executed" number. It answers one question: does removing unexecuted code get near 31,999?
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import sys
from pathlib import Path

import brotli

TEXT = ["the cat sat on the mat and the dog sat on the log", "a quick brown fox jumps over the lazy dog",
        "she sells sea shells by the sea shore", "peter piper picked a peck of pickled peppers",
        "how much wood would a woodchuck chuck if a woodchuck could chuck wood"]
TINY = {"model.vocab_size": 320, "model.num_layers": 4, "model.model_dim": 32, "model.num_heads": 2,
        "model.num_kv_heads": 1, "model.loop_start": 1, "model.loop_end": 2, "model.parallel_start_layer": 3,
        "model.max_seqlen": 256, "model.rope_dims": 8, "model.xsa_last_n": 4, "data.train_batch_tokens": 512,
        "data.grad_accum": 1, "data.prefetch": 1, "data.caseops": "false", "schedule.clock": "steps",
        "schedule.max_steps": 4, "schedule.enable_looping_at": 0.5, "quant.calibration_batches": 2,
        "eval.seq_len": 64, "eval.stride": 32, "eval.batch_seqs": 8, "run.log_every": 1, "run.compile": "off", "run.device": "cpu", "run.cpu_threads": 1, "run.seed": 7,
        # the record's phased LoRA TTT at the smoke preset's scale (golf_fast.eval.adapt.config.smoke_adapt)
        "eval.adapt.seq_len": 256, "eval.adapt.batch_seqs": 16, "eval.adapt.probe_every": 8, "eval.adapt.lora.rank": 8,
        "eval.adapt.lora.alpha": 16.0, "eval.adapt.lora.lr": 3e-3, "eval.adapt.lora.chunk": 32,
        "eval.adapt.lora.batch_docs": 16, "eval.adapt.lora.warm_start_a": "false", "eval.adapt.phased.num_phases": 2,
        "eval.adapt.phased.prefix_docs": 60, "eval.adapt.phased.lr": 3e-2, "eval.adapt.phased.chunk_tokens": 512}


def executed_functions(work: Path) -> set[tuple[str, int]]:
    """(real file path, first line) of every golf_fast function the tiny record run called."""
    sys.modules["golf_fast._C"] = None  # the exported script has no compiled extension
    import threading

    from golf_fast.cli import main
    from golf_fast.data.build import build_dataset

    data = work / "data"
    if not (data / "tokenizer.model").is_file():
        rng = random.Random(0)
        docs = [" ".join(rng.choice(TEXT) for _ in range(rng.randint(1, 6))) for _ in range(300)]
        build_dataset(docs, data, vocab_size=320, val_docs=30, progress=lambda s: None)
    seen: set[tuple[str, int]] = set()

    def prof(frame, event, arg):
        if event == "call" and "golf_fast" in frame.f_code.co_filename:
            seen.add((os.path.realpath(frame.f_code.co_filename), frame.f_code.co_firstlineno))

    args = ["train", "--preset", "record", "--data.data_dir", str(data), "--run.out_dir", str(work / "runs"),
            "--run.name", "floor"]
    for k, v in TINY.items():
        args += [f"--{k}", str(v)]
    sys.setprofile(prof)
    threading.setprofile(prof)
    try:
        rc = main(args)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    if rc != 0:
        raise SystemExit(f"the tiny record run failed with status {rc}")
    return seen


def keep_executed(source: str, path: Path, seen: set[tuple[str, int]]) -> str:
    """``source`` without the functions and methods whose def (or first decorator) line never ran."""
    f = os.path.realpath(path)

    class Drop(ast.NodeTransformer):
        def visit_FunctionDef(self, node):
            lines = {node.lineno} | {d.lineno for d in node.decorator_list}
            return node if any((f, ln) in seen for ln in lines) else None

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_ClassDef(self, node):
            node.body = [b for b in (self.visit(s) if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))
                                     else s for s in node.body) if b is not None] or [ast.Pass()]
            return node

    tree = ast.parse(source)
    d = Drop()
    tree.body = [b for b in (d.visit(s) if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                             else s for s in tree.body) if b is not None]
    return ast.unparse(ast.fix_missing_locations(tree))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/code_floor"), help="folder for the tiny data and run")
    ap.add_argument("--top", type=int, default=40, help="modules to list")
    a = ap.parse_args()
    if a.top < 0:
        ap.error(f"--top: expected >= 0, got {a.top}")
    a.work.mkdir(parents=True, exist_ok=True)
    seen = executed_functions(a.work)
    from golf_fast.export.gather import gather
    from golf_fast.export.stub import ENTRY, minify_module

    rows, full_parts, exec_parts = [], [], []
    for m in gather(ENTRY).modules:
        full = minify_module(m.source, m.name) if m.source.strip() else ""
        ex = keep_executed(m.source, m.path, seen) if m.source.strip() else ""
        ex = minify_module(ex, m.name) if ex.strip() else ""
        full_parts.append(f"{m.name!r}:({int(m.is_package)},{full!r}),")
        exec_parts.append(f"{m.name!r}:({int(m.is_package)},{ex!r}),")
        rows.append((len(brotli.compress(full.encode(), quality=11)), len(brotli.compress(ex.encode(), quality=11)),
                     m.name))

    def joint(parts: list) -> int:
        return len(brotli.compress("\n".join(parts).encode(), quality=11, lgwin=24))

    print(f"{len(seen)} golf_fast functions executed by the tiny record run (CPU, no _C)")
    print(f"bundle, all functions:      {joint(full_parts):>7,} B brotli-11")
    print(f"bundle, executed functions: {joint(exec_parts):>7,} B brotli-11 (H100-only paths excluded: a lower bound)")
    from golf_fast.export.stub import Lean, lean_source, shaken_gather
    from golf_fast.train.config import preset

    shaken = [f"{m.name!r}:({int(m.is_package)},{lean_source(m.source, m.name, Lean())!r}),"
              for m in shaken_gather(preset("record"))[0].modules]
    print(f"bundle, as exported (shaken): {joint(shaken):>5,} B brotli-11 (static: every path a record run can take)")
    print(f"{'module':<44} {'all':>6} {'executed':>8}")
    for full, ex, name in sorted(rows, key=lambda r: (-r[1], r[2]))[:a.top]:
        print(f"{name:<44} {full:>6,} {ex:>8,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
