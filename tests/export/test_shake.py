"""Tree shaking of the export (golf_fast.export.shake) and the lean source steps (golf_fast.export.lean).

1. On a synthetic package: what is kept (names, attributes, dunders, framework overrides,
   registrations, escaped modules, effect-only imports) and what is dropped; tables and branches.
2. The record preset's shaken bundle imports in a subprocess, and every name its code imports from
   the package resolves there (the bundle's loader refuses any module it does not carry).
3. A tiny configuration of the record preset (phased LoRA TTT, golf-rans, GPTQ) run from the
   shaken, renamed bundle equals the package's run to the bit (val_bpb before and after the
   round trip, and after TTT), ``golf_fast._C`` blocked in both.
"""

from __future__ import annotations

import ast
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from golf_fast.export.gather import gather
from golf_fast.export.lean import strip_annotations, strip_messages
from golf_fast.export.shake import Branch, Table, shake
from golf_fast.export.stub import ENTRY, Lean, bake_config, bundle, shaken_gather
from golf_fast.train.config import apply_overrides, preset

from .test_gather import _pkg

ROOT = Path(__file__).resolve().parents[2]




SYNTH = {
    "__init__.py": "",
    "entry.py": (
        "from golf_fast.a import used, Cls, TABLE\n"
        "from golf_fast.a import unused_fn\n"
        "from golf_fast import reg\n"
        "import golf_fast.dyn as dyn\n"
        "def main(cfg):\n"
        "    c = Cls()\n"
        "    dyn.via_attr()\n"
        "    return used() + c.called() + TABLE[cfg]() + len(c)\n"
        "def not_called():\n"
        "    from golf_fast import never\n"
        "    return never.x\n"),
    "a.py": (
        "import os\n"
        "import torch\n"
        "class Cls(torch.nn.Module):\n"
        "    def called(self): return 1\n"
        "    def forward(self, x): return x\n"
        "    def __len__(self): return 2\n"
        "    def orphan(self): return 3\n"
        "def used(): return helper()\n"
        "def helper(): return 4\n"
        "def unused_fn(): return os.sep\n"
        "def one(): return 10\n"
        "def two(): return 20\n"
        "TABLE = {'one': one, 'two': two}\n"
        "def branchy(cfg):\n"
        "    if cfg.flag:\n"
        "        return one()\n"
        "    else:\n"
        "        return two()\n"),
    "reg.py": "REG = {}\ndef register(f):\n    REG[f.__name__] = f\n    return f\n@register\ndef plugged(): return 5\n",
    "dyn.py": "def via_attr(): return 6\ndef not_via(): return 7\n",
    "never.py": "x = 1\n",
}


def test_shake_keeps_what_is_reachable_and_drops_the_rest(tmp_path):
    root = _pkg(tmp_path, SYNTH)
    g = gather("golf_fast.entry", root)
    assert "golf_fast.never" in g.names  # the plain gather follows every import, reachable or not
    sh = shake(g, [Table("golf_fast.a", "TABLE", frozenset({"one"}))])
    rep = sh.report
    assert "golf_fast.never" not in sh.modules  # only not_called imports it
    assert {"main"} <= set(rep["golf_fast.entry"].kept) and "not_called" in rep["golf_fast.entry"].dropped
    a = rep["golf_fast.a"]
    assert {"Cls", "used", "helper", "one", "TABLE"} <= set(a.kept)
    assert {"unused_fn", "two", "branchy", "Cls.orphan"} <= set(a.dropped)
    src = sh.sources["golf_fast.a"]
    assert "def forward" in src and "def __len__" in src and "def called" in src  # override, dunder, attribute
    assert "'two'" not in src and "import os" not in src
    assert "plugged" in rep["golf_fast.reg"].kept  # a registering decorator is a root
    assert "via_attr" in rep["golf_fast.dyn"].kept and "not_via" in rep["golf_fast.dyn"].dropped
    # the shaken package runs: gather again from the shaken sources and import it
    g2 = gather("golf_fast.entry", root, sources=sh.sources)
    assert set(g2.names) <= sh.modules and "golf_fast.never" not in g2.names
    probe = bundle(g2, '"one"', main="") + (
        "import golf_fast.entry as e\nassert e.main('one') == 4 + 1 + 10 + 2\n"
        "import golf_fast.a as a\nassert not hasattr(a, 'unused_fn') and not hasattr(a.Cls, 'orphan')\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_escaped_module_keeps_attribute_names_and_branches_resolve(tmp_path):
    root = _pkg(tmp_path, {**SYNTH, "entry.py": (
        "import importlib\nfrom golf_fast.a import branchy\n"
        "def main(cfg):\n    m = importlib.import_module('golf_fast.dyn')\n    from golf_fast import reg\n"
        "    return m.not_via() + branchy(cfg) + len(reg.REG)\n")})
    g = gather("golf_fast.entry", root)
    sh = shake(g, branches=[Branch("golf_fast.a", "branchy", "cfg.flag", True)])
    assert "not_via" in sh.report["golf_fast.dyn"].kept  # imported by a string: names used as attributes stay
    assert "REG" in sh.report["golf_fast.reg"].kept and "register" in sh.report["golf_fast.reg"].kept  # local import
    assert "one" in sh.report["golf_fast.a"].kept and "two" in sh.report["golf_fast.a"].dropped
    assert any("is True" in n for n in sh.report["golf_fast.a"].notes)
    sh2 = shake(g, branches=[Branch("golf_fast.a", "branchy", "cfg.other", True)])
    assert any("kept as is" in n for n in sh2.report["golf_fast.a"].notes)  # left whole, and said so
    with pytest.raises(ValueError, match="entry_names"):
        shake(g, entry_names=("missing",))
    with pytest.raises(TypeError, match="tables"):
        shake(g, tables=["DRIVERS"])


def test_lean_steps_keep_read_annotations_and_checks():
    src = ("def kernel(x, BLOCK: 'tl.constexpr'): pass\n"
           "@deco\ndef decorated(x: int) -> int: return x\n"
           "def plain(x: int, *a: int, **k: str) -> int:\n    assert x, 'msg'\n"
           "    raise ValueError(f'x: bad {x}')\n"
           "def ref(x: int) -> int: return x\nOP = make(ref)\n"
           "class C:\n    field: int = 1\n    def m(self, y: int) -> int: raise MyError('kept', y)\n")
    out = strip_annotations(src)
    assert "BLOCK: 'tl.constexpr'" not in out  # not passed on, not decorated: nothing reads it
    assert "def decorated(x: int) -> int" in out and "def ref(x: int) -> int" in out and "field: int = 1" in out
    assert "def plain(x, *a, **k):" in out
    msg = strip_messages(src)
    assert "raise ValueError\n" in msg and "'msg'" not in msg and "assert x\n" in msg
    assert "MyError('kept', y)" in msg  # the package's own exceptions keep their arguments
    with pytest.raises(TypeError, match="source"):
        strip_annotations(b"x")


def _record_probe() -> str:
    """Python that, run after the bundle, checks every golf_fast name the bundled code imports."""
    return (
        "import ast, importlib, sys\n"
        "bad = []\n"
        "for name, (is_pkg, src) in _M.items():\n"
        "    mod = importlib.import_module(name)\n"
        "    for n in ast.walk(ast.parse(src)):\n"
        "        if isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or '').startswith('golf_fast'):\n"
        "            tgt = importlib.import_module(n.module)\n"
        "            for a in n.names:\n"
        "                if not hasattr(tgt, a.name) and n.module + '.' + a.name not in _M:\n"
        "                    bad.append(f'{name}: from {n.module} import {a.name}')\n"
        "        elif isinstance(n, ast.Import):\n"
        "            for a in n.names:\n"
        "                if a.name.startswith('golf_fast') and a.name not in _M:\n"
        "                    bad.append(f'{name}: import {a.name}')\n"
        "assert not bad, bad\n"
        "assert sys.modules['golf_fast'].__file__.endswith('_bundled/golf_fast/__init__.py')\n"
        "from golf_fast.export.entry import apply_challenge_env, config_from_dict, use_torch_paths\n"
        "import json\n"
        "cfg = apply_challenge_env(config_from_dict(json.loads(_C)), {'SEED': '3'})\n"
        "use_torch_paths()\n"
        "print('ok', len(_M), cfg.eval.adapt.mode)\n")


@pytest.fixture(scope="module")
def record_bundle():
    """(gathered modules, bundle text without a ``__main__`` block) of the record preset's script."""
    cfg = preset("record")
    g, _ = shaken_gather(cfg)
    return g, bundle(g, json.dumps(bake_config(cfg).to_dict()), main="", lean=Lean())


def _run_file(f: Path, env: Optional[dict] = None, **kw) -> subprocess.CompletedProcess:
    """``f`` run as the script (``sys.argv[0]``) with ``golf_fast._C`` blocked."""
    return subprocess.run([sys.executable, "-c", "import sys; sys.modules['golf_fast._C'] = None; sys.argv = "
                           f"[{str(f)!r}]; exec(compile(open({str(f)!r}).read(), {str(f)!r}, 'exec'))"],
                          cwd=f.parent, capture_output=True, text=True, timeout=300, env=env, **kw)


def test_record_bundle_imports_and_every_imported_name_resolves(tmp_path, record_bundle):
    g, text = record_bundle
    assert {"golf_fast.ops.int6_matmul_kernels", "golf_fast.optim.graph_step", "golf_fast.distributed",
            "golf_fast.artifact.rans.portable", "golf_fast.model.attention"} <= set(g.names)  # the H100 paths
    assert "golf_fast.eval.adapt.research_modes" not in g.names  # research mode off in the record
    f = tmp_path / "probe.py"
    f.write_text(text + _record_probe())
    r = _run_file(f)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.strip().endswith(f"ok {len(g.names)} phased")


KERNELS = """
OUT = __import__("os").environ["KERNELS_OUT"]
import torch
from golf_fast.ops.newton_schulz import newton_schulz
from golf_fast.ops.int6_pack import pack_int6, unpack_int6
from golf_fast.ops.int6_matmul import int6_linear
from golf_fast.ops.softcapped_ce import softcapped_cross_entropy
from golf_fast.ops.fused_mlp import leaky_relu_square_mlp
from golf_fast.ops.gptq import gptq_block
torch.manual_seed(0)
out = {}
out["ns"] = newton_schulz(torch.randn(2, 20, 24), backend="triton")
codes = torch.randint(-31, 32, (8, 32), dtype=torch.int8)
packed = pack_int6(codes, backend="triton")
out["pack"], out["unpack"] = packed, unpack_int6(packed, 32, backend="triton")
scales = torch.rand(8) * 0.01 + 0.001
out["lin"] = int6_linear(torch.randn(3, 32).half(), packed, scales.half(), backend="triton")
z = torch.randn(6, 40, requires_grad=True); t = torch.randint(0, 40, (6,))
loss = softcapped_cross_entropy(z, t, 30.0, backend="triton"); loss.sum().backward()
out["ce"], out["ce_grad"] = loss.detach(), z.grad
x = torch.randn(5, 24).half().requires_grad_(); wu = (torch.randn(40, 24) * 0.2).half().requires_grad_(); wd = (torch.randn(24, 40) * 0.2).half().requires_grad_()
y = leaky_relu_square_mlp(x, wu, wd, 0.5, backend="triton"); y.sum().backward()
out["mlp"], out["mlp_gx"] = y.detach(), x.grad
w = torch.randn(1, 6, 16); u = torch.linalg.cholesky(torch.eye(16) * 2 + 0.1).mT.unsqueeze(0).contiguous(); s = torch.rand(1, 6) + 0.1
out["gptq"] = gptq_block(w, u, s, 31, backend="triton")
torch.save(out, OUT)
print("kernels ok", sorted(out))
"""
"""The record's Triton kernels (Newton-Schulz, int6 pack/unpack/linear, softcapped CE fwd+bwd, fused
MLP fwd+bwd, GPTQ block) through their public launchers, interpreted on CPU at tiny shapes."""


@pytest.mark.interpreter
def test_record_bundle_kernels_equal_the_package_kernels_in_the_interpreter(tmp_path, record_bundle):
    import os

    import torch

    g, text = record_bundle
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    outs = []
    for name, src in (("package", KERNELS), ("bundle", text + KERNELS)):
        f = tmp_path / f"{name}.py"
        f.write_text(src)
        env["KERNELS_OUT"] = str(tmp_path / f"{name}.pt")
        r = _run_file(f, env)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        outs.append(torch.load(tmp_path / f"{name}.pt"))
    assert sorted(outs[0]) == sorted(outs[1])
    for k in outs[0]:
        a, b = outs[0][k], outs[1][k]
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            assert x.dtype == y.dtype and torch.equal(x, y), k


RECORD_TINY = {
    "model.vocab_size": 320, "model.num_layers": 4, "model.model_dim": 32, "model.num_heads": 2,
    "model.num_kv_heads": 1, "model.loop_start": 1, "model.loop_end": 2, "model.parallel_start_layer": 3,
    "model.max_seqlen": 256, "model.rope_dims": 8, "model.xsa_last_n": 4, "data.train_batch_tokens": 512,
    "data.grad_accum": 1, "data.prefetch": 1, "data.caseops": "false", "schedule.clock": "steps",
    "schedule.max_steps": 3, "schedule.enable_looping_at": 0.5, "quant.calibration_batches": 2,
    "eval.seq_len": 64, "eval.stride": 32, "eval.batch_seqs": 8, "run.log_every": 1, "run.compile": "off",
    "run.device": "cpu", "run.cpu_threads": 1,
    "eval.adapt.seq_len": 256, "eval.adapt.batch_seqs": 16, "eval.adapt.probe_every": 8, "eval.adapt.lora.rank": 8,
    "eval.adapt.lora.alpha": 16.0, "eval.adapt.lora.lr": 3e-3, "eval.adapt.lora.chunk": 32,
    "eval.adapt.lora.batch_docs": 16, "eval.adapt.lora.warm_start_a": "false", "eval.adapt.phased.num_phases": 2,
    "eval.adapt.phased.prefix_docs": 60, "eval.adapt.phased.lr": 3e-2, "eval.adapt.phased.chunk_tokens": 512}
"""The record preset at a CPU scale (as benchmarks/code_bytes_floor.py): plain data, phased TTT kept."""

PACKAGE_RUN = """
import sys
sys.modules["golf_fast._C"] = None
from golf_fast.cli import main
raise SystemExit(main(["train", *sys.argv[1:]]))
"""


def _final(run_dir: Path) -> dict:
    events = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    return [e for e in events if e["event"] == "final"][-1]


@pytest.mark.slow
def test_tiny_record_from_the_shaken_bundle_equals_the_package_run(tmp_path):
    from golf_fast.data.build import build_dataset
    from tiny_run import TEXT

    rng = random.Random(0)
    docs = [" ".join(rng.choice(TEXT) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    data = build_dataset(docs, tmp_path / "data", vocab_size=320, val_docs=30, progress=lambda s: None)
    cfg = apply_overrides(preset("record"), RECORD_TINY)
    g, sh = shaken_gather(cfg)
    g_rec, _ = shaken_gather(preset("record"))
    assert g.names == g_rec.names  # the same modules as the record's own script
    assert [m.source for m in g.modules] == [m.source for m in g_rec.modules]  # and the same code
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    script = tmp_path / "train_gpt.py"
    script.write_text(bundle(g, json.dumps(bake_config(cfg).to_dict()), lean=Lean()))
    work = tmp_path / "work"
    work.mkdir()
    blocked = "import sys, runpy; sys.modules['golf_fast._C'] = None; sys.argv = [sys.argv[1]]; " \
              "runpy.run_path(sys.argv[0], run_name='__main__')"
    r = subprocess.run([sys.executable, "-c", blocked, str(script)], cwd=work, capture_output=True, text=True,
                       timeout=400, env={**env, "DATA_PATH": str(data), "SEED": "7", "RUN_ID": "exported"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    args = ["--preset", "record", "--data.data_dir", str(data), "--run.out_dir", str(tmp_path / "runs"),
            "--run.name", "pkg", "--run.seed", "7", "--no-code-bytes"]
    for k, v in RECORD_TINY.items():
        args += [f"--{k}", str(v)]
    p = subprocess.run([sys.executable, "-c", PACKAGE_RUN, *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=400, env={**env, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    exp, pkg = _final(work / "runs" / "exported"), _final(tmp_path / "runs" / "pkg")
    assert pkg["adaptive"] and "phased" in pkg["adaptive"]["mode"]  # the record's phased TTT ran
    for k in ("pre_quant", "pre_quant_sliding", "round_trip", "round_trip_sliding", "adaptive"):
        assert exp[k]["val_bpb"] == pkg[k]["val_bpb"], k
    assert exp["artifact_bytes"] == pkg["artifact_bytes"]
