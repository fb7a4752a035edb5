"""The baseline of the significance test: numbers on the command line or a folder of logs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from golf_fast.export.stats import scores_from_logs


def parse_baseline(spec: str, metric: str = "val_loss", bytes_per_token: Optional[float] = None) -> list[float]:
    """Baseline val_loss values (nats/token) from ``spec``: comma-separated numbers in ``metric``
    units, or a folder of logs (the last ``val_loss … val_bpb …`` line of each). ``val_bpb``
    numbers are converted with ``val_loss = val_bpb · ln 2 · bytes/token`` of the same val set."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("baseline: expected comma-separated numbers or a folder of logs")
    if metric not in ("val_loss", "val_bpb"):
        raise ValueError(f"metric: expected val_loss or val_bpb, got {metric!r}")
    p = Path(spec)
    if p.is_dir():
        return [loss for _, loss, _ in scores_from_logs(p)]
    try:
        vals = [float(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"baseline: {spec!r} is neither a folder nor comma-separated numbers") from None
    if not vals or not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"baseline: expected positive finite numbers, got {spec!r}")
    if metric == "val_bpb":
        if not bytes_per_token or bytes_per_token <= 0:
            raise ValueError("bytes_per_token: needed (> 0) to convert val_bpb numbers to nats")
        vals = [v * math.log(2) * bytes_per_token for v in vals]
    return vals


def bytes_per_token(scores: Sequence[dict]) -> Optional[float]:
    """bytes/token of the val set from score dicts with ``tokens`` and ``bytes``."""
    for s in scores:
        if s and s.get("tokens") and s.get("bytes"):
            return float(s["bytes"]) / float(s["tokens"])
    return None
