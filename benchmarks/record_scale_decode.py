"""Encode/decode seconds of golf-rans at the record's size, from trained codes: a trained state's
embedding and its layers' block matrices cycled to 11 layers (35.9M codes; the bytes of repeated layers
mean nothing, the seconds do), encoded with the default codec and decoded with each decoder, one thread.

Run (CPU)::

    PYTHONPATH=. python benchmarks/record_scale_decode.py runs/states/L4_s800/model.gfa
"""
import sys
import time

import torch
from golf_fast.artifact import encode_artifact, decode_artifact
from golf_fast.artifact.format import load_artifact
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.quant.formats import QuantizedTensor
torch.set_num_threads(1)
if len(sys.argv) != 2:
    sys.exit("usage: record_scale_decode.py STATE.gfa (a trained state, benchmarks/train_states.py)")
src = load_artifact(sys.argv[1]).state
st = {}
for k, v in src.items():
    if not k.startswith("blocks."):
        st[k] = v
layers = 1 + max(int(k.split(".")[1]) for k in src if k.startswith("blocks."))
for layer in range(11):
    for k, v in src.items():
        if k.startswith(f"blocks.{layer % layers}."):
            st[f"blocks.{layer}." + k.split(".", 2)[2]] = v
n = sum(v.codes.numel() for v in st.values() if isinstance(v, QuantizedTensor))
print(f"{n:,} codes")
codec = RansCodec()
t = time.time(); data = encode_artifact(st, {"x": 1}, codec=codec); print(f"encode {time.time()-t:.1f} s, {len(data):,} B")
print("embedding group:", [(g["role"], g.get("cm"), g["stream_bytes"]) for g in codec.last_report["groups"] if "tok_emb" in g["role"]])
for dec in ("auto", "portable"):
    for _ in range(2):
        c0 = time.process_time(); t = time.time(); art = decode_artifact(data, decoder=dec)
        print(f"decode {dec}: {time.time()-t:.2f} s wall, {time.process_time()-c0:.2f} s CPU")
    assert all(torch.equal(art.state[k].codes, v.codes) for k, v in st.items() if isinstance(v, QuantizedTensor))
