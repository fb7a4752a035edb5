"""The whole record pipeline rehearsed at full record shapes on a CPU (``golf-fast rehearse``).

Phases, each through the project's public entry points, each a row of one table (phase, seconds,
bytes, val_bpb, verdict, what stood in for the GPU):

1. ``corpus``: the embedded corpus in the preset's form (CaseOps for ``record``), built once and cached;
2. ``model``: the preset's parameter count (35,945,671 for ``record``), checked;
3. ``golf-fast train --preset P --device-profile h100`` in a subprocess: ``steps`` steps of
   ``batch_tokens`` tokens (one rank), Hessians, GPTQ + LQER + int8 gates on every matrix, the
   artifact fitted to the real 16,000,000-byte budget with the real code bytes (the exported
   script's counted size), reload from int6 codes, plain + sliding eval of the first
   ``val_tokens`` validation tokens (sliding stride ``eval_stride``), phased TTT on their documents
   with the compliance verdict. Rows: train, hessians, gptq, artifact, pre-quant eval, round-trip
   eval, TTT; the artifact itself is read back (``load_artifact``) to count its GPTQ matrices, LQER
   factors and int8 gates;
4. ``golf-fast export`` of that run: the records folder and its ``train_gpt.py``;
5. the exported ``train_gpt.py`` run in a fresh environment without golf_fast
   (:mod:`golf_fast.export.clean_env`) on the same data: it trains the same baked configuration
   (``steps`` steps) and evaluates the same documents.

Every phase that fails (a non-zero exit, a check that does not hold, a time-out) is a failed row
and the phases after it are ``not run``; :attr:`Rehearsal.ok` is False then. Nothing is skipped
silently. The GPU stand-ins come from the run's ``device_profile`` and ``backends`` records.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

RECORD_PARAMETERS = 35_945_671
"""The R0611 record model's parameter count."""


@dataclass
class RehearsalSpec:
    """What to rehearse and how small (everything else is the preset's)."""

    out_dir: Path
    preset: str = "record"
    steps: int = 2
    batch_tokens: int = 0
    """Tokens per step (one rank, no accumulation); 0 = one sequence of ``model.max_seqlen``."""
    val_tokens: int = 16_384
    """The first N validation tokens: the documents every evaluation and the TTT see."""
    eval_stride: int = 1024
    """Sliding-window stride of the rehearsal's eval (the record: 64; a CPU cannot afford it at 2048)."""
    calibration_batches: int = 2
    exported: bool = True
    """Also run the exported ``train_gpt.py`` in a clean environment."""
    ttt: bool = True
    """Run the score-first TTT (phased when the preset has none) at the end of the package run."""
    budget: bool = True
    """Count the code bytes and fit the artifact to 16,000,000 (False: ``--no-code-bytes``, no fit;
    the reduced CI form, where the fit's repeated GPTQ would cost minutes)."""
    time_limit_s: float = 25 * 60
    """Every subprocess is killed when the rehearsal's wall time would pass this."""
    cpu_threads: int = 0
    """torch threads of the runs (0: torch's default)."""

    def validate(self) -> None:
        if not isinstance(self.out_dir, (str, os.PathLike)):
            raise TypeError(f"out_dir: expected a folder path, got {type(self.out_dir).__name__}")
        for name, lo in (("steps", 1), ("batch_tokens", 0), ("val_tokens", 2), ("eval_stride", 0),
                         ("calibration_batches", 1), ("cpu_threads", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
        if not (isinstance(self.time_limit_s, (int, float)) and self.time_limit_s > 0):
            raise ValueError(f"time_limit_s: expected a positive number of seconds, got {self.time_limit_s!r}")


@dataclass
class PhaseRow:
    phase: str
    seconds: Optional[float] = None
    nbytes: Optional[int] = None
    val_bpb: Optional[float] = None
    verdict: str = ""
    stand_in: str = ""
    ok: bool = True


@dataclass
class Rehearsal:
    rows: list[PhaseRow] = field(default_factory=list)
    wall_s: float = 0.0
    out_dir: Optional[Path] = None

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def table(self) -> str:
        """The rows as one fixed-width text table."""
        head = ("phase", "seconds", "bytes", "val_bpb", "verdict", "stand-in for the GPU")
        body = [(r.phase, "" if r.seconds is None else f"{r.seconds:.1f}",
                 "" if r.nbytes is None else f"{r.nbytes:,}", "" if r.val_bpb is None else f"{r.val_bpb:.5f}",
                 r.verdict if r.ok else f"FAILED: {r.verdict}", r.stand_in) for r in self.rows]
        widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
        fmt = "  ".join("{:<%d}" % w for w in widths)
        lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*row).rstrip() for row in body]
        lines.append(f"total wall time {self.wall_s:.1f} s: {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(lines)


class _Failed(Exception):
    pass


def _final(run_dir: Path) -> tuple[dict, dict]:
    """(the run's ``final`` record, its ``device_profile`` record) from metrics.jsonl."""
    final = prof = None
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e.get("event") == "final":
            final = e
        elif e.get("event") == "device_profile":
            prof = e
    if final is None:
        raise _Failed(f"{run_dir / 'metrics.jsonl'} has no final record")
    return final, prof or {}


def _artifact_contents(path: Path, num_layers: int) -> tuple[int, int, int]:
    """(GPTQ'd matrices, matrices with LQER factors, int8 gates) of the artifact at ``path``."""
    from golf_fast.artifact import load_artifact
    from golf_fast.model.gpt import EMBED_NAME, bank_matrix_names
    from golf_fast.quant import QuantizedTensor

    state = load_artifact(path).state
    lqer = {k.split(".lqer.")[0] for k in state if ".lqer." in k}
    matrices = [EMBED_NAME] + [n for names in bank_matrix_names(num_layers).values() for n in names]
    gptq = sum(1 for k in matrices if isinstance(state.get(k), QuantizedTensor) and state[k].bits in (6, 7))
    gates = sum(1 for k, v in state.items() if k.endswith("attn_gate_w") and isinstance(v, QuantizedTensor)
                and v.bits == 8)
    return gptq, len(lqer), gates


def _stand_ins(prof: dict, keys: tuple[str, ...], backends: dict, ops: tuple[str, ...]) -> str:
    """What ran here for the profile's ``keys`` (where it differs from the H100 choice) and the CPU
    backend of each op in ``ops``."""
    out: list[str] = []
    for k in keys:
        c = prof.get("choices", {}).get(k)
        if c and c.get("here") != c.get("value") and k != "run.device":
            text = f"{k.split('.')[-1]}: {c['here']}"
            if text not in out:
                out.append(text)
    for op in ops:
        for name, b in backends.items():
            if name.startswith(op + "@cpu"):
                out.append(f"{op}: {b}")
    return "; ".join(out)


def rehearse(spec: RehearsalSpec, log: Callable[[str], None] = print) -> Rehearsal:
    """Run the phases of the module docstring; returns the table's rows (never raises for a phase
    that fails: its row says so)."""
    from golf_fast.data.corpus import default_dataset
    from golf_fast.export.clean_env import clean_environ, make_clean_env
    from golf_fast.model.gpt import GPT
    from golf_fast.train.config import preset

    spec.validate()
    t_start = time.perf_counter()
    out = Path(spec.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    reh = Rehearsal(out_dir=out)
    cfg = preset(spec.preset)
    mc = cfg.model
    batch = spec.batch_tokens or mc.max_seqlen
    env = clean_environ({"OMP_NUM_THREADS": str(spec.cpu_threads)} if spec.cpu_threads else None)
    pkg_env = {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def left() -> float:
        return spec.time_limit_s - (time.perf_counter() - t_start)

    def run(cmd: list, cwd: Path, what: str, run_env: dict, logfile: Path) -> float:
        t0 = time.perf_counter()
        if left() <= 0:
            raise _Failed(f"{what}: no time left of the {spec.time_limit_s:.0f} s limit")
        with open(logfile, "w") as fh:
            try:
                p = subprocess.run(cmd, cwd=cwd, env=run_env, stdout=fh, stderr=subprocess.STDOUT,
                                   timeout=left())
            except subprocess.TimeoutExpired:
                raise _Failed(f"{what}: killed at the {spec.time_limit_s:.0f} s limit (log: {logfile})") from None
        if p.returncode != 0:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise _Failed(f"{what}: exit status {p.returncode}: {tail[0][:200]} (log: {logfile})")
        return time.perf_counter() - t0

    def add(row: PhaseRow) -> PhaseRow:
        reh.rows.append(row)
        log(f"rehearse: {row.phase}: {row.verdict if row.ok else 'FAILED: ' + row.verdict}"
            + (f" ({row.seconds:.1f} s)" if row.seconds is not None else ""))
        return row

    plan = ["corpus", "model", "train", "export"] + (["exported train_gpt.py"] if spec.exported else [])
    try:
        # 1. corpus
        t0 = time.perf_counter()
        data_dir = default_dataset(mc.vocab_size, caseops=cfg.data.caseops, progress=lambda s: None)
        add(PhaseRow("corpus", time.perf_counter() - t0, verdict=f"embedded {'CaseOps ' if cfg.data.caseops else ''}"
                     f"corpus, vocab {mc.vocab_size}: {data_dir.name}"))
        plan.pop(0)

        # 2. model
        import torch
        with torch.device("meta"):
            n_params = sum(p.numel() for p in GPT(mc).parameters())
        want = RECORD_PARAMETERS if spec.preset == "record" else n_params
        add(PhaseRow("model", verdict=f"{n_params:,} parameters", ok=n_params == want))
        if n_params != want:
            reh.rows[-1].verdict += f", expected {want:,}"
        plan.pop(0)

        # 3. the package's run
        runs = out / "runs"
        args = [sys.executable, "-u", "-m", "golf_fast.cli", "train", "--preset", spec.preset, "--device-profile", "h100",
                "--data.data_dir", str(data_dir), "--data.train_batch_tokens", str(batch), "--data.grad_accum", "1",
                "--data.max_val_tokens", str(spec.val_tokens), "--schedule.clock", "steps",
                "--schedule.max_steps", str(spec.steps), "--schedule.compile_warmup_steps", "0",
                "--quant.calibration_batches", str(spec.calibration_batches), "--eval.stride", str(spec.eval_stride),
                "--eval.batch_seqs", "4", "--run.out_dir", str(runs), "--run.name", "package", "--run.log_every", "1",
                "--run.cpu_threads", str(spec.cpu_threads)]
        if spec.ttt and cfg.eval.adapt.ttt == "none":  # the rehearsal runs the score-first TTT (the record's is phased)
            args += ["--eval.adapt.ttt", "phased"]
        elif not spec.ttt:
            args += ["--eval.adapt.ttt", "none"]
        if not spec.budget:
            args += ["--no-code-bytes"]
        run_dir = runs / "package"
        try:
            wall = run(args, out, "golf-fast train", pkg_env, out / "train.out")
        except _Failed as e:  # say how far the run got: its log's last line
            raise _Failed(f"{e}; last line of its log: {_last_line(run_dir / 'train.log')!r}") from None
        final, prof = _final(run_dir)
        ph, bk = final.get("phases", {}), final.get("backends", {})
        train_si = _stand_ins(prof, ("run.device", "run.autocast", "run.compile", "run.attention", "optim.graph_step",
                                     "model.fused_cross_entropy", "model.fused_mlp"), bk,
                              ("softcapped_ce", "leaky_relu_square_mlp", "newton_schulz"))
        add(PhaseRow(f"train ({final['steps']} × {batch:,} tokens)", ph.get("train"),
                     verdict=f"{final['steps']} steps, loss finite (package run {wall:.0f} s in all)",
                     stand_in=train_si, ok=final["steps"] == spec.steps))
        add(PhaseRow(f"hessians ({spec.calibration_batches} batches)", ph.get("hessians"), verdict="collected",
                     stand_in=_stand_ins(prof, (), bk, ("hessian_accumulate_",))))
        gptq, lqer, gates = _artifact_contents(run_dir / "model.gfa", mc.num_layers)
        n_mat = 6 * mc.num_layers + 1
        q = cfg.quant
        ok = gptq == n_mat and (lqer == q.lqer_top_k if q.lqer else lqer == 0) and \
            (gates == mc.num_layers if q.gate_int8 and mc.sparse_attn_gate else True)
        add(PhaseRow("GPTQ + LQER + int8 gates", ph.get("gptq"), verdict=f"{gptq}/{n_mat} matrices GPTQ'd, "
                     f"{lqer} LQER, {gates} int8 gates", stand_in=_stand_ins(prof, (), bk, ("gptq_block",)), ok=ok))
        total = (final.get("artifact_bytes") or 0) + (final.get("code_bytes") or 0)
        add(PhaseRow("artifact fitted to 16,000,000" if spec.budget else "artifact (no budget fit)",
                     ph.get("artifact_write"), total,
                     verdict=f"{final.get('budget')}; clip factor {final.get('clip_factor', 1.0):.4f}; "
                             f"artifact {final.get('artifact_bytes') or 0:,} + code {final.get('code_bytes') or 0:,}",
                     ok=final.get("submission_ok") is True if spec.budget else bool(final.get("artifact_bytes"))))
        pre = final.get("pre_quant") or {}
        add(PhaseRow("pre-quant eval", ph.get("eval_pre"), val_bpb=pre.get("val_bpb"),
                     verdict=f"{pre.get('tokens', 0):,} tokens", ok=_finite(pre.get("val_bpb"))))
        rt, rts = final.get("round_trip") or {}, final.get("round_trip_sliding") or {}
        add(PhaseRow("reload + eval (int6 codes)", (ph.get("artifact_load") or 0) + (ph.get("eval_round_trip") or 0),
                     val_bpb=rt.get("val_bpb"), verdict=f"plain {rt.get('tokens', 0):,} tokens; " + (
                         f"sliding (stride {spec.eval_stride}) {rts.get('val_bpb', float('nan')):.5f}; "
                         if spec.eval_stride else "no sliding eval (stride 0); ")
                     + f"void {rt.get('void_fraction') or float('nan'):.4f}",
                     stand_in=_stand_ins(prof, ("eval.weights",), bk, ("int6_linear",)),
                     ok=_finite(rt.get("val_bpb")) and (not spec.eval_stride or _finite(rts.get("val_bpb")))))
        if spec.ttt:
            ad = final.get("adaptive") or {}
            verdict = ad.get("eval_compliance", "did not run")
            add(PhaseRow(f"TTT ({ad.get('mode', 'none')})", ph.get("eval_adaptive"), val_bpb=ad.get("val_bpb"),
                         verdict=f"compliance: {verdict}; {ad.get('tokens', 0):,} tokens scored",
                         ok=verdict == "compliant" and _finite(ad.get("val_bpb"))))
        if not all(r.ok for r in reh.rows):
            raise _Failed("a check of the package run failed (see the rows above)")
        plan.pop(0)

        # 4. export
        records = out / "records"
        secs = run([sys.executable, "-u", "-m", "golf_fast.cli", "export", str(run_dir), "--out", str(records)], out,
                   "golf-fast export", pkg_env, out / "export.out")
        script = records / "train_gpt.py"
        size = script.stat().st_size if script.is_file() else 0
        same = size == final.get("code_bytes") or not spec.budget
        add(PhaseRow("golf-fast export", secs, size, verdict=f"{sorted(os.listdir(records))}; " + (
                     "train_gpt.py = the run's code bytes" if spec.budget else "the run counted no code bytes")
                     if same else
                     f"train_gpt.py is {size:,} B, the run counted {final.get('code_bytes')} (the package changed "
                     f"since the run)", ok=size > 0 and same))
        if not reh.rows[-1].ok:
            raise _Failed("the exported script does not match the counted code bytes")
        plan.pop(0)

        # 5. the exported script, without golf_fast
        if spec.exported:
            t0 = time.perf_counter()
            py = make_clean_env(out / "clean")
            work = out / "exported"
            work.mkdir(exist_ok=True)
            tok = Path(data_dir) / "tokenizer.model"
            secs = run([str(py), "-u", str(script)], work, "exported train_gpt.py",
                       {**env, "DATA_PATH": str(data_dir), "TOKENIZER_PATH": str(tok), "RUN_ID": "exported",
                        "SEED": str(cfg.run.seed)}, out / "exported.out")
            efinal, _ = _final(work / "runs" / "exported")
            e_ad, e_rt = efinal.get("adaptive") or {}, efinal.get("round_trip") or {}
            diff = abs((e_rt.get("val_bpb") or math.nan) - (rt.get("val_bpb") or math.nan))
            ok = efinal.get("steps") == spec.steps and _finite(e_rt.get("val_bpb")) and \
                (not spec.ttt or e_ad.get("eval_compliance") == "compliant") and \
                (not spec.budget or efinal.get("submission_ok") is True)
            add(PhaseRow(f"exported train_gpt.py ({efinal.get('steps')} step{'s' if efinal.get('steps') != 1 else ''}"
                         f", clean env)", time.perf_counter() - t0, efinal.get("artifact_bytes"),
                         val_bpb=e_rt.get("val_bpb"),
                         verdict=f"round trip (|Δ| vs package {diff:.5f}); TTT {e_ad.get('val_bpb', float('nan')):.5f} "
                                 f"{e_ad.get('eval_compliance', 'did not run')}; budget {efinal.get('budget')}",
                         stand_in=_stand_ins({}, (), efinal.get("backends", {}),
                                             ("hessian_accumulate_", "gptq_block", "int6_linear")) +
                         "; no golf_fast._C", ok=ok))
            plan.pop(0)
    except _Failed as e:
        add(PhaseRow(plan.pop(0) if plan else "rehearsal", verdict=str(e), ok=False))
    except Exception as e:  # a bug or an environment problem is a failed phase too, never a pass
        add(PhaseRow(plan.pop(0) if plan else "rehearsal", verdict=f"{type(e).__name__}: {e}", ok=False))
    for name in plan:
        reh.rows.append(PhaseRow(name, verdict="not run", ok=False))
    reh.wall_s = time.perf_counter() - t_start
    return reh


def _last_line(path: Path) -> str:
    """The last non-empty line of a text file ('' when it is missing)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:200] if lines else ""


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
