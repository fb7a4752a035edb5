"""The README's kernel section, as written: its code blocks run, each call equals the record-script
function it claims to replace, and its table of backend names is what each op accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import golf_fast
from golf_fast.bench.cases.newton_schulz import root_zeropower
from golf_fast.ops.newton_schulz import POLAR_EXPRESS, newton_schulz_f64

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(marker: str) -> str:
    text = README.read_text()
    found = re.findall(rf"<!-- {marker} -->\s*```python\n(.*?)\n```", text, re.S)
    assert len(found) == 1, f"README: expected one block marked <!-- {marker} -->"
    return found[0]


def _run(marker: str, seed: int) -> dict:
    torch.manual_seed(seed)
    scope: dict = {}
    exec(compile(_block(marker), f"README.md <{marker}>", "exec"), scope)
    return scope


@pytest.fixture(autouse=True)
def _plain_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


# The R0611 record's functions, copied from openai/parameter-golf
# (records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611);
# the root train_gpt.py's Newton-Schulz is golf_fast.bench.cases.newton_schulz.root_zeropower.

def record_zeropower_via_newtonschulz5(G, steps=10, eps=1e-07):
    was_2d = G.ndim == 2
    if was_2d:
        G = G.unsqueeze(0)
    X = G.bfloat16()
    transposed = X.size(-2) > X.size(-1)
    if transposed:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    coeffs = POLAR_EXPRESS[:steps] if steps <= len(POLAR_EXPRESS) else POLAR_EXPRESS
    for a, b, c in coeffs:
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    if transposed:
        X = X.mT
    if was_2d:
        X = X.squeeze(0)
    return X


def record_gptq_quantize_weight(w, H, clip_sigmas=3.0, clip_range=63, block_size=128):
    W_orig = w.float().clone()
    rows, cols = W_orig.shape
    H = H.float().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    damp = 0.01 * H.diag().mean()
    H.diagonal().add_(damp)
    perm = torch.argsort(H.diag(), descending=True)
    invperm = torch.argsort(perm)
    W_perm = W_orig[:, perm].clone()
    W_perm[:, dead[perm]] = 0
    H = H[perm][:, perm]
    Hinv = torch.cholesky_inverse(torch.linalg.cholesky(H))
    Hinv = torch.linalg.cholesky(Hinv, upper=True)
    row_std = W_orig.std(dim=1)
    s = (clip_sigmas * row_std / clip_range).clamp_min(1e-10).to(torch.float16)
    sf = s.float()
    Q = torch.zeros(rows, cols, dtype=torch.int8)
    W_work = W_perm.clone()
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W_block = W_work[:, i1:i2].clone()
        Hinv_block = Hinv[i1:i2, i1:i2]
        Err = torch.zeros(rows, i2 - i1)
        for j in range(i2 - i1):
            w_col = W_block[:, j]
            d = Hinv_block[j, j]
            q_col = torch.clamp(torch.round(w_col / sf), -clip_range, clip_range)
            Q[:, i1 + j] = q_col.to(torch.int8)
            err = (w_col - q_col.float() * sf) / d
            Err[:, j] = err
            W_block[:, j:] -= err.unsqueeze(1) * Hinv_block[j, j:].unsqueeze(0)
        if i2 < cols:
            W_work[:, i2:] -= Err @ Hinv[i1:i2, i2:]
    return Q[:, invperm], s


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# --------------------------------------------------------------------------- the swap block


def test_swap_block_newton_schulz_is_the_records_function():
    s = _run("swap example", 2611)
    G = s["G"]
    assert torch.equal(s["O"], record_zeropower_via_newtonschulz5(G, 5))  # CPU auto: op for op
    root = root_zeropower(G, 5)
    f64 = newton_schulz_f64(G.bfloat16().double(), 5, "quintic")
    assert _rel(s["O_root"], f64) <= 2 * _rel(root, f64)  # the same math, bf16 rounding apart
    bf16_err = _rel(root, f64)  # what one bf16 computation of the iteration is off by
    assert _rel(s["O_root"], root) <= 2 * bf16_err
    assert _rel(s["O"], root) > 4 * bf16_err  # without "quintic" it is not the root's function


def test_swap_block_cross_entropy_is_the_records_loss():
    s = _run("swap example", 2612)
    z, t = s["logits_proj"], s["targets"]
    record_fused = F.cross_entropy(30.0 * torch.tanh(z.double() / 30.0), t)  # the record's fused CE math
    assert abs(float(s["loss"]) - float(record_fused)) <= 2e-6 * float(record_fused)
    root = F.cross_entropy((30.0 * torch.tanh(z / 30.0)).float(), t)  # rounds the softcapped logits to bf16
    assert abs(float(s["loss"]) - float(root)) <= 2 ** -8 * 30.0


def test_swap_block_mlp_is_the_records_eager_line():
    s = _run("swap example", 2613)
    x, up_w, down_w = s["x"], s["up_w"], s["down_w"]
    hidden = F.leaky_relu(F.linear(x, up_w.to(x.dtype)), negative_slope=0.5).square()
    assert torch.equal(s["y"], F.linear(hidden, down_w.to(x.dtype)))


# --------------------------------------------------------------------------- the quantize block


def test_quantize_block_matches_the_records_functions():
    s = _run("quantize example", 2614)
    W, x, H, res = s["W"], s["x"], s["H"], s["res"]
    xf = x.float()
    assert _rel(H, xf.T @ xf) < 1e-5  # collect_hessians' addmm_
    q, sc = record_gptq_quantize_weight(W, H, clip_sigmas=12.85, clip_range=31)
    assert torch.equal(res.scales, sc)
    assert float((res.codes == q).float().mean()) > 0.99  # same algorithm; factorization order differs
    deq = res.codes.float() * res.scales.float()[:, None]
    assert _rel(s["y"], x[:8].float() @ deq.T) < 2 ** -8
    assert torch.equal(golf_fast.unpack_int6(s["packed"], num_cols=W.shape[1]), res.codes)


# --------------------------------------------------------------------------- the backends table


def _table_rows() -> dict[str, str]:
    text = README.read_text()
    section = text[text.index("| op | backends |"):]
    rows = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        op_cell, backends = [c.strip() for c in line.strip("|").split("|")]
        for name in re.findall(r"`([a-z0-9_]+)`", op_cell):
            rows[name] = backends
    return rows


def test_backends_table_is_what_each_op_accepts():
    from golf_fast.ops import fused_mlp, gptq, hessian, int6_matmul, int6_pack, newton_schulz, softcapped_ce

    ops = {"newton_schulz": newton_schulz.NS_OP, "softcapped_cross_entropy": softcapped_ce.CE_OP,
           "leaky_relu_square_mlp": fused_mlp.MLP_OP, "int6_linear": int6_matmul.LINEAR_OP,
           "dequantize_int6": int6_matmul.DEQUANT_OP, "pack_int6": int6_pack.PACK_OP,
           "unpack_int6": int6_pack.UNPACK_OP, "hessian_accumulate_": hessian.HESSIAN_OP,
           "gptq_quantize": gptq.GPTQ_BLOCK_OP}
    rows = _table_rows()
    assert set(rows) == set(ops)
    for name, cell in rows.items():
        op = ops[name]
        listed = re.findall(r"`([a-z0-9_]+)`(?: \((CPU|CUDA)\))?", cell)
        assert [n for n, _ in listed] == op.backends(), name
        for backend, only in listed:
            if only:
                devices = {b.device_type for b in op._backends if b.name == backend}
                assert devices == {only.lower()}, (name, backend, devices)
