"""Compliance with the challenge's evaluation rules, decided from recorded events (not from names).

The four conditions (parameter_golf.md §6.1, the challenge's issue #1017), and how each is checked
from an :class:`~golf_fast.eval.compliance.events.EventLog` ("before"/"after" is the log's causal order:
same rank by seq, different epochs by epoch; see events.py):

1. **Causal dependence** — the score of ``j`` depends only on the artifact and tokens scored
   before it. Broken when an adaptation step that precedes the score of ``j`` read ``j`` itself, or
   read a token that is scored only after that step (or never): then some score depends on a token
   that was not yet part of the prefix. Also broken when a causality probe measured that a score
   changed when later input tokens were replaced.
2. **Full normalized distribution** — at every scored position the trusted commit recomputed
   ``−log softmax(z + δ)[y]`` over the full vocabulary and recorded the largest deviation of the
   committed score per event (within ``nats_tol``; an event without this check is unverified); at
   every normalization probe the probabilities sum to 1 (``norm_tol``) over the whole vocabulary.
3. **Score before update** — every position an adaptation step read was scored strictly before
   that step (given positions — document-start BOS tokens — excepted). A position scored in the
   same epoch on another rank is not "before" (nothing ordered the two). Update reads recorded
   by the guarded stream are update events. Context reads (raw tokens) may touch only positions
   that are given, already scored, or before every target of the next score event.
4. **Single pass** — every position is scored exactly once (none twice, none missing); with
   :func:`check_losses`, the reported sums are recomputed from the logged per-position losses.

Tripwires (events.TRIPWIRES, recorded per score event by the guarded stream and the trusted commit)
break conditions directly: a state change between a score read and its commit breaks 1 and 3, a
target read for score twice breaks 4, a committed batch that differs from its read breaks 2.

A condition with no evidence (no probes of its kind) is "unverified", which is not compliant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from golf_fast.eval.compliance.events import BATCH_EDITED, READ_TWICE, STATE_CHANGED, TRIPWIRES, EventLog

_INF = np.iinfo(np.int64).max // 4


@dataclass
class ConditionResult:
    condition: int
    ok: Optional[bool]
    """True: holds; False: broken; None: no evidence recorded (unverified)."""
    detail: str = ""


@dataclass
class ComplianceReport:
    conditions: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def compliant(self) -> bool:
        return all(c.ok is True for c in self.conditions.values())

    @property
    def broken(self) -> list:
        return sorted(k for k, c in self.conditions.items() if c.ok is False)

    @property
    def verdict(self) -> str:
        """``compliant``, ``non-compliant: condition 1, 3`` or ``unverified: condition 2``."""
        if self.broken:
            return "non-compliant: condition " + ", ".join(str(k) for k in self.broken)
        unv = sorted(k for k, c in self.conditions.items() if c.ok is None)
        if unv:
            return "unverified: condition " + ", ".join(str(k) for k in unv)
        return "compliant"

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "stats": self.stats,
                "conditions": {str(k): {"ok": c.ok, "detail": c.detail} for k, c in sorted(self.conditions.items())}}


def _range_max(arr: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """max(arr[a:b]) for each non-empty [a, b) row of ``ranges`` (``arr`` padded by one sentinel)."""
    padded = np.concatenate([arr, np.array([-_INF], dtype=arr.dtype)])
    idx = ranges.reshape(-1)
    return np.maximum.reduceat(padded, idx)[::2]


def _expand(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, range index of each position) for the [a, b) rows of ``ranges``."""
    lens = ranges[:, 1] - ranges[:, 0]
    rid = np.repeat(np.arange(len(ranges)), lens)
    first = np.repeat(np.cumsum(lens) - lens, lens)
    return ranges[rid, 0] + (np.arange(rid.size) - first), rid


def _context_violations(rows, sc, scored, given, s_epoch, s_rank, s_seq, S) -> str:
    """Context reads that touched a position neither given, nor scored before the read, nor before every
    target of the next score event of the same rank (or with no score event after them)."""
    cx = rows[rows[:, 5] == 2]
    if not cx.size:
        return ""
    bad = []
    for row in cx:
        a, b, ep, rk, sq = (int(v) for v in row[:5])
        pos = np.arange(a, b)
        key = np.where(s_rank[pos] == rk, s_epoch[pos] * S + s_seq[pos], s_epoch[pos] * S + S - 2)
        key[~scored[pos]] = _INF
        unscored = pos[(key >= ep * S + sq) & ~given[pos]]
        if not unscored.size:
            continue
        later = sc[(sc[:, 3] == rk) & (sc[:, 4] > sq)]
        if later.size:
            nxt = later[later[:, 4] == later[:, 4].min()]
            if unscored.max() < nxt[:, 0].min():
                continue
        bad.append((a, b))
    if not bad:
        return ""
    return (f"{len(bad)} context reads read positions not yet scored and not before the targets they served "
            f"(first: [{bad[0][0]}, {bad[0][1]}))")


def check_losses(log: EventLog, *, val_loss: float, val_bpb: float, tokens: int, nbytes: int,
                 position_bytes: np.ndarray, rel_tol: float = 1e-9) -> ConditionResult:
    """Recompute the reported sums from the logged per-position losses (condition 4's bookkeeping):
    every scored position carries exactly one loss, and Σ nats / tokens, Σ nats / (ln 2 · Σ bytes)
    with ``position_bytes`` (the bytes of each target, from the tokenizer tables or the sidecar)
    equal the reported ``val_loss`` and ``val_bpb``."""
    pos, nats = log.losses()
    rows = log.rows()
    sc = rows[rows[:, 5] == 0]
    n_scored = int((sc[:, 1] - sc[:, 0]).sum()) if sc.size else 0
    if pos.size != n_scored or (pos.size and np.unique(pos).size != pos.size):
        return ConditionResult(4, False, f"{pos.size} logged losses for {n_scored} scored positions")
    if tokens != pos.size:
        return ConditionResult(4, False, f"the sums count {tokens} targets, the log holds {pos.size} losses")
    total = float(np.sum(nats))
    b = int(np.asarray(position_bytes, dtype=np.int64)[pos].sum()) if pos.size else 0
    if b != nbytes:
        return ConditionResult(4, False, f"the sums count {nbytes} bytes, the scored positions carry {b}")
    loss = total / max(tokens, 1)
    bpb = total / (np.log(2.0) * max(b, 1))
    if not (abs(loss - val_loss) <= rel_tol * abs(loss) + 1e-12 and abs(bpb - val_bpb) <= rel_tol * abs(bpb) + 1e-12):
        return ConditionResult(4, False, (f"the reported val_loss {val_loss:.9g} / val_bpb {val_bpb:.9g} are not the "
                                          f"logged losses' {loss:.9g} / {bpb:.9g}"))
    return ConditionResult(4, True, f"sums recomputed from {pos.size} logged losses: val_bpb {bpb:.9g}")


def check_events(log: EventLog, *, vocab_size: Optional[int] = None, expected: Optional[np.ndarray] = None,
                 norm_tol: float = 1e-3, nats_tol: float = 1e-3, causal_tol: float = 1e-3) -> ComplianceReport:
    """Check conditions 1–4 on a (merged, all-rank) event log.

    ``expected``: bool (num_tokens,) mask of the positions that must be scored (default: every
    position that is not ``given``). ``vocab_size``: the model's vocabulary (normalization probes
    must cover it). Tolerances: ``norm_tol`` on |Σp − 1|, ``nats_tol`` on the score's consistency,
    ``causal_tol`` (nats) on the causality probes.
    """
    if not isinstance(log, EventLog):
        raise TypeError(f"log: expected an EventLog, got {type(log).__name__}")
    n = log.num_tokens
    rows = log.rows()
    rows = rows[rows[:, 1] > rows[:, 0]]
    sc, up = rows[rows[:, 5] == 0], rows[rows[:, 5] == 1]
    rep = ComplianceReport()

    # ---- per-position score stamps
    pos, rid = _expand(sc[:, :2])
    count = np.bincount(pos, minlength=n)
    s_epoch = np.full(n, -1, dtype=np.int64)
    s_rank = np.full(n, -1, dtype=np.int64)
    s_seq = np.full(n, -1, dtype=np.int64)
    s_epoch[pos], s_rank[pos], s_seq[pos] = sc[rid, 2], sc[rid, 3], sc[rid, 4]
    scored = count > 0
    given = np.zeros(n, dtype=bool)  # known-valued inputs (document-start BOS): readable at any time,
    given[log.given_positions()] = True  # scored or not (a BOS is also the previous document's last target)
    if expected is None:
        expected = ~given | scored
    elif expected.shape != (n,) or expected.dtype != np.bool_:
        raise ValueError(f"expected: a bool mask of shape ({n},), got {expected.dtype} {expected.shape}")

    # ---- condition 4: once each
    twice, missing = np.flatnonzero(count > 1), np.flatnonzero(expected & ~scored)
    if twice.size or missing.size:
        parts = []
        if twice.size:
            parts.append(f"{twice.size} positions scored more than once (first: {int(twice[0])}, "
                         f"{int(count[twice[0]])} times)")
        if missing.size:
            parts.append(f"{missing.size} positions never scored (first: {int(missing[0])})")
        rep.conditions[4] = ConditionResult(4, False, "; ".join(parts))
    else:
        rep.conditions[4] = ConditionResult(4, True, f"{int(scored.sum())} positions scored once each")

    # ---- conditions 1 and 3 from the update events, one rank at a time (keys are rank-relative)
    S = int(max(rows[:, 4].max() if rows.size else 0, 0)) + 2
    c1_bad, c3_bad = [], []
    for r in np.unique(up[:, 3]) if up.size else []:
        u = up[up[:, 3] == r]
        own = s_rank == r
        base = s_epoch * S
        k3 = np.where(own, base + s_seq, base + S - 2)  # other ranks' same-epoch scores: never "before"
        k1 = np.where(own, base + s_seq, base)           # other ranks' same-epoch scores: never "after"
        for k in (k3, k1):
            k[~scored] = _INF
            k[given] = -1
        t = u[:, 2] * S + u[:, 4]                         # collective updates have seq -1: epoch start
        bad3 = _range_max(k3, u[:, :2]) >= t
        bad1 = _range_max(k1, u[:, :2]) > t
        c3_bad += [u[bad3]]
        c1_bad += [u[bad1]]
    c3_bad = np.concatenate(c3_bad) if c3_bad else np.zeros((0, 8), dtype=np.int64)
    c1_bad = np.concatenate(c1_bad) if c1_bad else np.zeros((0, 8), dtype=np.int64)

    def describe(bad: np.ndarray, what: str) -> str:
        b = bad[0]
        when = f"epoch {b[2]}, rank {b[3]}, " + ("collective" if b[4] < 0 else f"seq {b[4]}")
        return (f"{len(bad)} update ranges {what} (first: '{log.tags[b[7]]}' at {when} read "
                f"[{b[0]}, {b[1]}))")

    if c3_bad.size:
        rep.conditions[3] = ConditionResult(3, False, describe(c3_bad, "read positions not scored before them"))
    else:
        rep.conditions[3] = ConditionResult(3, True, f"{len(up)} update ranges read only positions scored before")

    ctx_bad = _context_violations(rows, sc, scored, given, s_epoch, s_rank, s_seq, S)
    probes = np.array(log.causal_probes, dtype=np.float64).reshape(-1, 2)
    leak = probes[probes[:, 1] > causal_tol]
    if c1_bad.size or leak.size or ctx_bad:
        parts = [describe(c1_bad, "preceded the score of a position they read")] if c1_bad.size else []
        if ctx_bad:
            parts.append(ctx_bad)
        if leak.size:
            parts.append(f"{len(leak)} causality probes changed when later tokens changed (first: position "
                         f"{int(leak[0, 0])}, |Δ| = {leak[0, 1]:.3g} nats)")
        rep.conditions[1] = ConditionResult(1, False, "; ".join(parts))
    elif not len(probes):
        rep.conditions[1] = ConditionResult(1, None, "no causality probe was recorded")
    else:
        rep.conditions[1] = ConditionResult(1, True, f"events consistent; {len(probes)} causality probes, "
                                                     f"max |Δ| {probes[:, 1].max():.2g} nats")

    # ---- condition 2 from the per-position checks of every score event and the normalization probes
    events = np.unique(sc[:, [3, 4]], axis=0) if sc.size else np.zeros((0, 2), dtype=np.int64)
    checks = log.checks()
    checked = {(int(r), int(q)): d for r, q, d, _ in checks}
    unchecked = [tuple(e) for e in events if (int(e[0]), int(e[1])) not in checked]
    worst = max(checked.values()) if checked else 0.0
    norm = np.array(log.norm_probes, dtype=np.float64).reshape(-1, 5)
    if not (worst <= nats_tol):  # (NaN fails too)
        bad_ev = sum(1 for d in checked.values() if not d <= nats_tol)
        rep.conditions[2] = ConditionResult(2, False, (
            f"{bad_ev} score events committed a score that is not −log softmax(z + δ)[y] over the full vocabulary "
            f"at some position (largest deviation {worst:.3g} nats)"))
    elif unchecked:
        rep.conditions[2] = ConditionResult(2, None, (
            f"{len(unchecked)} of {len(events)} score events carry no per-position check (not committed by the "
            f"trusted commit)"))
    elif not len(norm):
        rep.conditions[2] = ConditionResult(2, None, "no normalization probe was recorded")
    else:
        dev = np.abs(norm[:, 1] - 1.0)
        incons = np.abs(norm[:, 3] - norm[:, 4])
        short = norm[:, 2] != vocab_size if vocab_size is not None else np.zeros(len(norm), dtype=bool)
        bad = (dev > norm_tol) | (incons > nats_tol) | short
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            rep.conditions[2] = ConditionResult(2, False, (
                f"{int(bad.sum())} of {len(norm)} probes fail (first: position {int(norm[i, 0])}: Σp = {norm[i, 1]:.6g} "
                f"over {int(norm[i, 2])} entries, score {norm[i, 3]:.5g} vs -log p {norm[i, 4]:.5g})"))
        else:
            rep.conditions[2] = ConditionResult(2, True, (
                f"every position of {len(events)} score events checked (max |score − (−log p)| {worst:.2g}); "
                f"{len(norm)} probes, max |Σp − 1| = {dev.max():.2g}"))
    _apply_tripwires(rep, checks)
    rep.stats = {**log.summary(), "given_positions": int(given.sum()), "stream_targets": int(expected.sum())}
    return rep


_TRIP_CONDITIONS = {STATE_CHANGED: (1, 3), READ_TWICE: (4,), BATCH_EDITED: (2,)}
"""Which conditions a tripwire breaks: a state changed while a score read was open is an update before
that score (3) that may have read its targets (1); a target read twice for score is a second pass (4);
a committed batch that differs from its read is not the score of the read target (2)."""


def _apply_tripwires(rep: ComplianceReport, checks: np.ndarray) -> None:
    """Break the conditions of every tripwire a score event recorded (see :data:`TRIPWIRES`)."""
    bits = checks[:, 3].astype(np.int64) if len(checks) else np.zeros(0, dtype=np.int64)
    for bit, conds in _TRIP_CONDITIONS.items():
        hit = np.flatnonzero(bits & bit)
        if not hit.size:
            continue
        r, q = int(checks[hit[0], 0]), int(checks[hit[0], 1])
        why = f"tripwire: {hit.size} score events: {TRIPWIRES[bit]} (first: rank {r}, seq {q})"
        for c in conds:
            old = rep.conditions.get(c)
            detail = f"{old.detail}; {why}" if old is not None and old.ok is False else why
            rep.conditions[c] = ConditionResult(c, False, detail)
