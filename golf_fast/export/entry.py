"""The entry point of an exported ``train_gpt.py``: the baked configuration plus the challenge's
environment interface, then the package's training program.

The challenge's scripts read ``DATA_PATH`` (shard folder), ``TOKENIZER_PATH`` (SentencePiece
model), ``SEED`` and ``RUN_ID`` from the environment; :func:`apply_challenge_env` maps them onto
``data.data_dir``, ``data.tokenizer``, ``run.seed`` and ``run.name``. Nothing else is read from
the environment (torchrun's RANK/WORLD_SIZE are read by the trainer as always).

The exported file has no ``golf_fast._C``: :func:`use_torch_paths` gives the one op whose CUDA
kernel lives only in the extension (the Hessian accumulation) its pure-torch reference as the
CUDA backend (``H += XᵀX`` is one cuBLAS GEMM); whenever the extension is absent the golf-rans
decoder is the plain-C one compiled at load (``golf_fast.artifact.rans.portable``), else numpy
(``golf_fast.artifact.rans.numpy_coder``), and the encoder runs in numpy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Mapping, Optional

from golf_fast.model.typed_config import build_config
from golf_fast.train.config import TrainConfig

ENV_KEYS = {"DATA_PATH": ("data", "data_dir", str), "TOKENIZER_PATH": ("data", "tokenizer", str),
            "SEED": ("run", "seed", int), "RUN_ID": ("run", "name", str)}


def config_from_dict(d: Mapping[str, Any]) -> TrainConfig:
    """``TrainConfig`` from ``TrainConfig.to_dict()`` output (nested configs included); unknown
    sections or fields are errors; validated."""
    if not isinstance(d, Mapping):
        raise TypeError(f"d: expected a mapping, got {type(d).__name__}")
    cfg = build_config(TrainConfig, d, "d")
    cfg.validate()
    return cfg


def apply_challenge_env(cfg: TrainConfig, environ: Optional[Mapping[str, str]] = None) -> TrainConfig:
    """A copy of ``cfg`` with DATA_PATH, TOKENIZER_PATH, SEED and RUN_ID applied where set."""
    environ = os.environ if environ is None else environ
    sections: dict[str, dict[str, Any]] = {}
    for key, (sec, name, typ) in ENV_KEYS.items():
        if environ.get(key):
            try:
                sections.setdefault(sec, {})[name] = typ(environ[key])
            except ValueError:
                raise ValueError(f"{key}: expected {typ.__name__}, got {environ[key]!r}") from None
    new = dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s), **v) for s, v in sections.items()})
    new.validate()
    return new


def use_torch_paths() -> list[str]:
    """Without ``golf_fast._C``: give the Hessian op a pure-torch CUDA backend. Returns what changed."""
    from golf_fast._availability import load_extension
    from golf_fast.ops import hessian

    if load_extension()[0] or "torch" in hessian.HESSIAN_OP.backends("cuda"):
        return []
    hessian.HESSIAN_OP.add_backend("torch", "cuda", hessian.hessian_accumulate_ref, selfcheck=False)
    return ["hessian_accumulate_@cuda: torch (cuBLAS XᵀX; golf_fast._C is not part of a submission)"]


def script_bytes(path: Optional[str] = None) -> int:
    """Bytes of the running script (``sys.argv[0]``): the code bytes of an exported submission."""
    p = path or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    if not p or not os.path.isfile(p):
        raise FileNotFoundError(f"path: the running script {p!r} is not a file; cannot count code bytes")
    return os.path.getsize(p)


def main(config_json: str, environ: Optional[Mapping[str, str]] = None) -> int:
    """Train with the baked ``config_json`` (+ the challenge's env); code bytes = this script's size."""
    from golf_fast.train.loop import TrainingDiverged, train

    cfg = apply_challenge_env(config_from_dict(json.loads(config_json)), environ)
    notes = use_torch_paths()
    try:
        res = train(cfg, code_bytes=script_bytes(), notes=notes)
    except TrainingDiverged as e:
        print(f"train_gpt.py: {e}", file=sys.stderr)
        return 3
    return 0 if res.submission_ok is not False else 4
