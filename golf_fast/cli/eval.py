"""``golf-fast eval ARTIFACT --data.data_dir DIR``: val_bpb of an artifact in a fresh process.

    golf-fast eval model.gfa --data.data_dir DIR                                # as the record evaluates
    golf-fast eval model.gfa --data.data_dir DIR --eval.adapt.ttt none          # plain and sliding only
    golf-fast eval model.gfa --data.data_dir DIR --preset smoke --eval.adapt.ttt lora --compare
    golf-fast eval model.gfa --data.data_dir DIR --eval.adapt.slot causal --eval.adapt.ttt none \\
        --eval.adapt.slot_cfg.l2 10
    golf-fast eval model.gfa --data.data_dir DIR --eval.adapt.ttt none --eval.adapt.research prequant  # flagged

The settings are the train config's (``golf_fast.train.config``): ``--preset`` (default ``record``)
and the same ``--section.field VALUE`` overrides as ``golf-fast train``; eval reads
``data.data_dir`` (the ``*_val_*.bin`` shards; required), ``data.tokenizer`` ("" =
``DIR/tokenizer.model``), ``data.max_val_tokens``, ``eval.seq_len``/``stride``/``batch_seqs``/
``weights``, ``eval.adapt.*`` (the evaluation-time adaptation), ``run.device`` and
``run.precision``. So ``golf-fast eval --preset P`` evaluates an artifact as a run of preset ``P``
does at its end: plain val_bpb, sliding-window val_bpb when ``eval.stride`` is below
``eval.seq_len``, and the adaptive evaluation ``eval.adapt`` asks for with its compliance verdict.

The artifact is loaded checksummed, without pickle; the model is rebuilt from its config (on CUDA its
block matrices stay packed int6 codes by default, ``eval.weights``). When DIR has CaseOps byte
sidecars (``*_val_bytes_*.bin``) the bytes come from them, else from the tokenizer. ``--compare``
also runs the same driver without adaptation first (the baseline each mode is measured against);
``--predict-h100`` adds the predicted 8×H100 time of the mode on these documents (predict_time.py;
the efficiency is R0611's, calibrated from its measured 508.8 s); ``--audit N`` replays the adaptive
evaluation N times, each with the tokens from a sampled position on randomized
(compliance/audit.py), and a moved score makes the verdict non-compliant. Works under torchrun too
(the windows are split across ranks, the sums all-reduced).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from golf_fast.artifact import ArtifactError, load_artifact
from golf_fast.cli.train import add_config_arguments, resolve
from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.errors import DataError
from golf_fast.data.shards import check_token_ids, list_shards, load_tokens, load_val_bytes
from golf_fast.distributed import init_distributed, shutdown
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.predict_time import predict_seconds, record_efficiency
from golf_fast.eval.adapt.result import AUDIT_FAILED, UNAUDITED
from golf_fast.eval.adapt.run import run_adaptive, run_baseline
from golf_fast.eval.compliance.audit import replay_audit
from golf_fast.eval.evaluate import evaluate
from golf_fast.eval.windows import document_spans
from golf_fast.model.from_artifact import model_from_artifact
from golf_fast.model.precision import apply_precision
from golf_fast.train.config import TrainConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=Path)
    p.add_argument("--looping", choices=("on", "off"), default="on",
                   help="depth recurrence during eval (on: as at the end of training)")
    p.add_argument("--compare", action="store_true", help="also run the adaptive driver without adaptation")
    p.add_argument("--predict-h100", action="store_true", help="add the predicted 8×H100 time of the adaptation")
    p.add_argument("--audit", type=int, default=0, metavar="N",
                   help="replay audit of condition 1 at N sampled positions (one full rerun each)")
    add_config_arguments(p, default_preset="record")


def resolve_eval_config(args: argparse.Namespace) -> TrainConfig:
    """The preset with the overrides, validated; ``data.data_dir`` must be set."""
    cfg = resolve(args)
    if not cfg.data.data_dir:
        raise ValueError("data.data_dir: expected the folder with *_val_*.bin shards (--data.data_dir DIR)")
    return cfg


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 done; 2 a bad setting, the artifact cannot be loaded or the data is bad (one line on stderr)."""
    try:
        cfg = resolve_eval_config(args)
        if args.audit < 0:
            raise ValueError(f"--audit: expected N >= 0 positions, got {args.audit}")
    except ValueError as e:
        print(f"golf-fast eval: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfg.to_json())
        return 0
    e, adapt = cfg.eval, cfg.eval.adapt
    data_dir = Path(cfg.data.data_dir)
    d = init_distributed(cfg.run.device)
    finished = False
    try:
        tok = cfg.data.tokenizer or data_dir / "tokenizer.model"
        try:
            weights = e.resolved_weights(d.device.type)
            art = load_artifact(args.artifact)  # decoded once; every model of this evaluation is built from it
            model = model_from_artifact(art, d.device, weights=weights)
        except ArtifactError as err:
            print(f"golf-fast eval: cannot load {args.artifact}: {err}", file=sys.stderr)
            return 2
        model = apply_precision(model, cfg.run.precision)
        try:
            table = TokenByteTable.from_sentencepiece(str(tok), vocab_size=model.cfg.vocab_size)
            val_files = list_shards(data_dir, "val")
            val, val_bytes = load_tokens(val_files), load_val_bytes(val_files)
            check_token_ids(val, model.cfg.vocab_size, f"validation shards in {data_dir}")
        except (DataError, OSError) as err:
            print(f"golf-fast eval: {_one_line(err)}", file=sys.stderr)
            return 2
        model.looping_active = args.looping == "on"
        if cfg.data.max_val_tokens:
            val = val[:cfg.data.max_val_tokens]
            val_bytes = val_bytes[:cfg.data.max_val_tokens] if val_bytes is not None else None
        dtype = torch.bfloat16 if d.device.type == "cuda" or cfg.run.precision == "record" else None
        out = {"artifact": str(args.artifact), "artifact_bytes": os.path.getsize(args.artifact),
               "bytes_from": "sidecar" if val_bytes is not None else "tokenizer", "weights": weights}
        sliding = [("sliding", e.stride)] if e.stride and e.stride < e.seq_len else []
        for mode, stride in [("plain", None)] + sliding:
            r = evaluate(model, val, table, seq_len=e.seq_len, stride=stride, batch_seqs=e.batch_seqs,
                         rank=d.rank, world_size=d.world, device=d.device, dtype=dtype, val_bytes=val_bytes)
            out[mode] = r.as_dict()
        if adapt.adapts():
            def fresh_model():
                m = apply_precision(model_from_artifact(art, d.device), cfg.run.precision)
                m.looping_active = args.looping == "on"
                return m

            int6_state = art.state if adapt.lora.backend == "int6" else None
            out.update(run_adapt(adapt, fresh_model, val, table, d.rank, d.world, d.device, dtype, int6_state,
                                 val_bytes, compare=args.compare, predict_h100=args.predict_h100,
                                 audit=args.audit))
        if d.main:
            print(json.dumps(out, indent=1))
        finished = True
    finally:
        shutdown(d, synchronize=finished)
    return 0


def run_adapt(cfg: AdaptConfig, model_factory, val: np.ndarray, table, rank: int, world: int, device, dtype,
              int6_state=None, val_bytes=None, *, compare: bool = False, predict_h100: bool = False,
              audit: int = 0) -> dict:
    """The adaptive evaluation ``cfg`` asks for on a fresh model from ``model_factory()``; with ``compare``
    the no-adaptation baseline first (per-document for lora/phased, the stream otherwise), with
    ``audit`` N > 0 the replay audit at N sampled positions (N full reruns; a moved score overrides the
    verdict with non-compliant), with ``predict_h100`` the predicted 8×H100 time. Returns the
    JSON-ready report (every entry carries its verdict)."""
    if not isinstance(cfg, AdaptConfig):
        raise TypeError(f"cfg: expected an AdaptConfig, got {type(cfg).__name__}")
    if isinstance(audit, bool) or not isinstance(audit, int) or audit < 0:
        raise ValueError(f"audit: expected N >= 0 positions, got {audit!r}")
    out = {"adapt_config": cfg.to_dict()}
    kw = dict(rank=rank, world_size=world, device=device, dtype=dtype, val_bytes=val_bytes)
    if compare:
        out["baseline"] = _entry(run_baseline(model_factory(), val, table, cfg, **kw))
    model = model_factory()
    mcfg = model.cfg  # the config the audit and the prediction read (no further artifact load for it)
    r = run_adaptive(model, val, table, cfg, int6_state=int6_state, **kw)
    out["adaptive"] = {**_entry(r), "audit": UNAUDITED}
    if audit:
        rep = replay_audit(lambda t: run_adaptive(model_factory(), t, table, cfg, int6_state=int6_state, **kw),
                           val, r, audit, bos_id=mcfg.bos_id, vocab_size=mcfg.vocab_size,
                           seed=cfg.seed, world_size=world)
        out["adaptive"]["audit"] = rep.as_dict()
        if rep.ok is False:  # the trust-nothing check overrides the event log's verdict
            out["adaptive"]["eval_compliance"] = AUDIT_FAILED
    if predict_h100:
        docs = document_spans(val, mcfg.bos_id)
        lengths = docs[:, 1] - docs[:, 0]
        eff = record_efficiency()  # R0611's method on the record model and FineWeb-like documents
        p = predict_seconds(mcfg, lengths, cfg, efficiency=eff)
        out["predicted_8xh100"] = {"seconds": float(f"{p.seconds:.3g}"), "efficiency": round(eff, 4),
                                   "arithmetic": p.text.splitlines()}
    return out


def _entry(r) -> dict:
    d = r.as_dict()
    return {k: d[k] for k in ("mode", "val_loss", "val_bpb", "tokens", "bytes", "seconds", "stream_targets",
                              "scored_positions", "eval_compliance", "compliance", "notes", "void")}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
