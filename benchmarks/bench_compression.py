"""Artifact compression benchmark: bytes, bits per code, order-0 entropy, compress/decompress time.

Run (CPU; brotli-11 and lzma-9 on the full record-shaped state take a minute or two each)::

    PYTHONPATH=. python benchmarks/bench_compression.py                      # record-shaped synthetic
    PYTHONPATH=. python benchmarks/bench_compression.py --layers 0 --artifact runs/x/model.gfa
    PYTHONPATH=. python benchmarks/bench_compression.py --layers 0 --make-smoke /tmp/bench_runs
    PYTHONPATH=. python benchmarks/bench_compression.py --trained sd.pt      # + a trained state_dict

States:
* ``record-synthetic``: the record's 67 matrices (``golf_fast.artifact.synthetic``), i.i.d.
  Student-t(4) weights, RTN with the record's per-role bits and clip sigmas
  (``golf_fast.quant.recipe.RECORD_RECIPE``). Codes are i.i.d. within a matrix, so the
  per-role order-0 entropy is the floor. ``--layers 0`` skips it.
* ``artifact``: a trained model's own artifact (``golf-fast train`` writes ``runs/<name>/model.gfa``):
  its GPTQ codes, scales and passthrough tensors exactly as trained. ``--make-smoke DIR`` trains
  the smoke preset into ``DIR/smoke`` first (a few minutes on 2 CPU cores; reused when present).
* ``trained``: a ``torch.save``'d state_dict of your own (loaded with ``weights_only=True``);
  matrices over ``--min-numel`` entries are RTN-quantized with the bits and clip sigmas of the
  record's role their name looks like (``tok_emb``/``embed``: embedding; ``mlp``/``.fc.``/
  ``mproj``/``ffn``: MLP; anything else: attention), the rest fp16 passthrough.

Columns: ``bytes`` = the whole artifact file (manifest, scales, passthrough, checksum included);
``bits/code`` = bytes·8 / number of codes; ``H0`` = per-(role, bits) order-0 entropy of the codes.
``codes-only`` rows compress the codes alone, the fair comparison with H0 and with the record's
per-group path: golf-rans side information + streams; brotli-11 / lzma-9 of the byte-shuffled
codes; ``pergroup-lrzip`` = the record's R0611 path (rows of tok_emb, c_q and mlp.fc sorted by a
greedy L1 nearest-neighbour chain, each role's matrices transposed and concatenated, ``lrzip -z
-L 9`` (ZPAQ) per role, the row orders as brotli-11 uint16). Without the ``lrzip`` binary
(``apt-get install lrzip``) that row says so and ``pergroup-lzma9`` (the same streams through
lzma-9) stands in. ``dec @36M`` extrapolates golf-rans's measured decode rate (whole artifact,
checksum and scales included) to the record's 36M codes; it is "—" where the embedding coder took a group
(its ~0.3 µs per code is spent on the embedding alone, whose size does not grow with the layers:
``benchmarks/record_scale_decode.py`` measures the record's size instead).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional

import numpy as np
import torch

from golf_fast.artifact import decode_artifact, encode_artifact, load_artifact
from golf_fast.artifact.compressors import (
    brotli_compress,
    brotli_decompress,
    byte_shuffle,
    lzma_compress,
    lzma_decompress,
)
from golf_fast.artifact.rans.coder import role_of
from golf_fast.artifact.rans.codec import RansCodec
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


PERGROUP_SORTED = ("tok_emb", "c_q", "mlp.fc")  # the roles R0611 similarity-sorts


def l1_chain(q: np.ndarray) -> np.ndarray:
    """R0611's row order: start at row 0, then always the unvisited row nearest in L1 (ties: lowest);
    the embedding coder's chain with lam 0 (C when it builds, else its numpy reference)."""
    from golf_fast.artifact.rans import embcm
    from golf_fast.artifact.rans.embcm_ref import chain_order_ref

    q = np.ascontiguousarray(q, dtype=np.int8)
    return embcm.chain_order(q, 0) if embcm.library() is not None else chain_order_ref(q, 0)


def pergroup_streams(state: dict) -> tuple[list[bytes], bytes]:
    """R0611's per-role streams (sorted rows where it sorts, transposed) and its row orders."""
    groups: dict = {}
    perms = []
    for n, v in state.items():
        if isinstance(v, QuantizedTensor):
            q = v.codes.numpy()
            if any(k in n for k in PERGROUP_SORTED):
                p = l1_chain(q)
                q = q[p]
                perms.append(p.astype("<u2").tobytes())
            groups.setdefault(role_of(n), []).append(np.ascontiguousarray(q.T).tobytes())
    return [b"".join(parts) for parts in groups.values()], b"".join(perms)


LRZIP_VERIFY = [True]  # --lrzip-no-verify: skip lrzip's decompression (its time then reads nan)
LRZIP_CACHE: list = [None]  # --baseline-cache FILE: lrzip / brotli-11 / lzma-9 results of earlier runs, by sha256


def _lrzip_cache() -> dict:
    path = LRZIP_CACHE[0]
    if path is None or not pathlib.Path(path).exists():
        return {}
    return json.loads(pathlib.Path(path).read_text())


def _lrzip_cache_put(key: str, value: dict) -> None:
    """Record one baseline result in the cache file (written atomically: temp file, then rename)."""
    path = LRZIP_CACHE[0]
    if path is None:
        return
    cache = _lrzip_cache()
    cache[key] = value
    tmp = pathlib.Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
    tmp.replace(path)


def pergroup_bytes(state: dict, use_lrzip: bool, per_role: Optional[dict] = None) -> tuple[str, int, float, float]:
    """(label, bytes, compress s, decompress s) of the per-group path, the row sort included in
    the compress time; lrzip when installed and wanted, else lzma-9 on the same streams.
    ``per_role`` (when given) receives role → compressed bytes of that role's stream."""
    t0 = time.perf_counter()
    roles = list(dict.fromkeys(role_of(n) for n, v in state.items() if isinstance(v, QuantizedTensor)))
    streams, perms = pergroup_streams(state)
    perm_blob = brotli_compress(perms, quality=11) if perms else b""
    t_sort = time.perf_counter() - t0
    exe = shutil.which("lrzip") if use_lrzip else None
    lrzip_verify = LRZIP_VERIFY[0]
    total, tc, td = len(perm_blob), t_sort, 0.0
    if exe is None:
        for k, data in enumerate(streams):
            t0 = time.perf_counter()
            z = lzma_compress(data, preset=9)
            tc += time.perf_counter() - t0
            if per_role is not None:
                per_role[roles[k]] = len(z)
            t0 = time.perf_counter()
            assert lzma_decompress(z, "bench", len(data)) == data
            td += time.perf_counter() - t0
            total += len(z)
        return "pergroup-lzma9 codes-only (lrzip stand-in)", total, tc, td
    with tempfile.TemporaryDirectory() as d:
        for k, data in enumerate(streams):
            key = hashlib.sha256(data).hexdigest()
            hit = _lrzip_cache().get(key)
            if hit is not None and (hit["decompress_s"] is not None or not lrzip_verify):
                total += hit["bytes"]
                tc += hit["compress_s"]
                td += float("nan") if hit["decompress_s"] is None else hit["decompress_s"]
                if per_role is not None:
                    per_role[roles[k]] = hit["bytes"]
                continue
            src = f"{d}/g{k}"
            with open(src, "wb") as f:
                f.write(data)
            t0 = time.perf_counter()
            subprocess.run([exe, "-q", "-z", "-L", "9", "-o", src + ".lrz", src], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t_c = time.perf_counter() - t0
            tc += t_c
            with open(src + ".lrz", "rb") as f:
                nz = len(f.read())
            total += nz
            if per_role is not None:
                per_role[roles[k]] = nz
            if not lrzip_verify:
                td = float("nan")
                _lrzip_cache_put(key, {"bytes": nz, "compress_s": t_c, "decompress_s": None})
                continue
            t0 = time.perf_counter()
            subprocess.run([exe, "-q", "-d", "-o", src + ".out", src + ".lrz"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t_d = time.perf_counter() - t0
            td += t_d
            with open(src + ".out", "rb") as f:
                assert f.read() == data
            _lrzip_cache_put(key, {"bytes": nz, "compress_s": t_c, "decompress_s": t_d})
    return "pergroup-lrzip codes-only", total, tc, td


def cm_bytes(state: dict) -> tuple[int, float, float, dict]:
    """The experimental context-mixing coder (``golf_fast.artifact.rans.cm``) on each role's
    matrices, rows sorted as R0611 sorts them (not transposed), row orders brotli-11'd as in the
    per-group path: (bytes, compress s, decompress s, role → stream bytes); round trip checked."""
    from golf_fast.artifact.rans import cm
    from golf_fast.quant.formats import qmax as qmax_of

    groups: dict = {}
    perms, tc, td, per_role = [], 0.0, 0.0, {}
    t0 = time.perf_counter()
    for n, v in state.items():
        if isinstance(v, QuantizedTensor):
            q = v.codes.numpy()
            if any(k in n for k in PERGROUP_SORTED):
                p = l1_chain(q)
                q = np.ascontiguousarray(q[p])
                perms.append(p.astype("<u2").tobytes())
            groups.setdefault((role_of(n), v.bits), []).append(q)
    total = len(brotli_compress(b"".join(perms), quality=11)) if perms else 0
    tc += time.perf_counter() - t0
    for (role, bits), mats in groups.items():
        t0 = time.perf_counter()
        z = cm.encode(mats, qmax_of(bits))
        tc += time.perf_counter() - t0
        t0 = time.perf_counter()
        back = cm.decode(z, [q.shape for q in mats], qmax_of(bits))
        td += time.perf_counter() - t0
        assert all(np.array_equal(a, b) for a, b in zip(mats, back)), role
        per_role[role] = per_role.get(role, 0) + len(z)
        total += len(z)
    return total, tc, td, per_role


def artifact_state(path: str) -> tuple[dict, str]:
    """A trained artifact's state, exactly as stored (GPTQ codes, scales, passthrough), and what
    its run says of it (layers × width from its model config, training steps from its metadata)."""
    art = load_artifact(path)
    m, meta = art.config or {}, art.metadata or {}
    what = f"{m.get('num_layers', '?')}L×{m.get('model_dim', '?')}, {meta.get('steps', '?')} steps"
    return dict(art.state), what


def located_states(folder: str) -> list[str]:
    """Every ``<folder>/<run>/model.gfa`` (the trained states of ``benchmarks/train_states.py``),
    sorted by name."""
    return [str(p) for p in sorted(pathlib.Path(folder).glob("*/model.gfa"))]


def make_smoke(out_dir: str) -> str:
    """Train the smoke preset into ``out_dir/smoke`` unless its artifact is there; its path."""
    path = pathlib.Path(out_dir) / "smoke" / "model.gfa"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "golf_fast.train", "--preset", "smoke", "--run.out_dir", out_dir,
                        "--run.name", "smoke"], check=True)
    return str(path)


def _row(label, codec, nbytes, n_codes, enc, dec, cenc=float("nan"), cdec=float("nan")) -> dict:
    return {"state": label, "codec": codec, "bytes": nbytes, "bits": nbytes * 8 / n_codes, "enc": enc, "dec": dec,
            "cenc": cenc, "cdec": cdec, "dec36": dec * 36e6 / n_codes}


def bench_state(label: str, state: dict, codecs: list[str], use_lrzip: bool = True, use_cm: bool = True) -> list[dict]:
    h_bits, n_codes = entropy_bits(state)
    print(f"\n== {label}: {sum(isinstance(v, QuantizedTensor) for v in state.values())} matrices, "
          f"{n_codes:,} codes, order-0 entropy {h_bits / n_codes:.4f} bits/code ({h_bits / 8:,.0f} B)", flush=True)
    rows = [_row(label, "order-0 entropy codes-only", int(round(h_bits / 8)), n_codes, float("nan"), float("nan"))]
    rans_report = {}
    for name in codecs:
        codec = RansCodec() if name == "golf-rans" else name
        data, t_enc = timed(encode_artifact, state, {"bench": label}, codec=codec)
        c_enc = CPU_TIMES["last"]
        decoders = ("auto", "portable") if name == "golf-rans" else ("auto",)
        for dec in decoders:
            art, t_dec = timed(decode_artifact, data, decoder=dec)
            c_dec = CPU_TIMES["last"]
            for k, v in state.items():  # the round trip is exact, or the numbers mean nothing
                w = art.state[k]
                same = torch.equal(v.codes, w.codes) if isinstance(v, QuantizedTensor) else torch.equal(v, w)
                assert same, (name, dec, k)
            rows.append(_row(label, name if dec == "auto" else f"{name} (decoder={dec})", len(data), n_codes,
                             t_enc, t_dec, c_enc, c_dec))
        if name == "golf-rans":
            rans_report = codec.last_report
            if any(g.get("cm", -1) >= 0 for g in rans_report["groups"]):  # not linear in the code count
                for r in rows:
                    if r["codec"].startswith("golf-rans"):
                        r["dec36"] = float("nan")
    codes = b"".join(v.codes.numpy().tobytes() for v in state.values() if isinstance(v, QuantizedTensor))
    shuffled = byte_shuffle(codes, 2)
    digest = hashlib.sha256(shuffled).hexdigest()
    for cname, comp, dec in (("brotli-11", lambda d: brotli_compress(d, quality=11), brotli_decompress),
                             ("lzma-9", lambda d: lzma_compress(d, preset=9), lzma_decompress)):
        hit = _lrzip_cache().get(f"{cname}:{digest}")
        if hit is None:
            b, t_enc = timed(comp, shuffled)
            c_enc = CPU_TIMES["last"]
            _, t_dec = timed(dec, b, "bench", len(shuffled))
            hit = {"bytes": len(b), "compress_s": t_enc, "decompress_s": t_dec, "compress_cpu_s": c_enc,
                   "decompress_cpu_s": CPU_TIMES["last"]}
            _lrzip_cache_put(f"{cname}:{digest}", hit)
        rows.append(_row(label, f"{cname} codes-only", hit["bytes"], n_codes, hit["compress_s"], hit["decompress_s"],
                         hit["compress_cpu_s"], hit["decompress_cpu_s"]))
    if rans_report:
        nb = rans_report["side_bytes"] + rans_report["stream_bytes"]
        rows.append(_row(label, "golf-rans codes-only", nb, n_codes, float("nan"), float("nan")))
        for g in rans_report["groups"]:
            c = g["chosen"]
            print(f"   golf-rans {g['role']}: transpose={c['transpose']} reorder={c['reorder']} rmode={c['rmode']} "
                  f"contexts={len(c['thr_a']) + 1}x{len(c['thr_b']) + 1}x{2 * c['ck'] + 1} "
                  f"coded ~{g['entropy_bytes']:,} B")
    if use_lrzip and shutil.which("lrzip") is None:
        print("   lrzip: not installed (apt-get install lrzip); pergroup-lzma9 stands in")
    per_role: dict = {}
    cm_role: dict = {}
    if use_cm:
        cb, ctc, ctd, cm_role = cm_bytes(state)
        rows.append(_row(label, "golf-cm (experimental) codes-only", cb, n_codes, ctc, ctd))
    plabel, pbytes, ptc, ptd = pergroup_bytes(state, use_lrzip, per_role)
    rows.append(_row(label, plabel, pbytes, n_codes, ptc, ptd))
    if rans_report:
        print(f"   per role, bytes of the code streams (row orders and tables not included): golf-rans, "
              f"{plabel.split(' ')[0]}" + (", golf-cm" if cm_role else ""))
        for g in rans_report["groups"]:
            other = per_role.get(g["role"])
            if other:
                extra = f"  golf-cm {cm_role[g['role']]:>11,} {100 * (cm_role[g['role']] / other - 1):+.2f}%" \
                    if g["role"] in cm_role else ""
                print(f"     {g['role']:32s} {g['stream_bytes']:>11,} {other:>11,}  "
                      f"{100 * (g['stream_bytes'] / other - 1):+.2f}%{extra}")
    for r in rows:
        r["vs_H0"] = 100 * (r["bits"] / (h_bits / n_codes) - 1)
        r["H0"] = h_bits / n_codes
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=11, help="layers of the record-shaped synthetic state (0: skip)")
    ap.add_argument("--artifact", action="append", default=[], help="a trained artifact .gfa (repeatable)")
    ap.add_argument("--make-smoke", default="", metavar="DIR",
                    help="train the smoke preset into DIR/smoke (unless there) and benchmark its artifact")
    ap.add_argument("--trained", action="append", default=[], help="a torch.save'd state_dict (repeatable)")
    ap.add_argument("--states", default="", metavar="DIR",
                    help="every DIR/<run>/model.gfa (the states benchmarks/train_states.py trains; runs/ is git-ignored)")
    ap.add_argument("--codecs", default="golf-rans,brotli-11,lzma-9")
    ap.add_argument("--lrzip-no-verify", action="store_true",
                    help="skip lrzip's decompression (minutes per MB on a loaded machine); its time reads nan")
    ap.add_argument("--baseline-cache", default="", metavar="FILE",
                    help="reuse the codes-only baselines' results (per-group lrzip, brotli-11, lzma-9: bytes, "
                         "seconds) of earlier runs on the same bytes, keyed by sha256; new results are added (JSON). "
                         "The baselines do not depend on golf-rans, so a golf-rans change reruns in minutes")
    ap.add_argument("--no-cm", action="store_true", help="skip the experimental context-mixing coder (golf-cm)")
    ap.add_argument("--no-lrzip", action="store_true", help="skip lrzip (slow: minutes per MB); lzma-9 stands in")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--min-numel", type=int, default=RECORD_RECIPE.passthrough_max_numel,
                    help="trained states: quantize matrices with more entries than this (default: the record's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    codecs = args.codecs.split(",")
    from golf_fast.artifact.rans import portable
    if portable.library() is None:  # compile once before any timing
        print(f"portable decoder: unavailable ({portable.why()}); its rows use the numpy fallback")
    use_lrzip = not args.no_lrzip
    LRZIP_VERIFY[0] = not args.lrzip_no_verify
    LRZIP_CACHE[0] = args.baseline_cache or None
    rows = []
    if args.layers > 0:
        rows += bench_state("record-synthetic", synthetic_state(args.layers), codecs, use_lrzip, not args.no_cm)
    paths = list(args.artifact) + ([make_smoke(args.make_smoke)] if args.make_smoke else [])
    if args.states:
        found = located_states(args.states)
        if not found:
            ap.error(f"--states: no <run>/model.gfa under {args.states!r} (train them: benchmarks/train_states.py)")
        paths += found
    for p in paths:
        st, what = artifact_state(p)
        rows += bench_state(f"{p.split('/')[-2]} ({what})", st, codecs, use_lrzip, not args.no_cm)
    for p in args.trained:
        rows += bench_state(f"trained:{p.rsplit('/', 1)[-1]}", trained_state(p, args.min_numel), codecs, use_lrzip, not args.no_cm)
    print(f"\n(CPU timings, {torch.get_num_threads()} torch threads)")
    print("| state | codec | bytes | bits/code | H0 bits/code | vs H0 | compress s (cpu s) | decompress s (cpu s) "
          "| dec @36M codes s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d36 = f"{r['dec36']:.2f}" if r["codec"].startswith("golf-rans") and "codes-only" not in r["codec"] else ""
        d36 = "—" if d36 == "nan" else d36
        print(f"| {r['state']} | {r['codec']} | {r['bytes']:,} | {r['bits']:.4f} | {r['H0']:.4f} | "
              f"{r['vs_H0']:+.2f}% | {r['enc']:.2f} ({r['cenc']:.2f}) | {r['dec']:.3f} ({r['cdec']:.3f}) | {d36} |")
    for st in dict.fromkeys(r["state"] for r in rows):
        codes_only = sorted((r for r in rows if r["state"] == st and "codes-only" in r["codec"]
                             and not r["codec"].startswith("order-0")),
                            key=lambda r: r["bytes"])
        if codes_only:
            best, rest = codes_only[0], codes_only[1:]
            vs = ", ".join(f"{r['codec'].split(' ')[0]} {100 * (r['bytes'] / best['bytes'] - 1):+.2f}%" for r in rest)
            print(f"{st}: smallest codes-only: {best['codec'].split(' ')[0]} ({best['bytes']:,} B); others: {vs}")


if __name__ == "__main__":
    main()
