"""The CI test of issue 17: the exported train_gpt.py reproduces the package's run.

1. The package trains a tiny configuration of the smoke preset (4 steps on a 300-document corpus)
   in a subprocess where ``golf_fast._C`` is blocked, so it runs the same reference kernels the
   exported script has (on CPU the extension would run the C++ GPTQ/Hessian kernels, whose float
   summation order differs from the references, which moves round-trip val_bpb by ~5e-5).
2. ``golf-fast export RUN_DIR --out DIR`` writes the records folder.
3. The exported ``train_gpt.py`` runs in a fresh virtual environment with torch, numpy,
   sentencepiece and brotli but not golf_fast (``import golf_fast`` is checked to fail there),
   with DATA_PATH, SEED and RUN_ID, same data and seed, one CPU thread.
4. Tolerance 0: pre-quant and round-trip val_bpb (plain and sliding) are equal as floats. Same
   code, same torch build, one thread, deterministic CPU kernels and the same seeds: any
   difference means the export changed the computation.
5. The exported run's artifact loads in the package and scores exactly its reported val_bpb.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from export.clean_env import clean_environ, make_clean_env
from golf_fast.data.build import build_dataset
from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.shards import list_shards, load_tokens
from golf_fast.eval.evaluate import evaluate
from golf_fast.model.from_artifact import load_model_from_artifact
from tiny_run import TEXT
from tiny_run import TINY as TINY_BASE

ROOT = Path(__file__).resolve().parents[2]
TINY = {**TINY_BASE, "run.cpu_threads": 1}
SEED = 7

PACKAGE_RUN = """
import json, sys
sys.modules["golf_fast._C"] = None  # no compiled extension: the exported script's kernels
from golf_fast.cli import main
raise SystemExit(main(["train", *sys.argv[1:]]))
"""


def _final(run_dir: Path) -> dict:
    events = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return [e for e in events if e["event"] == "final"][-1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = random.Random(0)
    docs = [" ".join(rng.choice(TEXT) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    return build_dataset(docs, tmp_path_factory.mktemp("data") / "tiny", vocab_size=320, val_docs=30,
                         progress=lambda s: None)


@pytest.mark.slow
def test_exported_script_reproduces_the_package_run(corpus, tmp_path):
    env = clean_environ({"OMP_NUM_THREADS": "1"})
    # 1. the package's run (golf-fast train, code bytes measured from the export)
    args = ["--preset", "smoke", "--data.data_dir", str(corpus), "--run.out_dir", str(tmp_path / "runs"),
            "--run.name", "pkg", "--run.seed", str(SEED)]
    for k, v in TINY.items():
        args += [f"--{k}", str(v)]
    p = subprocess.run([sys.executable, "-c", PACKAGE_RUN, *args], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    pkg = _final(tmp_path / "runs" / "pkg")
    assert pkg["submission_ok"] is True and pkg["code_bytes"] > 0

    # 2. the records folder
    out = tmp_path / "records"
    e = subprocess.run([sys.executable, "-m", "golf_fast.cli", "export", str(tmp_path / "runs" / "pkg"), "--out",
                        str(out)], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=300)
    assert e.returncode == 0, e.stderr[-3000:]
    assert sorted(os.listdir(out)) == ["README.md", "requirements.txt", "submission.json", "tokenizers",
                                       "train_gpt.py", f"train_seed{SEED}.log"]  # smoke: no CaseOps script
    assert (out / "tokenizers" / "tokenizer.model").read_bytes() == (corpus / "tokenizer.model").read_bytes()
    script = out / "train_gpt.py"
    assert script.stat().st_size == pkg["code_bytes"]  # the counted bytes are the file's bytes
    c = subprocess.run([sys.executable, "-m", "golf_fast.cli", "export", str(tmp_path / "runs" / "pkg"), "--code-bytes"],
                       cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert c.returncode == 0, c.stderr[-3000:]
    assert c.stdout.splitlines()[-1].startswith(f"counted code bytes: {pkg['code_bytes']} (")
    assert "golf_fast.train.loop " in c.stdout and "golf_fast.cli" not in c.stdout
    sub = json.loads((out / "submission.json").read_text())
    assert sub["track"] == "non_record_16mb" and sub["code_bytes"] == pkg["code_bytes"]
    assert "not 8×H100" in (out / "README.md").read_text()

    # 3. the exported script in a clean environment, from another folder
    py = make_clean_env(tmp_path / "clean")
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([str(py), str(script)], cwd=work, capture_output=True, text=True, timeout=300,
                       env={**env, "DATA_PATH": str(corpus), "SEED": str(SEED), "RUN_ID": "exported"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exp_dir = work / "runs" / "exported"
    exp = _final(exp_dir)

    # 4. equal val_bpb, tolerance 0 (see the module docstring)
    for key in ("pre_quant", "pre_quant_sliding", "round_trip", "round_trip_sliding"):
        assert exp[key]["val_bpb"] == pkg[key]["val_bpb"], key
    assert exp["code_bytes"] == pkg["code_bytes"] and exp["submission_ok"] is True
    assert "'hessian_accumulate_@cpu': 'reference'" in r.stdout  # no compiled kernel ran

    # 5. its artifact loads in the package and scores what the script reported
    torch.manual_seed(SEED)
    model = load_model_from_artifact(exp_dir / "model.gfa", torch.device("cpu"))
    model.looping_active = True  # the run ended with depth recurrence on (enable_looping_at 0.5)
    table = TokenByteTable.from_sentencepiece(str(corpus / "tokenizer.model"), vocab_size=320)
    val = load_tokens(list_shards(corpus, "val"))
    res = evaluate(model, val, table, seq_len=64, batch_seqs=8, device=torch.device("cpu"))
    assert res.val_bpb == exp["round_trip"]["val_bpb"]
