"""Artifact compression benchmark: bytes, bits per code, order-0 entropy, compress/decompress time.

Run (CPU; brotli-11 and lzma-9 on the full record-shaped state take a minute or two each)::

    PYTHONPATH=. python benchmarks/bench_compression.py                      # record-shaped synthetic
    PYTHONPATH=. python benchmarks/bench_compression.py --trained sd.pt      # + a trained state_dict
    PYTHONPATH=. python benchmarks/bench_compression.py --layers 2           # a quick, smaller run

States:
* ``record-synthetic``: the record's 67 matrices (``golf_fast.artifact.synthetic``), i.i.d.
  Student-t(4) weights, RTN with the record's per-role bits and clip sigmas
  (``golf_fast.quant.recipe.RECORD_RECIPE``). Codes are i.i.d. within a matrix, so the
  per-role order-0 entropy is the floor.
* ``trained``: a ``torch.save``'d state_dict of your own (loaded with ``weights_only=True``);
  matrices over ``--min-numel`` entries are RTN-quantized with the bits and clip sigmas of the
  record's role their name looks like (``tok_emb``/``embed``: embedding; ``mlp``/``.fc.``/
  ``mproj``/``ffn``: MLP; anything else: attention), the rest fp16 passthrough.

Columns: ``bytes`` = the whole artifact file (manifest, scales, passthrough, checksum included);
``bits/code`` = bytes·8 / number of codes; ``H0`` = per-(role, bits) order-0 entropy of the codes;
``codes-only`` rows compress the codes alone (brotli-11 of the byte-shuffled codes vs golf-rans's
side information + streams), the fair comparison with H0. lrzip (the record's per-group ZPAQ) is
reported only when the ``lrzip`` binary is installed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time

import numpy as np
import torch

from golf_fast.artifact import decode_artifact, encode_artifact
from golf_fast.artifact.compressors import brotli_compress, brotli_decompress, byte_shuffle
from golf_fast.artifact.rans import role_of
from golf_fast.artifact.rans_codec import RansCodec
from golf_fast.artifact.synthetic import heavy_tailed_weights, record_matrix_shapes
from golf_fast.quant.formats import QuantizedTensor, quantize_rtn
from golf_fast.quant.recipe import RECORD_RECIPE


def synthetic_state(layers: int) -> dict:
    shapes = record_matrix_shapes(num_layers=layers)
    weights = heavy_tailed_weights(shapes, seed=0)
    plan = RECORD_RECIPE.plan(shapes)
    return {n: quantize_rtn(weights[n], *plan[n]) for n in shapes}


def trained_role(name: str) -> str:
    """The record's role a foreign state_dict's matrix name looks like (see the module docstring)."""
    if "tok_emb" in name or "embed" in name:
        return "embedding"
    if re.search(r"mlp|\.fc\.|mproj|ffn", name):
        return "mlp"
    return "attention"


def trained_state(path: str, min_numel: int = RECORD_RECIPE.passthrough_max_numel) -> dict:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    state = {}
    for n, w in sd.items():
        if not isinstance(w, torch.Tensor):
            continue
        if w.dim() == 2 and w.is_floating_point() and w.numel() > min_numel:
            rule = RECORD_RECIPE.role(trained_role(n))
            state[n] = quantize_rtn(w.float(), rule.bits, rule.clip_sigmas)
        else:
            state[n] = w.half() if w.is_floating_point() else w
    return state


def entropy_bits(state: dict) -> tuple[float, int]:
    groups: dict = {}
    for n, v in state.items():
        if isinstance(v, QuantizedTensor):
            groups.setdefault((role_of(n), v.bits), []).append(v.codes.numpy().ravel())
    total, count = 0.0, 0
    for codes in groups.values():
        c = np.bincount(np.concatenate(codes).astype(np.int64) + 128, minlength=256)
        p = c[c > 0] / c.sum()
        total += float(-(c[c > 0] * np.log2(p)).sum())
        count += int(c.sum())
    return total, count


CPU_TIMES: dict = {}


def timed(fn, *a, **k):
    """Wall seconds; the process CPU seconds (all threads) go to CPU_TIMES[last]."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn(*a, **k)
    CPU_TIMES["last"] = time.process_time() - c0
    return out, time.perf_counter() - t0


def lrzip_bytes(state: dict) -> tuple[int, float, float] | None:
    """The record's per-group lrzip -z -L 9 on role streams of transposed codes (no row sort)."""
    exe = shutil.which("lrzip")
    if exe is None:
        return None
    groups: dict = {}
    for n, v in state.items():
        if isinstance(v, QuantizedTensor):
            groups.setdefault(role_of(n), []).append(np.ascontiguousarray(v.codes.numpy().T).tobytes())
    total, tc, td = 0, 0.0, 0.0
    with tempfile.TemporaryDirectory() as d:
        for k, parts in enumerate(groups.values()):
            src = f"{d}/g{k}"
            with open(src, "wb") as f:
                f.write(b"".join(parts))
            t0 = time.perf_counter()
            subprocess.run([exe, "-q", "-z", "-L", "9", "-o", src + ".lrz", src], check=True)
            tc += time.perf_counter() - t0
            total += len(open(src + ".lrz", "rb").read())
            t0 = time.perf_counter()
            subprocess.run([exe, "-q", "-d", "-o", src + ".out", src + ".lrz"], check=True)
            td += time.perf_counter() - t0
    return total, tc, td


def bench_state(label: str, state: dict, codecs: list[str]) -> list[dict]:
    h_bits, n_codes = entropy_bits(state)
    print(f"\n== {label}: {sum(isinstance(v, QuantizedTensor) for v in state.values())} matrices, "
          f"{n_codes:,} codes, order-0 entropy {h_bits / n_codes:.4f} bits/code ({h_bits / 8:,.0f} B)")
    rows = []
    rans_report = {}
    for name in codecs:
        codec = RansCodec() if name == "golf-rans" else name
        data, t_enc = timed(encode_artifact, state, {"bench": label}, codec=codec)
        c_enc = CPU_TIMES["last"]
        art, t_dec = timed(decode_artifact, data)
        c_dec = CPU_TIMES["last"]
        for k, v in state.items():  # the round trip is exact, or the numbers mean nothing
            w = art.state[k]
            same = torch.equal(v.codes, w.codes) if isinstance(v, QuantizedTensor) else torch.equal(v, w)
            assert same, (name, k)
        rows.append({"state": label, "codec": name, "bytes": len(data), "bits": len(data) * 8 / n_codes,
                     "enc": t_enc, "dec": t_dec, "cenc": c_enc, "cdec": c_dec})
        if name == "golf-rans":
            rans_report = codec.last_report
    codes = b"".join(v.codes.numpy().tobytes() for v in state.values() if isinstance(v, QuantizedTensor))
    shuffled = byte_shuffle(codes, 2)
    b, t_enc = timed(brotli_compress, shuffled, quality=11)
    c_enc = CPU_TIMES["last"]
    _, t_dec = timed(brotli_decompress, b, "bench", len(shuffled))
    rows.append({"state": label, "codec": "brotli-11 codes-only", "bytes": len(b), "bits": len(b) * 8 / n_codes,
                 "enc": t_enc, "dec": t_dec, "cenc": c_enc, "cdec": CPU_TIMES["last"]})
    if rans_report:
        nb = rans_report["side_bytes"] + rans_report["stream_bytes"]
        rows.append({"state": label, "codec": "golf-rans codes-only", "bytes": nb, "bits": nb * 8 / n_codes,
                     "enc": float("nan"), "dec": float("nan"), "cenc": float("nan"), "cdec": float("nan")})
        for g in rans_report["groups"]:
            c = g["chosen"]
            print(f"   golf-rans {g['role']}: transpose={c['transpose']} reorder={c['reorder']} "
                  f"contexts={len(c['thr_a']) + 1}x{len(c['thr_b']) + 1}x{2 * c['ck'] + 1}")
    lz = lrzip_bytes(state)
    if lz is None:
        print("   lrzip: not installed, skipped")
    else:
        rows.append({"state": label, "codec": "lrzip-zpaq codes-only", "bytes": lz[0], "bits": lz[0] * 8 / n_codes,
                     "enc": lz[1], "dec": lz[2], "cenc": float("nan"), "cdec": float("nan")})
    for r in rows:
        r["vs_H0"] = 100 * (r["bits"] / (h_bits / n_codes) - 1)
        r["H0"] = h_bits / n_codes
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=11, help="layers of the record-shaped synthetic state")
    ap.add_argument("--trained", action="append", default=[], help="a torch.save'd state_dict (repeatable)")
    ap.add_argument("--codecs", default="golf-rans,brotli-11,lzma-9")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--min-numel", type=int, default=RECORD_RECIPE.passthrough_max_numel,
                    help="trained states: quantize matrices with more entries than this (default: the record's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    codecs = args.codecs.split(",")
    rows = bench_state("record-synthetic", synthetic_state(args.layers), codecs)
    for p in args.trained:
        rows += bench_state(f"trained:{p.rsplit('/', 1)[-1]}", trained_state(p, args.min_numel), codecs)
    print("\n| state | codec | bytes | bits/code | H0 bits/code | vs H0 | compress s (cpu s) | decompress s (cpu s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['state']} | {r['codec']} | {r['bytes']:,} | {r['bits']:.4f} | {r['H0']:.4f} | "
              f"{r['vs_H0']:+.2f}% | {r['enc']:.2f} ({r['cenc']:.2f}) | {r['dec']:.3f} ({r['cdec']:.3f}) |")
    by = {(r["state"], r["codec"]): r for r in rows}
    for st in dict.fromkeys(r["state"] for r in rows):
        a, b = by.get((st, "golf-rans")), by.get((st, "brotli-11"))
        if a and b:
            print(f"{st}: golf-rans is {100 * (1 - a['bytes'] / b['bytes']):+.2f}% smaller than brotli-11, "
                  f"compresses {b['enc'] / a['enc']:.1f}x faster, decompresses {b['dec'] / a['dec']:.2f}x as fast")


if __name__ == "__main__":
    main()
