"""The score/update event log of an evaluation, the input of the compliance checker.

Positions are token indices ``j`` of the flat validation stream: "scoring j" means committing
``-log p(x_j | state, x_<j)``. Every event carries a logical time ``(epoch, rank, seq)``:

* ``seq`` counts this rank's events (monotone over the whole run);
* ``epoch`` counts global synchronization points (all ranks pass :meth:`EventLog.new_epoch`
  together, e.g. after a gradient all-reduce). Two events are ordered when they are on the same
  rank (by ``seq``) or in different epochs (by ``epoch``); same epoch, different ranks: unordered.

Event kinds (all ranges are half-open ``[start, end)`` token-index ranges, int64 arrays (n, 2)):

* score: the positions whose scores were committed by one forward, with the per-position losses
  (nats, fp32 as computed) in the order of the ranges' positions — the checker recomputes the
  bpb sums from them;
* update: the positions an adaptation step *read* (its loss's targets and their input context).
  A ``collective`` update (gradients all-reduced over ranks) happens at the start of the current
  epoch on every rank, before any score of that epoch;
* given: positions that are never scored and carry no information (document-start BOS tokens in
  per-document scoring: always the BOS id) — reading them is allowed;
* normalization probe: at a sampled scored position, the sum over the full vocabulary of the
  probabilities the score was taken from, the number of entries, and the score's consistency
  with ``-log p[target]``;
* causality probe: at a sampled scored position, how much its score changed when every later
  input token was replaced by random tokens;
* read (recorded by :class:`~golf_fast.eval.compliance.guarded.GuardedStream`, the only access to the
  tokens a driver is given by the harness, eval/adapt/harness.py): the ranges a batch read and why —
  ``score`` (the windows of a score batch), ``update`` (an adaptation batch: recorded as an update
  event of that tag) or ``context`` (raw tokens); a score event must come from a score read;
* per-position check of a score event: the largest |committed nats − (−log softmax(z + δ)[y])|
  over its positions, recomputed by the trusted commit from the full-vocabulary logits, and the
  event's tripwires (:data:`TRIPWIRES`: bits set by the guarded stream and the trusted commit).

Nothing here syncs the device: callers pass host numbers (probes run at sampled positions only).
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from golf_fast.eval.collectives import all_gather_list, all_gather_strings

_SCORE, _UPDATE, _CONTEXT, _SCORE_READ = 0, 1, 2, 3
PURPOSES = ("score", "update", "context")
"""Why a mode read validation tokens (GuardedStream): to score them, to adapt on them, as context."""


STATE_CHANGED, READ_TWICE, BATCH_EDITED = 1, 2, 4
TRIPWIRES = {STATE_CHANGED: "an optimizer stepped or a watched tensor changed between the score read and its commit",
             READ_TWICE: "a target was read for score more than once",
             BATCH_EDITED: "the committed batch's tokens, targets or mask differ from what its read returned"}
"""Tripwire bits of a score event (guarded.py, scoring.commit_scores) and what each means."""


_WATCH: contextvars.ContextVar = contextvars.ContextVar("golf_fast_audit_watch", default=None)


@contextlib.contextmanager
def watching(want: dict):
    """While active, every new EventLog carries ``{"want": want, "got": {}}``: the trusted commit records
    ``log p[want[j]]`` (float64, full vocabulary) when it scores position ``j`` (the replay audit)."""
    w = {"want": {int(k): int(v) for k, v in want.items()}, "got": {}}
    token = _WATCH.set(w)
    try:
        yield w
    finally:
        _WATCH.reset(token)


def _expand_ranges(r: np.ndarray) -> np.ndarray:
    """Every position of the [a, b) rows of ``r``, in order."""
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in r]) if len(r) else np.zeros(0, np.int64)


def as_ranges(ranges) -> np.ndarray:
    """``ranges`` (a list of (start, end) pairs or an (n, 2) array) → int64 (n, 2), checked."""
    r = np.asarray(ranges, dtype=np.int64)
    if r.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if r.ndim != 2 or r.shape[1] != 2:
        raise ValueError(f"ranges: expected (n, 2) [start, end) pairs, got shape {r.shape}")
    if (r[:, 0] < 0).any() or (r[:, 1] < r[:, 0]).any():
        raise ValueError("ranges: expected 0 <= start <= end for every [start, end) pair")
    return r


@dataclass
class EventLog:
    """Append-only event log of one rank (or, after :meth:`merge`, of all ranks)."""

    num_tokens: int
    rank: int = 0
    epoch: int = 0
    seq: int = 0
    # one row per range: start, end, epoch, rank, seq, kind (0 score, 1 update), collective (0/1), tag
    _rows: list = field(default_factory=list)
    _given: list = field(default_factory=list)
    norm_probes: list = field(default_factory=list)
    """(position, prob_sum, entries, nats_recorded, nats_from_probs) per normalization probe."""
    causal_probes: list = field(default_factory=list)
    """(position, max |Δ nats|) per causality probe."""
    tags: list = field(default_factory=lambda: ["score"])
    """Update kinds by tag index (0 is the score kind's name)."""
    _local_in_epoch: bool = False
    _merged_checks: object = None
    vocab_size: int = 0
    """The model's vocabulary (0: unknown); a committed score must come from logits over all of it."""
    _n_updates: int = 0
    _checks: list = field(default_factory=list)
    """Per score event: (seq, max |nats − (−log p)| as a device scalar or float, tripwire bits (int),
    an extra BATCH_EDITED bit as a device bool or None), fetched once."""
    _loss_pos: list = field(default_factory=list)
    _loss_nats: list = field(default_factory=list)
    """Per-position losses of score events: host position arrays and (device or host) nats, fetched once."""

    def __post_init__(self) -> None:
        if not isinstance(self.num_tokens, int) or self.num_tokens < 1:
            raise ValueError(f"num_tokens: expected a positive int, got {self.num_tokens!r}")
        self.watch = _WATCH.get()
        """The replay audit's watch (audit.py) active when this log was made: {"want": {j: token}, "got": {}}."""

    # ------------------------------------------------------------------ recording

    def _check_in_range(self, r: np.ndarray, what: str) -> None:
        if r.size and r[:, 1].max() > self.num_tokens:
            raise ValueError(f"{what}: range end {int(r[:, 1].max())} is past the {self.num_tokens} tokens")

    def _append(self, r: np.ndarray, kind: int, collective: bool, tag: int) -> int:
        if collective and self._local_in_epoch:
            raise RuntimeError("collective update: must come right after new_epoch(), before local events")
        self.seq += 1
        s = -1 if collective else self.seq
        if not collective:
            self._local_in_epoch = True
        if r.size:
            meta = np.array([self.epoch, self.rank, s, kind, int(collective), tag], dtype=np.int64)
            self._rows.append(np.concatenate([r, np.broadcast_to(meta, (r.shape[0], 6))], axis=1))
        return self.seq

    def read(self, ranges, purpose: str, tag: str = "") -> int:
        """Record a read of the stream (``purpose`` in :data:`PURPOSES`); an ``update`` read is an update
        event tagged ``tag``. Returns the seq."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose: expected one of {PURPOSES}, got {purpose!r}")
        r = as_ranges(ranges)
        self._check_in_range(r, "read ranges")
        if purpose == "update":
            return self.update(r, tag or "update")
        return self._append(r, _CONTEXT if purpose == "context" else _SCORE_READ, False, 0)

    def has_updates(self) -> bool:
        return self._n_updates > 0

    def score_check(self, seq: int, max_dev, trips: int = 0, edited=None) -> None:
        """The trusted commit's per-position check of score event ``seq`` (see the module docstring):
        ``max_dev`` (float or device scalar), ``trips`` (bits of :data:`TRIPWIRES`) and ``edited`` (a device
        bool: the committed batch differs from its read, adding BATCH_EDITED; None: not compared)."""
        if not isinstance(trips, (int, np.integer)) or trips < 0 or trips >= 2 * max(TRIPWIRES):
            raise ValueError(f"trips: expected a combination of the TRIPWIRES bits, got {trips!r}")
        self._checks.append((int(seq), max_dev.detach() if isinstance(max_dev, torch.Tensor) else float(max_dev),
                             int(trips), edited.detach() if isinstance(edited, torch.Tensor) else edited))

    def checks(self) -> np.ndarray:
        """(n, 4) float64: rank, seq, max deviation, tripwire bits of each checked score event (device values
        fetched once)."""
        if self._merged_checks is not None:
            return self._merged_checks
        dev_vals = [d for _, d, _, _ in self._checks if isinstance(d, torch.Tensor)]
        dev_vals += [e for _, _, _, e in self._checks if isinstance(e, torch.Tensor)]
        if dev_vals:
            dev = dev_vals[0].device
            devs = torch.stack([d.float().reshape(()).to(dev) if isinstance(d, torch.Tensor)
                                else torch.tensor(float(d), device=dev) for _, d, _, _ in self._checks])
            eds = torch.stack([e.reshape(()).to(dev, torch.float32) if isinstance(e, torch.Tensor)
                               else torch.tensor(float(bool(e)), device=dev) for _, _, _, e in self._checks])
            devs, eds = torch.stack([devs, eds]).cpu().tolist()
            self._checks = [(sq, v, t | (BATCH_EDITED if e else 0), None)
                            for (sq, _, t, _), v, e in zip(self._checks, devs, eds)]
        return np.array([(self.rank, sq, d, t | (BATCH_EDITED if e else 0)) for sq, d, t, e in self._checks],
                        dtype=np.float64).reshape(-1, 4)

    def score(self, ranges, nats=None) -> int:
        """Record that the scores of the positions in ``ranges`` were committed now; returns the seq.

        ``nats``: the committed per-position losses, 1-D, one per position of ``ranges`` in order
        (a device tensor is kept as is and fetched once, by :meth:`losses`: no device sync here).
        """
        r = as_ranges(ranges)
        self._check_in_range(r, "score ranges")
        if nats is not None:
            count = int((r[:, 1] - r[:, 0]).sum())
            if nats.dim() != 1 if isinstance(nats, torch.Tensor) else np.ndim(nats) != 1:
                raise ValueError("nats: expected a 1-D array of per-position losses")
            if len(nats) != count:
                raise ValueError(f"nats: {len(nats)} losses for the {count} positions of the ranges")
            self._loss_pos.append(_expand_ranges(r))
            self._loss_nats.append(nats.detach() if isinstance(nats, torch.Tensor) else np.asarray(nats))
        return self._append(r, _SCORE, False, 0)

    def losses(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions int64, nats float64) of every score event that carried losses, in event order."""
        if not self._loss_pos:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        nats = [t.double().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, dtype=np.float64)
                for t in self._loss_nats]
        self._loss_pos, self._loss_nats = [np.concatenate(self._loss_pos)], [np.concatenate(nats)]
        return self._loss_pos[0], self._loss_nats[0]

    def update(self, ranges, kind: str, collective: bool = False) -> int:
        """Record an adaptation step that read the positions in ``ranges`` (``kind``: a label for reports)."""
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind: expected a non-empty label, got {kind!r}")
        r = as_ranges(ranges)
        self._check_in_range(r, "update ranges")
        if kind not in self.tags:
            self.tags.append(kind)
        self._n_updates += 1
        return self._append(r, _UPDATE, collective, self.tags.index(kind))

    def given(self, positions: Iterable[int]) -> None:
        """Positions never scored that carry no information (checked by the caller: BOS tokens)."""
        p = np.asarray(list(positions) if not isinstance(positions, np.ndarray) else positions, dtype=np.int64)
        if p.size and (p.min() < 0 or p.max() >= self.num_tokens):
            raise ValueError(f"positions: expected indices in [0, {self.num_tokens})")
        self._given.append(p.ravel())

    def new_epoch(self) -> None:
        """A global synchronization point (every rank calls it at the same place)."""
        self.epoch += 1
        self._local_in_epoch = False

    def normalization_probe(self, position: int, prob_sum: float, entries: int, nats_recorded: float,
                            nats_from_probs: float) -> None:
        self.norm_probes.append((int(position), float(prob_sum), int(entries), float(nats_recorded),
                                 float(nats_from_probs)))

    def causality_probe(self, position: int, max_abs_change: float) -> None:
        self.causal_probes.append((int(position), float(max_abs_change)))

    # ------------------------------------------------------------------ reading

    def rows(self) -> np.ndarray:
        """(n, 8) int64: start, end, epoch, rank, seq (-1: collective), kind, collective, tag."""
        return np.concatenate(self._rows) if self._rows else np.zeros((0, 8), dtype=np.int64)

    def given_positions(self) -> np.ndarray:
        return np.unique(np.concatenate(self._given)) if self._given else np.zeros(0, dtype=np.int64)

    def to_state(self) -> dict:
        """Plain-data form (numpy arrays, lists) for gathering across ranks or saving as JSON-like data."""
        pos, nats = self.losses()
        return {"num_tokens": self.num_tokens, "rows": self.rows(), "given": self.given_positions(),
                "checks": self.checks(),
                "loss_pos": pos, "loss_nats": nats,
                "norm_probes": list(self.norm_probes), "causal_probes": list(self.causal_probes),
                "tags": list(self.tags)}

    @classmethod
    def merge(cls, states: list) -> "EventLog":
        """One log from every rank's :meth:`to_state` (tags re-indexed by name)."""
        if not states:
            raise ValueError("states: expected at least one rank's log")
        n = states[0]["num_tokens"]
        if any(s["num_tokens"] != n for s in states):
            raise ValueError("states: the ranks' logs cover different numbers of tokens")
        out = cls(num_tokens=n)
        checks = []
        for s in states:
            rows = np.array(s["rows"], dtype=np.int64).reshape(-1, 8).copy()
            for name in s["tags"]:
                if name not in out.tags:
                    out.tags.append(name)
            mapping = np.array([out.tags.index(name) for name in s["tags"]], dtype=np.int64)
            rows[:, 7] = mapping[rows[:, 7]]
            out._rows.append(rows)
            out._given.append(np.asarray(s["given"], dtype=np.int64))
            out.norm_probes += [tuple(p) for p in s["norm_probes"]]
            out.causal_probes += [tuple(p) for p in s["causal_probes"]]
            checks.append(np.asarray(s.get("checks", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4))
            if len(s.get("loss_pos", ())):
                out._loss_pos.append(np.asarray(s["loss_pos"], dtype=np.int64))
                out._loss_nats.append(np.asarray(s["loss_nats"], dtype=np.float64))
        out._merged_checks = np.concatenate(checks)
        return out

    def summary(self) -> dict:
        r = self.rows()
        sc, up = r[r[:, 5] == _SCORE], r[r[:, 5] == _UPDATE]
        return {"score_events": int(np.unique(sc[:, 2:5], axis=0).shape[0]) if sc.size else 0,
                "scored_positions": int((sc[:, 1] - sc[:, 0]).sum()),
                "update_events": int(np.unique(up[:, 2:5], axis=0).shape[0]) if up.size else 0,
                "update_kinds": sorted({self.tags[t] for t in up[:, 7]}) if up.size else [],
                "normalization_probes": len(self.norm_probes), "causality_probes": len(self.causal_probes),
                "checked_score_events": int(len(self.checks())),
                "context_reads": int((r[:, 5] == _CONTEXT).sum())}


def gather_logs(log: EventLog, world_size: int) -> EventLog:
    """All ranks' logs merged (every rank gets it); one process: the log itself. Tensors only, no pickle."""
    if world_size <= 1:
        return log
    rows = all_gather_list(torch.from_numpy(log.rows()), world_size)
    given = all_gather_list(torch.from_numpy(log.given_positions()), world_size)
    norm = all_gather_list(torch.tensor(log.norm_probes, dtype=torch.float64).reshape(-1, 5), world_size)
    causal = all_gather_list(torch.tensor(log.causal_probes, dtype=torch.float64).reshape(-1, 2), world_size)
    tags = all_gather_strings(log.tags, world_size)
    lp, ln = log.losses()
    checks = all_gather_list(torch.from_numpy(log.checks()), world_size)
    loss_pos = all_gather_list(torch.from_numpy(lp), world_size)
    loss_nats = all_gather_list(torch.from_numpy(ln), world_size)
    return EventLog.merge([{"num_tokens": log.num_tokens, "rows": rows[r].numpy(), "given": given[r].numpy(),
                            "norm_probes": norm[r].tolist(), "causal_probes": causal[r].tolist(), "tags": tags[r],
                            "loss_pos": loss_pos[r].numpy(), "loss_nats": loss_nats[r].numpy(),
                            "checks": checks[r].numpy()}
                           for r in range(world_size)])
