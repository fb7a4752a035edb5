"""The replay audit (``golf-fast eval ... --audit N``): condition 1 checked without the run's read records.

For each of ``N`` sampled scored positions ``j``: every token the run had not yet used when it
scored ``j`` — the token at ``j`` and every token scored after it (later score events; in ``j``'s
own event, the positions after ``j``) — is replaced by a random non-BOS token (document starts
stay: where documents begin is the evaluation's structure), the whole adaptive evaluation is run
again from a fresh model, and ``log p`` of the *original* token at ``j`` is read from the rerun's
distribution at ``j``. For a legal mode the state that scored ``j`` was built only from tokens
scored before it, so the value is the same (up to ``tol``); a mode that adapted on, fitted to or
looked at ``j`` or a later token moves it. At least one sampled position comes after the first
update of the run (when there is one), so an adapted state is audited.

Each sampled position costs one full rerun; the result is ``ok`` only when every rerun agrees.

What it still takes from the run: which tokens are randomized follows the score order of the
original log's score events, the original value is that log's loss at ``j``, and the rerun's value
is recorded only if the rerun commits ``j`` through :func:`golf_fast.eval.scoring.commit_scores`
(else the delta is inf). The rerun is the same driver code, which can see that a watch is active;
only the sampled positions are tested.

The trainer audits by default on a short prefix (:func:`prefix_audit`, ``eval.adapt.audit_positions``
positions on the first ``eval.adapt.audit_docs`` documents), after the timed evaluation: that checks
the mode's code on that prefix, not every position of the full run (``golf-fast eval --audit N``
reruns the whole stream).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from golf_fast.eval.collectives import all_gather_list
from golf_fast.eval.compliance.events import EventLog, watching


@dataclass
class AuditReport:
    positions: list = field(default_factory=list)
    deltas: list = field(default_factory=list)
    """|log p_rerun(x_j) − log p_original(x_j)| per sampled position (inf: the rerun never scored j)."""
    tol: float = 1e-5
    seed: int = 0
    scope: str = "the evaluated stream"
    """What was rerun: the whole stream, or a prefix of it (:func:`prefix_audit`)."""
    seconds: float = 0.0
    """Wall time of the audit's runs (not part of any evaluation time)."""

    @property
    def ok(self) -> Optional[bool]:
        if not self.positions:
            return None
        return all(d <= self.tol for d in self.deltas)

    @property
    def verdict(self) -> str:
        return {True: "passed", False: "failed", None: "unverified"}[self.ok]

    def as_dict(self) -> dict:
        return {"verdict": self.verdict, "positions": [int(p) for p in self.positions],
                "max_delta_nats": float(max(self.deltas)) if self.deltas else None, "tol": self.tol, "seed": self.seed,
                "scope": self.scope, "seconds": round(self.seconds, 3)}


def score_order(log: EventLog) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per position: (epoch, rank, seq) of the event that scored it (−1 when never scored), and the
    seq of the run's first update per rank as an (R,) array (a large value when none)."""
    n = log.num_tokens
    rows = log.rows()
    sc = rows[(rows[:, 5] == 0) & (rows[:, 1] > rows[:, 0])]
    ep, rk, sq = (np.full(n, -1, dtype=np.int64) for _ in range(3))
    for a, b, e, r, s in sc[:, :5]:
        ep[a:b], rk[a:b], sq[a:b] = e, r, s
    up = rows[rows[:, 5] == 1]
    first = {}
    for e, r, s in up[:, 2:5]:
        key = (int(e), int(s) if s >= 0 else -1)
        if int(r) not in first or key < first[int(r)]:
            first[int(r)] = key
    return ep, rk, sq, first


def _after_first_update(ep, rk, sq, first, pos) -> np.ndarray:
    out = np.zeros(len(pos), dtype=bool)
    for i, p in enumerate(pos):
        f = first.get(int(rk[p]))
        if f is not None and (int(ep[p]), int(sq[p])) > f:
            out[i] = True
    return out


def randomized_stream(tokens: np.ndarray, log: EventLog, j: int, bos_id: int, vocab_size: int,
                      generator: np.random.Generator) -> np.ndarray:
    """``tokens`` with ``j`` and every position not scored before ``j`` replaced by random non-BOS tokens."""
    ep, rk, sq, _ = score_order(log)
    n = len(tokens)
    p = np.arange(n)
    same_rank = rk == rk[j]
    before = np.where(same_rank, sq < sq[j], ep < ep[j]) & (sq >= 0)
    before |= (sq == sq[j]) & same_rank & (p < j)  # earlier positions of j's own event: its prefix
    keep = before | (np.asarray(tokens) == bos_id) | (p == 0)
    keep[j] = False
    out = np.array(tokens, copy=True)
    k = int((~keep).sum())
    r = generator.integers(0, vocab_size - 1, size=k)
    out[~keep] = (r + (r >= bos_id)).astype(out.dtype)
    return out


def replay_audit(run: Callable[[np.ndarray], object], tokens: np.ndarray, original, n: int, *, bos_id: int,
                 vocab_size: int, seed: int = 0, tol: float = 1e-5, world_size: int = 1) -> AuditReport:
    """Audit ``n`` positions of ``original`` (an AdaptResult of ``run(tokens)``); ``run`` reruns the whole
    evaluation from a fresh model on a stream and returns its AdaptResult (see the module docstring)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    if not callable(run):
        raise TypeError("run: expected a callable stream -> AdaptResult")
    tokens = np.asarray(tokens)
    log = original.log
    pos, nats = log.losses()
    if not pos.size:
        raise ValueError("original: its log holds no per-position losses to audit")
    rng = np.random.default_rng(seed)
    ep, rk, sq, first = score_order(log)
    cand = pos[tokens[pos] != bos_id] if (tokens[pos] != bos_id).any() else pos
    after = cand[_after_first_update(ep, rk, sq, first, cand)]
    picks = []
    if after.size:
        picks.append(int(rng.choice(after)))
    rest = np.setdiff1d(cand, picks)
    picks += [int(x) for x in rng.choice(rest, size=min(n - len(picks), rest.size), replace=False)]
    base = dict(zip(pos.tolist(), (-nats).tolist()))
    t0 = time.perf_counter()
    rep = AuditReport(tol=tol, seed=seed)
    for j in picks:
        alt = randomized_stream(tokens, log, j, bos_id, vocab_size, rng)
        with watching({j: int(tokens[j])}) as w:
            run(alt)
        got = _gather_watched(w["got"], j, world_size)
        rep.positions.append(j)
        rep.deltas.append(abs(got - base[j]) if got is not None else float("inf"))
    rep.seconds = time.perf_counter() - t0
    return rep


def _gather_watched(got: dict, j: int, world_size: int) -> Optional[float]:
    """The watched value of ``j`` from whichever rank scored it."""
    mine = torch.tensor([[got[j]]] if j in got else [], dtype=torch.float64).reshape(-1, 1)
    parts = all_gather_list(mine, world_size)
    vals = [float(p[0, 0]) for p in parts if p.shape[0]]
    return vals[0] if vals else None


def document_prefix(tokens: np.ndarray, bos_id: int, docs: int) -> np.ndarray:
    """The first ``docs`` documents of ``tokens`` (cut before the ``docs``-th document start after the
    first token; the whole stream when it has no more than ``docs`` documents)."""
    if isinstance(docs, bool) or not isinstance(docs, int) or docs < 1:
        raise ValueError(f"docs: expected an int >= 1, got {docs!r}")
    t = np.asarray(tokens)
    if t.ndim != 1 or t.size < 2:
        raise ValueError(f"tokens: expected a 1-D token array of at least 2 tokens, got shape {t.shape}")
    starts = np.flatnonzero(t[1:] == bos_id) + 1
    end = int(starts[docs - 1]) if len(starts) >= docs else t.size
    if end < 2:
        raise ValueError("tokens: the document prefix has fewer than 2 tokens")
    return t[:end]


def prefix_audit(run: Callable[[np.ndarray], object], tokens: np.ndarray, n: int, *, docs: int, bos_id: int,
                 vocab_size: int, seed: int = 0, tol: float = 1e-5, world_size: int = 1) -> AuditReport:
    """The replay audit on a short prefix (:func:`document_prefix`): ``run`` the evaluation on the first
    ``docs`` documents, then :func:`replay_audit` ``n`` of its positions (``n + 1`` runs in all)."""
    t0 = time.perf_counter()
    prefix = document_prefix(tokens, bos_id, docs)
    original = run(prefix)
    rep = replay_audit(run, prefix, original, n, bos_id=bos_id, vocab_size=vocab_size, seed=seed, tol=tol,
                       world_size=world_size)
    rep.scope = f"the first {docs} documents ({len(prefix):,} tokens)"
    rep.seconds = time.perf_counter() - t0
    return rep

