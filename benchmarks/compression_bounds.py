"""What could a better model of the codes save? Ideal code lengths of structured models, per role.

Run (CPU, ~1 min per 10M codes)::

    PYTHONPATH=. python benchmarks/compression_bounds.py runs/states/L4_s800/model.gfa [more .gfa ...]

For each (role, bits) group of a trained artifact (``golf-fast train`` / ``benchmarks/train_states.py``)
it prints, in bytes (ideal −log2 p, no coder overhead; model parameters listed separately):

* ``H0``: one order-0 distribution for the role;
* ``rowcol``: one empirical distribution per quantile bucket (32) of a rank-1 scale predictor
  ``a_ij = r_i·c_j`` fitted to |q| (what golf-rans's row/column accumulators approximate); params:
  the table (~10 bits per used entry) and r, c at 8 bits;
* ``lowrank{4,16}``: the same on ``q − round(U_k S_k V_kᵀ)`` (a rank-k mean); params add k·(rows+cols)
  factors at 8 bits;
* for ``tok_emb`` (rows in the similarity chain golf-rans uses): ``delta_rowdist``, the conditional
  entropy of ``d = q − (row above)`` given the row's mean |d| (a "near-copy of the row above" model),
  ``q_above16``, of q given 16 buckets of |row above|, and the share of rows whose codes equal the
  row above at more than half of the positions.

These are conditional entropies measured on the data (static models fitted to the matrix itself):
a bound on what the modelled structure is worth, not a coder.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import golf_fast
from golf_fast.artifact.format import load_artifact
from golf_fast.artifact.rans.coder import role_of
from golf_fast.artifact.rans.fit import similarity_chain
from golf_fast.quant.formats import QuantizedTensor


def entropy_bits(x: np.ndarray) -> float:
    """Σ −log2 p of the values of the int array ``x`` under their own empirical distribution."""
    c = np.bincount((x - x.min()).ravel()).astype(np.float64)
    c = c[c > 0]
    return float(-(c * np.log2(c / c.sum())).sum())


def conditional_bits(x: np.ndarray, ctx: np.ndarray) -> float:
    """Σ over contexts of entropy_bits(x[ctx == k]) (``x``, ``ctx`` int arrays of one shape)."""
    x, ctx = x.ravel(), ctx.ravel()
    order = np.argsort(ctx, kind="stable")
    xs, cs = x[order], ctx[order]
    cuts = np.flatnonzero(np.diff(cs)) + 1
    return sum(entropy_bits(part) for part in np.split(xs, cuts))


def rowcol_scale(q: np.ndarray, iters: int = 4) -> np.ndarray:
    """(R, C) float64 ``r_i·c_j`` fitted to |q| + 0.5 by alternating means."""
    aq = np.abs(q.astype(np.float64)) + 0.5
    r = aq.mean(1)
    for _ in range(iters):
        c = (aq / r[:, None]).mean(0)
        r = (aq / c[None, :]).mean(1)
    return np.outer(r, c)


def bucket_bits(q: np.ndarray, a: np.ndarray, k: int = 32) -> tuple[float, float]:
    """(bits of q given the k-quantile bucket of ``a``, table bits at ~10 per used entry)."""
    b = np.searchsorted(np.quantile(a, np.linspace(0, 1, k + 1)[1:-1]), a)
    qi = q.astype(np.int64) - int(q.min())
    used = np.unique(b.ravel() * (int(qi.max()) + 1) + qi.ravel()).size
    return conditional_bits(q.astype(np.int64), b), used * 10.0


def lowrank_residual(q: np.ndarray, k: int) -> np.ndarray:
    """``q − round(best rank-k approximation of q)`` as int64."""
    u, s, vt = np.linalg.svd(q.astype(np.float64), full_matrices=False)
    return q.astype(np.int64) - np.rint((u[:, :k] * s[:k]) @ vt[:k]).astype(np.int64)


def embedding_rows(q: np.ndarray) -> dict:
    """The near-copy statistics of an embedding in golf-rans's similarity-chain row order."""
    qs = q[similarity_chain(q, "cpp" if golf_fast.HAS_EXT else "reference")].astype(np.int64)
    d = qs[1:] - qs[:-1]
    rowdist = np.minimum(np.abs(d).mean(1).astype(np.int64), 15)[:, None].repeat(q.shape[1], 1)
    above = np.minimum(np.abs(qs[:-1]) // 4, 15)
    return {"delta_rowdist_B": conditional_bits(d, rowdist) / 8, "q_above16_B": conditional_bits(qs[1:], above) / 8,
            "rows_half_equal_above": int(((d == 0).mean(1) > 0.5).sum())}


def bounds(path: str) -> dict:
    """Per role, the ideal sizes above (bytes) for the artifact at ``path``."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"path: expected an artifact file path, got {path!r}")
    art = load_artifact(path)
    groups: dict = {}
    for name, v in art.state.items():
        if isinstance(v, QuantizedTensor):
            groups.setdefault((role_of(name), v.bits), []).append(v.codes.numpy())
    out = {}
    for (role, bits), mats in sorted(groups.items()):
        if sum(m.size for m in mats) < 100_000:
            continue
        rec = {"codes": sum(m.size for m in mats),
               "H0_B": entropy_bits(np.concatenate([m.ravel() for m in mats]).astype(np.int64)) / 8}
        for label, tf in (("rowcol", None), ("lowrank4", 4), ("lowrank16", 16)):
            bits = params = 0.0
            for q in mats:
                x = q if tf is None else lowrank_residual(q, tf)
                b, t = bucket_bits(x, rowcol_scale(x))
                bits += b
                params += t + (q.shape[0] + q.shape[1]) * 8 * (1 + (tf or 0))
            rec[f"{label}_B"], rec[f"{label}_params_B"] = bits / 8, params / 8
        if "tok_emb" in role:
            rec.update(embedding_rows(mats[0]))
        out[role] = {k: (round(v) if isinstance(v, float) else v) for k, v in rec.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+", help="trained artifacts (.gfa)")
    args = ap.parse_args()
    for p in args.artifacts:
        print(p)
        for role, rec in bounds(p).items():
            print(f"  {role:32s} {json.dumps(rec)}")


if __name__ == "__main__":
    main()
