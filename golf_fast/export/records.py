"""A records folder from finished runs: train_gpt.py, README.md, submission.json, logs, requirements,
the tokenizer model the runs used (``tokenizers/``) and, for CaseOps data, the data preparation
script (``prepare_caseops_data.py``: the package's ``golf-fast data`` command, bundled).

``load_runs(path)``: one run folder (``metrics.jsonl`` + ``train.log``) or a folder of them (one
per seed, e.g. ``golf-fast train --seeds``); their configurations must agree except seed and name.

``review(runs, script)`` decides record vs non-record and says why. A run is *not* a record when:

* its evaluation used a non-compliant (research) adaptation mode: a compliance verdict recorded
  anywhere in its metrics (``eval_compliance``, or ``compliance`` as a string or a dict with
  ``verdict``/``compliant``; see :func:`recorded_verdicts`) other than ``compliant``; a config that
  enables adaptation (a field named ``*ttt*``/``*slot*``/``*research*`` that is not off/none)
  without any recorded verdict is also refused (unverified);
* code + artifact exceed 16,000,000 bytes, or code bytes were not measured, or the exported
  script's size differs from the code bytes the run budgeted with (the package changed since);
* training (+ Hessians) exceeded the 600 s window, or evaluation — the scoring of the submitted
  score plus the exported script's own artifact load — exceeded 600 s or was not measured;
* it has no ``--baseline`` (the significance of the improvement is unknown);
* it was not run on 8×H100 (the challenge's hardware), or has fewer than 3 seeds, or no
  round-trip (artifact) score.

The submitted ``val_bpb`` is always a compliant score (:meth:`Run.score`). A non-record export is
still written, with the reasons in its README and submission.json.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Optional

from golf_fast.artifact.atomic import atomic_write_bytes
from golf_fast.artifact.fit import CHALLENGE_LIMIT
from golf_fast.export.stats import WelchResult, format_table, mean_std
from golf_fast.export.stub import ExportedScript

RECORD_LINEAGE = ("architecture, quantization and phased TTT of the 2026-04-27 record "
                  "(openai/parameter-golf records/track_10min_16mb/"
                  "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611, codemath3000) and the "
                  "community PRs it credits; CaseOps tokenizer from PR #1729")

TRAIN_LIMIT_S = 600.0
EVAL_LIMIT_S = 600.0
MIN_SEEDS = 3


@dataclass
class Run:
    """One finished run: its folder, header, config and ``final`` event."""

    path: Path
    header: dict[str, Any]
    final: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def config(self) -> dict[str, Any]:
        return self.header["config"]

    @property
    def seed(self) -> int:
        return int(self.final.get("seed", self.config["run"]["seed"]))

    def _compliant_adaptive(self) -> Optional[dict[str, Any]]:
        a = self.final.get("adaptive")
        if isinstance(a, dict) and "val_loss" in a and "val_bpb" in a and a.get(VERDICT_KEY) == "compliant":
            return a
        return None

    def score(self) -> Optional[dict[str, Any]]:
        """The submission's score, always a compliant one: the adaptive evaluation of the round-tripped
        artifact when the run had one (``eval.adapt``) with the checker's verdict ``compliant``, else
        round-trip sliding, else round-trip plain."""
        return self._compliant_adaptive() or self.final.get("round_trip_sliding") or self.final.get("round_trip")

    def score_name(self) -> str:
        a = self._compliant_adaptive()
        if a is not None:
            return f"adaptive ({a.get('mode', 'ttt')})"
        return "sliding-window" if self.final.get("round_trip_sliding") else "plain"

    def eval_seconds(self) -> Optional[float]:
        """The submission's evaluation time: the scoring of :meth:`score` (the adaptive evaluation, or the
        round-trip evaluation) plus the artifact load of the exported script itself
        (``artifact_load_exported``; the package's own load is not the submission's). None: not measured."""
        ph = self.final.get("phases", {})
        scoring = ph.get("eval_adaptive") if self._compliant_adaptive() is not None else ph.get("eval_round_trip")
        load = ph.get("artifact_load_exported")
        if scoring is None or load is None:
            return None
        return float(scoring) + float(load)

    def verdicts(self) -> list[str]:
        """Every compliance verdict recorded in the run's metrics (see :func:`recorded_verdicts`)."""
        return recorded_verdicts(self.events)


VERDICT_KEY = "eval_compliance"
"""The metrics/metadata key of the evaluation checker's verdict string (issue 14's adaptive evaluation)."""


def recorded_verdicts(obj: Any) -> list[str]:
    """Verdict strings anywhere in ``obj`` (events, nested dicts and lists): the value of
    ``eval_compliance``, and of ``compliance`` when it is a string, or a dict with ``verdict``
    (or a boolean ``compliant``). ``compliant`` means compliant; anything else
    (``non-compliant: condition 1, 3``, ``unverified: …``) does not."""
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in (VERDICT_KEY, "compliance"):
                if isinstance(v, str):
                    out.append(v)
                elif isinstance(v, dict) and ("verdict" in v or "compliant" in v):
                    verdict = v.get("verdict")
                    if verdict is None:
                        verdict = "compliant" if v.get("compliant") else "non-compliant"
                    why = v.get("reason") or ""
                    out.append(str(verdict) + (f" ({why})" if why else ""))
                    continue
            out.extend(recorded_verdicts(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(recorded_verdicts(v))
    return out


def _read_run(d: Path) -> Run:
    events = []
    for ln in (d / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        if ln.strip():
            events.append(json.loads(ln))
    headers = [e for e in events if e.get("event") == "header"]
    finals = [e for e in events if e.get("event") == "final"]
    if not headers or not finals:
        raise ValueError(f"run_dir: {str(d)!r} has no header or no final event in metrics.jsonl (unfinished run?)")
    return Run(d, headers[-1], finals[-1], events)


def load_runs(path: os.PathLike) -> list[Run]:
    """The run at ``path``, or every run in its subfolders (sorted by seed)."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"run_dir: no directory at {str(p)!r}")
    if (p / "metrics.jsonl").is_file():
        return [_read_run(p)]
    runs = [_read_run(d) for d in sorted(p.iterdir()) if (d / "metrics.jsonl").is_file()]
    if not runs:
        raise ValueError(f"run_dir: {str(p)!r} holds no metrics.jsonl, nor subfolders with one")
    base = _comparable(runs[0].config)
    for r in runs[1:]:
        if _comparable(r.config) != base:
            raise ValueError(f"run_dir: {r.path.name} was trained with another configuration than {runs[0].path.name}")
    seeds = [r.seed for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"run_dir: seeds repeat across runs: {seeds}")
    return runs


def _comparable(cfg: dict) -> dict:
    c = json.loads(json.dumps(cfg))
    c["run"].pop("seed", None)
    c["run"].pop("name", None)
    c["run"].pop("out_dir", None)
    return c


def _adaptation_fields(cfg: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _adaptation_fields(v, key + ".")
        elif any(w in k.lower() for w in ("ttt", "slot", "research")) and v not in (False, 0, "", None, "off", "none"):
            out.append(f"{key}={v}")
    return out


@dataclass
class Review:
    record: bool
    reasons: list[str]
    compliance: str
    total_bytes_max: Optional[int]


def review(runs: list[Run], script: ExportedScript, *, baseline: bool = False) -> Review:
    """Record or not, and why (see the module docstring). ``baseline``: a baseline was given for the
    significance test (without one, the significance is unknown: not a record)."""
    reasons: list[str] = []
    compliance_lines = []
    totals = []
    for r in runs:
        tag = f"seed {r.seed}"
        verdicts = r.verdicts()
        bad = sorted({v for v in verdicts if v != "compliant"})
        if bad:
            compliance_lines.append(f"{tag}: " + "; ".join(bad))
            reasons.append(f"{tag}: evaluation is not compliant (recorded verdict: {'; '.join(bad)})")
        elif verdicts:
            compliance_lines.append(f"{tag}: compliant (the evaluation checker's recorded verdict)")
        else:
            adapt = _adaptation_fields(r.config)
            if adapt:
                reasons.append(f"{tag}: adaptation is enabled ({', '.join(adapt)}) but no compliance verdict was recorded")
                compliance_lines.append(f"{tag}: unverified adaptation ({', '.join(adapt)})")
            else:
                compliance_lines.append(f"{tag}: no adaptation at evaluation (plain/sliding scoring of the artifact: "
                                        "each token scored once from its prefix, full softmax)")
        art, code = r.final.get("artifact_bytes"), r.final.get("code_bytes")
        if art is None:
            reasons.append(f"{tag}: no artifact was written")
        elif code is None:
            reasons.append(f"{tag}: code bytes were not measured (trained without the export's code count)")
        else:
            totals.append(art + script.counted)
            if code != script.counted:
                reasons.append(f"{tag}: the run budgeted {code:,} code bytes but the exported train_gpt.py is "
                               f"{script.counted:,} bytes (the package changed since the run; train again)")
            if art + script.counted > CHALLENGE_LIMIT:
                reasons.append(f"{tag}: {art:,} artifact + {script.counted:,} code = {art + script.counted:,} bytes "
                               f"> {CHALLENGE_LIMIT:,}")
        if r.final.get("submission_ok") is False:
            reasons.append(f"{tag}: the trainer reported the run over budget ({r.final.get('budget', '')})")
        if r.score() is None:
            reasons.append(f"{tag}: no round-trip (artifact) score")
        ph = r.final.get("phases", {})
        window = float(r.final.get("train_seconds", 0.0)) + float(ph.get("hessians", 0.0))
        if window > TRAIN_LIMIT_S:
            reasons.append(f"{tag}: training + Hessians took {window:.1f} s > {TRAIN_LIMIT_S:.0f} s")
        ev = r.eval_seconds()
        if ev is None:
            reasons.append(f"{tag}: evaluation time not measured (the exported script's own artifact load "
                           "`artifact_load_exported` and the score's evaluation are both needed)")
        elif ev > EVAL_LIMIT_S:
            reasons.append(f"{tag}: evaluation (exported artifact load + scoring) took {ev:.1f} s > {EVAL_LIMIT_S:.0f} s")
        dev, world = str(r.header.get("device", "")), int(r.header.get("world_size", 1))
        if "H100" not in dev or world != 8:
            reasons.append(f"{tag}: run on {world}× {dev or 'unknown device'}, not 8×H100 SXM (times are not the "
                           "challenge's)")
    if len(runs) < MIN_SEEDS:
        reasons.append(f"{len(runs)} seed(s); a record needs {MIN_SEEDS} to show p < 0.01")
    elif not baseline:
        reasons.append("no --baseline: the significance of the improvement is unknown")
    return Review(not reasons, reasons, "\n".join(compliance_lines), max(totals) if totals else None)


def _seed_rows(runs: list[Run]) -> list[tuple[int, float, float]]:
    return [(r.seed, float(r.score()["val_loss"]), float(r.score()["val_bpb"])) for r in runs if r.score()]


def stage_bpb(r: Run) -> dict[str, Optional[float]]:
    """The three columns of the records' tables: ``pre_quant`` (the trained model), ``post_quant``
    (the round-tripped artifact) and ``post_ttt`` (its adaptive evaluation), each the sliding-window
    score where the run has one, else plain; None where the run has no such stage."""
    f = r.final

    def bpb(*keys: str) -> Optional[float]:
        for k in keys:
            v = f.get(k)
            if isinstance(v, dict) and v.get("val_bpb") is not None:
                return float(v["val_bpb"])
        return None

    return {"pre_quant": bpb("pre_quant_sliding", "pre_quant"), "post_quant": bpb("round_trip_sliding", "round_trip"),
            "post_ttt": bpb("adaptive")}


def technique_summary(cfg: dict) -> str:
    """One line of what the configuration trains and how it is scored (from the config only)."""
    m, q, e = cfg.get("model", {}), cfg.get("quant", {}), cfg.get("eval", {})
    parts = [f"{m.get('num_layers')}L {m.get('model_dim')}d {m.get('num_heads')}H/{m.get('num_kv_heads')}KV GPT",
             f"vocab {m.get('vocab_size')}" + (" CaseOps" if cfg.get("data", {}).get("caseops") else ""),
             f"XSA last {m.get('xsa_last_n')}" if m.get("xsa_last_n") else "",
             f"depth recurrence {m.get('loop_start')}-{m.get('loop_end')}" if m.get("num_loops") else "",
             f"parallel residuals from layer {m.get('parallel_start_layer')}",
             "Muon + Adam, EMA", "GPTQ int6 + int7 embedding" + (" + LQER" if q.get("lqer_rank") else ""),
             f"codec {q.get('codec') or 'golf-rans'}",
             f"eval {e.get('adapt', {}).get('ttt')} TTT" if e.get("adapt", {}).get("ttt", "none") not in ("none", "", None)
             else "sliding-window eval"]
    return ", ".join(p for p in parts if p)


def attribution() -> dict[str, str]:
    """Who the submitted code and method come from (submission.json ``attribution``)."""
    return {"code": "golf_fast (this package), exported by `golf-fast export` as one self-contained train_gpt.py",
            "method": RECORD_LINEAGE}


def tokenizer_file(r: Run) -> Optional[Path]:
    """The SentencePiece model the run trained with, if it is still on disk: ``data.tokenizer``,
    else ``<data_dir>/tokenizer.model``."""
    d = r.config.get("data", {})
    for p in (d.get("tokenizer"), os.path.join(d.get("data_dir") or "", "tokenizer.model") if d.get("data_dir") else ""):
        if p and Path(p).is_file():
            return Path(p)
    return None


def submission_json(runs: list[Run], rv: Review, script: ExportedScript, *, name: str, author: str,
                    github_id: str, blurb: str, test: Optional[WelchResult]) -> dict[str, Any]:
    rows = _seed_rows(runs)
    out: dict[str, Any] = {"author": author, "github_id": github_id, "name": name, "blurb": blurb,
                           "date": date.today().isoformat(),
                           "track": "10min_16mb" if rv.record else "non_record_16mb"}
    if rows:
        lm, ls = mean_std([r[1] for r in rows])
        bm, bs = mean_std([r[2] for r in rows])
        out.update(val_loss=round(lm, 8), val_bpb=round(bm, 8), val_loss_std=round(ls, 8), val_bpb_std=round(bs, 8))
    out["seeds"] = [r.seed for r in runs]
    out["seed_results"] = {}
    for r in runs:
        s = r.score() or {}
        steps = int(r.final.get("steps", 0))
        out["seed_results"][str(r.seed)] = {
            "val_loss": s.get("val_loss"), "val_bpb": s.get("val_bpb"),
            "artifact_bytes": _with_code(r.final.get("artifact_bytes"), script), "model_bytes": r.final.get("artifact_bytes"),
            **{f"{k}_val_bpb": v for k, v in stage_bpb(r).items()}, "steps": steps, "step_avg_ms": round(1000 * float(r.final.get("train_seconds", 0)) / max(steps, 1), 2),
            "eval_time_s": round(r.eval_seconds(), 1) if r.eval_seconds() is not None else None}
    arts = [r.final["artifact_bytes"] + script.counted for r in runs if r.final.get("artifact_bytes")]
    if arts:  # as in the records: artifact_bytes counts the model file and the code
        out.update(artifact_bytes_mean=round(sum(arts) / len(arts)), artifact_bytes_max=max(arts))
    out["code_bytes"] = script.counted
    if rv.total_bytes_max is not None:
        out["bytes_total"] = rv.total_bytes_max
    h = runs[0].header
    out.update(hardware=f"{h.get('world_size', 1)}x {h.get('device', '')}",
               pytorch_version=str(h.get("versions", {}).get("torch", "")))
    if test is not None:
        out.update(comparison_baseline_val_loss=round(test.base_mean, 8),
                   delta_vs_baseline_nats=round(-test.improvement, 8), welch_t=round(test.t, 4),
                   welch_df=round(test.df, 3), p_value=test.p)
    out["technique_summary"] = technique_summary(runs[0].config)
    out["attribution"] = attribution()
    out["compliance"] = {"artifact_under_16mb": rv.total_bytes_max is not None and rv.total_bytes_max <= CHALLENGE_LIMIT,
                         "record": rv.record, "reasons_not_record": rv.reasons,
                         "evaluation": rv.compliance.splitlines()}
    return out


def _with_code(art: Optional[int], script: ExportedScript) -> Optional[int]:
    return None if art is None else int(art) + script.counted


def readme(runs: list[Run], rv: Review, script: ExportedScript, sub: dict[str, Any], test: Optional[WelchResult]) -> str:
    cfg = runs[0].config
    m = cfg["model"]
    rows = _seed_rows(runs)
    lines = [f"# {sub['name']}", ""]
    lines += ["**Record submission.**" if rv.record else "**Non-record submission.** Not a record because:", ""]
    lines += [f"- {r}" for r in rv.reasons] + ([""] if rv.reasons else [])
    lines += ["## Method", "",
              f"Trained with golf_fast (preset `{cfg.get('preset')}`; git {runs[0].header.get('git', 'unknown')}): "
              f"a {m['num_layers']}-layer, {m['model_dim']}-wide GPT of the R0611 architecture "
              f"({m['num_heads']} heads / {m['num_kv_heads']} KV heads, vocabulary {m['vocab_size']}, "
              f"depth recurrence {m['loop_start']}–{m['loop_end']} × {1 + m['num_loops']}, parallel residuals from "
              f"layer {m['parallel_start_layer']}), Muon + Adam, EMA, Hessians from training data inside the "
              "time window, GPTQ (int6 matrices, int7 embedding, SDClip), the artifact codec "
              f"`{cfg['quant'].get('codec') or 'golf-rans'}`, then the artifact is reloaded and scored.", "",
              "`train_gpt.py` is the package code this configuration uses, gathered by following imports and "
              f"tree-shaken to what this configuration can reach ({len(script.modules)} modules), each module's "
              "source executed into its own module object; function annotations nothing reads dropped, locals "
              f"renamed (not in Triton kernel modules), minified and wrapped ({script.wrapper}). The golf-rans artifact decoder is plain C compiled at load "
              "with the system C compiler (`golf_fast.artifact.rans.portable`), else numpy "
              "(`golf_fast.artifact.rans.numpy_coder`): no compiled extension of the package is needed. Environment: `DATA_PATH`, `TOKENIZER_PATH`, `SEED`, "
              "`RUN_ID`; `torchrun --standalone --nproc_per_node=8 train_gpt.py`.", "",
              "## Code bytes", "",
              f"raw sources {script.raw_bytes:,} B → minified bundle {script.minified_bytes:,} B → counted "
              f"**{script.counted:,} B** (`train_gpt.py` as submitted).", "",
              "## Configuration", "", "```json", json.dumps(cfg, indent=1), "```", "",
              "## Results", "", "```", format_table(rows, test), "```", ""]
    lines += ["| Seed | Steps | ms/step | Pre-quant val_bpb | Post-quant val_bpb | **Post-TTT val_bpb** | "
              "Score val_loss | Model bytes | Artifact (model + code) |", "|---|---|---|---|---|---|---|---|---|"]

    def cell(v: Optional[float]) -> str:
        return f"{v:.5f}" if v is not None else "n/a"

    for r in runs:
        s = r.score() or {}
        art = r.final.get("artifact_bytes")
        tot = f"{art + script.counted:,}" if art else "n/a"
        st = stage_bpb(r)
        steps = int(r.final.get("steps", 0))
        ms = 1000 * float(r.final.get("train_seconds", 0)) / max(steps, 1)
        lines.append(f"| {r.seed} | {steps:,} | {ms:.1f} | {cell(st['pre_quant'])} | {cell(st['post_quant'])} | "
                     f"**{cell(st['post_ttt'])}** | {s.get('val_loss', float('nan')):.6f} | {art or 0:,} | {tot} |")
    lines += ["", "## Compliance", ""] + [f"- {ln}" for ln in rv.compliance.splitlines()] + ["",
              "Score: the round-trip artifact's " + runs[0].score_name() + " val_bpb "
              "(full-vocabulary softmax, every validation token scored once, left to right).", ""]
    lines += reproducing(runs)
    return "\n".join(lines)


def reproducing(runs: list[Run]) -> list[str]:
    """The README's Reproducing section: data preparation, then the 8-GPU run per seed."""
    d = runs[0].config.get("data", {})
    tok = tokenizer_file(runs[0])
    tok_rel = f"tokenizers/{tok.name}" if tok else "<the tokenizer model>"
    data = f"./data/datasets/{os.path.basename((d.get('data_dir') or 'fineweb').rstrip('/'))}"
    lines = ["## Reproducing", "", "```bash", "pip install -r requirements.txt"]
    if d.get("caseops"):
        lines += ["# CaseOps data: FineWeb documents (.jsonl, field 'text'; the first 50,000 are validation) →",
                  "# CaseOps text, shards tokenized with the tokenizer below, validation byte sidecars",
                  "python prepare_caseops_data.py build --caseops --input docs_selected.jsonl --val-docs 50000 \\",
                  f"    --vocab-size {runs[0].config.get('model', {}).get('vocab_size')} --tokenizer {tok_rel} --out {data}"]
    for r in runs:
        lines.append(f"DATA_PATH={data} TOKENIZER_PATH={tok_rel} SEED={r.seed} RUN_ID=seed{r.seed} "
                     "torchrun --standalone --nproc_per_node=8 train_gpt.py")
    lines += ["```", "", "Every other setting is baked into `train_gpt.py` (the configuration above); it writes "
              "`runs/<RUN_ID>/` with the artifact and the metrics.", ""]
    if tok is None:
        lines += ["The tokenizer model the runs used was not found when this folder was written; it is not included.", ""]
    return lines


def requirements(runs: list[Run]) -> str:
    v = runs[0].header.get("versions", {})
    return "\n".join([
        "# pip install -r requirements.txt",
        f"torch=={v.get('torch', '')}" if v.get("torch") else "torch",
        "numpy", "sentencepiece", "brotli",
        f"# triton (GPU kernels; ships with torch on CUDA), tested: {v.get('triton', 'n/a')}",
        f"# Python {v.get('python', '3.11+')} (the minified source targets the Python it was exported with)",
        ""])


def write_folder(out: os.PathLike, runs: list[Run], script: ExportedScript, rv: Review, *, name: str,
                 author: str = "", github_id: str = "", blurb: str = "",
                 test: Optional[WelchResult] = None) -> list[str]:
    """Write the folder (replacing files of the same name); returns the file names written."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    sub = submission_json(runs, rv, script, name=name, author=author, github_id=github_id, blurb=blurb, test=test)
    files = {"train_gpt.py": script.text, "submission.json": (json.dumps(sub, indent=2) + "\n").encode(),
             "README.md": readme(runs, rv, script, sub, test).encode(), "requirements.txt": requirements(runs).encode()}
    if not math.isfinite(float(sub.get("val_bpb", 0.0))):
        raise ValueError("runs: the mean val_bpb is not finite")
    if runs[0].config.get("data", {}).get("caseops"):
        from golf_fast.export.stub import prepare_script

        files["prepare_caseops_data.py"] = prepare_script()
    tok = tokenizer_file(runs[0])
    if tok is not None:
        (d / "tokenizers").mkdir(exist_ok=True)
        files[f"tokenizers/{tok.name}"] = tok.read_bytes()
    for fname, data in files.items():
        atomic_write_bytes(d / fname, data)
    written = list(files)
    for r in runs:
        log = r.path / "train.log"
        if log.is_file():
            atomic_write_bytes(d / f"train_seed{r.seed}.log", log.read_bytes())
            written.append(f"train_seed{r.seed}.log")
    return sorted(written)
