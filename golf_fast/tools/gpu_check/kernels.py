"""The kernel part of ``golf-fast gpu-check``: every kernel against float64 on the GPU.

``python -m golf_fast.tools.gpu_check.kernels --out DIR [--budget S] [--smoke]``

Each case is independent (a failure is recorded and the run goes on; a case past the budget is
skipped); one JSON line per case goes to ``DIR/kernel_check.jsonl`` and a line to stdout. Cases:
first-call cost (compile + self-check) against the second call; every int6 tile × split ×
activation dtype forced at aligned (production specialization) and odd shapes with and without
the epilogue; the public int6 op at benchmark shapes; dequantization and packing; Newton-Schulz
at the record's shapes, the large tiles (m ≥ 1024) and every compute dtype (kernel error ≤ 2× eager's,
against float64); Hessian accumulation (relative error ≤ 1e-5, exact symmetry, determinism);
GPTQ blocks; the fused MLP and softcapped cross-entropy (forward and gradients, next to eager);
the self-checks under TF32 ("high" fp32 matmul precision, as the trainer sets it);
offsets past 2^31 elements; host overhead per call; a first call inside CUDA-graph capture (a
clear refusal, and a capture that works after a precheck). ``--smoke`` runs tiny shapes on the
CPU under ``TRITON_INTERPRET=1``: it checks this script, not the kernels' speed. Exit status 1 if
any case failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import torch

CAPTURE_SCRIPT = r"""
import torch, golf_fast
from golf_fast.ops.dispatch import SelfCheckDuringCaptureError
g = torch.randn(3, 512, 512, device="cuda")
s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
graph = torch.cuda.CUDAGraph()
try:
    with torch.cuda.stream(s), torch.cuda.graph(graph):
        golf_fast.newton_schulz(g)  # first call: its self-check cannot run here
    print("CAPTURE_UNEXPECTED_OK")
except SelfCheckDuringCaptureError as e:
    print("CAPTURE_REFUSED_CLEARLY", str(e)[:160])
except Exception as e:
    print("CAPTURE_OTHER_ERROR", type(e).__name__, str(e)[:300])
torch.cuda.synchronize()
golf_fast.newton_schulz(g)  # the precheck: one eager call
graph = torch.cuda.CUDAGraph()
with torch.cuda.stream(s), torch.cuda.graph(graph):
    out = golf_fast.newton_schulz(g)
graph.replay(); torch.cuda.synchronize()
print("CAPTURE_AFTER_PRECHECK_OK", bool(torch.isfinite(out).all()))
"""


class Checker:
    """Runs cases, records them (JSONL + stdout), keeps a deadline."""

    def __init__(self, out_dir: Path, budget_s: float, device: torch.device) -> None:
        self.dev = device
        self.deadline = time.time() + budget_s
        self.results: list[dict] = []
        self.log = open(out_dir / "kernel_check.jsonl", "a")
        self.gen = torch.Generator().manual_seed(0)

    def sync(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def record(self, group: str, name: str, ok: Optional[bool], **info) -> None:
        row = {"group": group, "case": name, "ok": ok, **info}
        self.results.append(row)
        self.log.write(json.dumps(row, default=str) + "\n")
        self.log.flush()
        flag = {True: "PASS", False: "FAIL", None: "INFO"}[ok]
        extra = " ".join(f"{k}={v}" for k, v in info.items() if k != "trace")
        print(f"[{flag}] {group}: {name} {extra}"[:2000], flush=True)

    def case(self, group: str, name: str, fn: Callable[[], object]) -> None:
        if time.time() > self.deadline:
            self.record(group, name, None, skipped="kernel-check budget spent")
            return
        t0 = time.perf_counter()
        try:
            res = fn()
            self.sync()
            ok, info = res if isinstance(res, tuple) else (res, {})
            self.record(group, name, ok, secs=round(time.perf_counter() - t0, 3), **info)
        except Exception as exc:  # a failing case is a result, not the end of the check
            self.record(group, name, False, secs=round(time.perf_counter() - t0, 3),
                        error=f"{type(exc).__name__}: {str(exc)[:400]}", trace=traceback.format_exc()[-1500:])

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen).to(dtype).to(self.dev)

    def codes(self, n: int, k: int) -> torch.Tensor:
        return torch.randint(-31, 32, (n, k), dtype=torch.int8, generator=self.gen).to(self.dev)

    def scales(self, n: int) -> torch.Tensor:
        return (torch.rand(n, generator=self.gen) * 0.02 + 0.001).half().to(self.dev)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def int6_ref64(x, codes, scales, bias=None, a=None, b=None) -> torch.Tensor:
    w = codes.double() * scales.double()[:, None]
    y = x.double() @ w.T
    if bias is not None:
        y = y + bias.double()
    if a is not None:
        y = y + (x.double() @ b.double().T) @ a.double().T
    return y


def check_int6(c: Checker, smoke: bool) -> None:
    from golf_fast.ops import int6_matmul as im
    from golf_fast.ops.int6_pack import pack_int6, pack_int6_ref, unpack_int6

    shapes = [(45, 83)] if smoke else [(45, 600), (512, 512), (512, 2048), (8192, 512)]
    m_for = {"gemv16": (1, 16), "gemv64": (17, 64), "gemm64": (65, 256), "gemm256": (259, 2048)}
    if smoke:
        m_for = {"gemv16": (1,), "gemv64": (17,), "gemm64": (65,), "gemm256": (259,)}
    dtypes = (torch.float16,) if smoke else (torch.bfloat16, torch.float16)
    for dtype in dtypes:
        for n, k in shapes:
            codes, scales = c.codes(n, k), c.scales(n)
            packed = pack_int6_ref(codes)
            bias, a, b = c.randn(n, dtype=dtype), c.randn(n, 3), c.randn(3, k)
            for tile in im.SHIPPED_TILES:
                key = f"{tile.kernel}{tile.block_m}"
                for m in m_for[key]:
                    x = c.randn(m, k, dtype=dtype)
                    for split in ((1, 2) if tile.kernel == "gemv" else (1,)):
                        for epi in (False, True):
                            def run(x=x, tile=tile, split=split, epi=epi, codes=codes, scales=scales, packed=packed,
                                    bias=bias, a=a, b=b):
                                extra = (bias, a, b) if epi else (None, None, None)
                                out = im.launch_tile(x, packed, scales, *extra, tile, split)
                                problem = im.within_output_rounding(out, int6_ref64(x, codes, scales, *extra).to(x.dtype))
                                return problem is None, ({"problem": problem} if problem else {})
                            c.case("int6 tile", f"{str(dtype)[6:]} N={n} K={k} M={m} {key} split={split} epi={epi}", run)

    def public_sweep():
        bad = []
        sh = [(64, 128)] if smoke else [(512, 512), (2048, 512), (512, 2048), (8192, 4096)]
        for dtype in dtypes:
            for n, k in sh:
                codes, scales = c.codes(n, k), c.scales(n)
                packed = pack_int6(codes)
                for m in ((1, 70) if smoke else (1, 8, 16, 64, 256, 2048, 16384)):
                    x = c.randn(m, k, dtype=dtype)
                    problem = im.within_output_rounding(im.int6_linear(x, packed, scales),
                                                        int6_ref64(x, codes, scales).to(dtype))
                    if problem:
                        bad.append(f"{dtype} {n}x{k} M={m}: {problem}")
        return not bad, {"failures": bad[:6], "n_bad": len(bad)}

    c.case("int6 public", "int6_linear (select_config + self-checks) vs float64", public_sweep)

    def dequant_and_pack():
        bad = []
        for n, k in ([(37, 83)] if smoke else [(37, 83), (512, 512), (2048, 4096), (3, 2050)]):
            codes, scales = c.codes(n, k), c.scales(n)
            packed = pack_int6(codes)
            if not torch.equal(packed, pack_int6_ref(codes)) or not torch.equal(unpack_int6(packed, k), codes):
                bad.append(f"pack/unpack {n}x{k}")
            # the interpreter casts to bf16 through the raw bits (DESIGN.md, tier 2): no bf16 in --smoke
            for dt in ((torch.float16, torch.float32) if smoke else (torch.bfloat16, torch.float16, torch.float32)):
                if not torch.equal(im.dequantize_int6(packed, scales, k, dt), (codes.float() * scales.float()[:, None]).to(dt)):
                    bad.append(f"dequant {n}x{k} {dt}")
        return not bad, {"failures": bad}

    c.case("int6 pack/dequant", "exact, bf16/fp16/fp32", dequant_and_pack)


def check_newton_schulz(c: Checker, smoke: bool) -> None:
    from golf_fast.ops.newton_schulz import newton_schulz, newton_schulz_f64, newton_schulz_ref

    shapes = [(2, 72, 40), (1, 141, 200)] if smoke else [
        (3, 512, 512), (3, 256, 512), (2, 2048, 512), (2, 512, 2048), (1, 1024, 1024), (2, 1024, 4096),
        (1, 4096, 1024), (1, 1536, 2048), (2, 100, 300), (1, 1000, 70)]
    dtypes = (torch.float32,) if smoke else (torch.bfloat16, torch.float16, torch.float32)
    for dt in dtypes:
        for shape in shapes:
            def run(shape=shape, dt=dt):
                g = c.randn(*shape)
                f64 = newton_schulz_f64(g)
                e_k = rel(newton_schulz(g, dtype=dt), f64)
                eager_dt = torch.bfloat16 if dt == torch.float32 else dt  # fp32 kernel dots are TF32
                e_ref = rel(newton_schulz_ref(g, dtype=eager_dt), f64)
                return e_k <= 2 * e_ref, {"kernel_vs_f64": f"{e_k:.2e}", f"eager_{str(eager_dt)[6:]}_vs_f64": f"{e_ref:.2e}",
                                          "tiles": "large" if min(shape[1:]) >= 1024 else "small"}
            c.case(f"newton_schulz {str(dt)[6:]}", str(shape), run)


def hessian_vs_f64(x: torch.Tensor, h0: torch.Tensor) -> tuple[float, bool, bool]:
    """Accumulate 0.5·xᵀx into two copies of the symmetric ``h0`` with the kernel: its relative
    error against float64, whether H is symmetric, and whether both runs are bit-identical."""
    from golf_fast.ops.hessian import hessian_accumulate_

    h, h2 = h0.clone(), h0.clone()
    hessian_accumulate_(h, x, 0.5)
    hessian_accumulate_(h2, x, 0.5)
    lower = torch.tril(h0.double()) + 0.5 * torch.tril(x.double().T @ x.double())
    return rel(h, lower + torch.tril(lower, -1).T), torch.equal(h, h.T), torch.equal(h, h2)


def check_hessian_and_gptq(c: Checker, smoke: bool) -> None:
    from golf_fast.ops.gptq import gptq_block, gptq_block_compare, gptq_block_ref
    from golf_fast.quant.recipe import RECORD_RECIPE

    sizes = [(37, 101)] if smoke else [(1, 1), (37, 101), (136, 2101), (512, 4096), (130, 3000), (2048, 70000)]
    for dtype in (torch.bfloat16, torch.float16):
        for k, t in sizes:
            def run(k=k, t=t, dtype=dtype):
                h0 = c.randn(k, k)
                e, symmetric, deterministic = hessian_vs_f64(c.randn(t, k, dtype=dtype), h0 @ h0.T)
                return e <= 1e-5 and symmetric and deterministic, {"rel_err": f"{e:.2e}"}
            c.case("hessian", f"{str(dtype)[6:]} K={k} T={t}", run)
    for nb, n, bs in ([(2, 37, 16)] if smoke else [(3, 300, 128), (1, 8192, 128), (2, 37, 64), (11, 512, 128)]):
        def gq(nb=nb, n=n, bs=bs):
            x = torch.randn(4 * bs, bs, generator=c.gen)
            h = x.T @ x / x.shape[0] + 0.01 * torch.eye(bs)
            u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h.double())), upper=True).float()
            w = torch.randn(nb, n, bs, generator=c.gen)
            s = (RECORD_RECIPE.default_clip_sigmas * w.std(dim=-1) / 31).half().float()
            args = (w.to(c.dev), u.expand(nb, bs, bs).contiguous().to(c.dev), s.to(c.dev), 31)
            problem = gptq_block_compare(gptq_block(*args), gptq_block_ref(*args))
            return problem is None, {"problem": problem}
        c.case("gptq_block", f"B={nb} N={n} bs={bs}", gq)


def check_mlp_and_ce(c: Checker, smoke: bool) -> None:
    """Fused LeakyReLU(0.5)² MLP (forward and the three gradients) and softcapped cross-entropy
    (loss and gradient) against float64, next to eager PyTorch in the same dtype: the kernel passes
    when its error is at most 2× eager's + a small floor (both round to bf16 at the same places)."""
    import torch.nn.functional as F

    import golf_fast
    from golf_fast.ops.fused_mlp import leaky_relu_square_mlp_ref
    from golf_fast.ops.softcapped_ce import softcapped_cross_entropy_ref

    def mlp(m, k, h, dtype):
        x = c.randn(m, k, dtype=dtype)
        w_up, w_down = (c.randn(h, k) * k ** -0.5).to(dtype), (c.randn(k, h) * h ** -0.5).to(dtype)
        g = c.randn(m, k, dtype=dtype)

        def fwd_bwd(fn, ts):
            ts = [t.detach().clone().requires_grad_(True) for t in ts]
            out = fn(*ts)
            out.backward(g.to(out.dtype))
            return [out.detach()] + [t.grad for t in ts]

        ours = fwd_bwd(lambda a, b, d: golf_fast.leaky_relu_square_mlp(a, b, d, 0.5), (x, w_up, w_down))
        eager = fwd_bwd(lambda a, b, d: leaky_relu_square_mlp_ref(a, b, d, 0.5), (x, w_up, w_down))
        exact = fwd_bwd(lambda a, b, d: F.linear(F.leaky_relu(F.linear(a, b), 0.5).square(), d),
                        (x.double(), w_up.double(), w_down.double()))
        info, ok = {}, True
        for name, o, e, r in zip(("out", "dx", "dw_up", "dw_down"), ours, eager, exact):
            e_k, e_e = rel(o, r), rel(e, r)
            ok = ok and e_k <= 2 * e_e + 1e-4
            info[name] = f"{e_k:.2e} (eager {e_e:.2e})"
        return ok, info

    def ce(n, v, dtype):
        z = (c.randn(n, v) * 20).to(dtype)
        t = torch.randint(0, v, (n,), generator=c.gen).to(c.dev)

        def loss_grad(fn, zz):
            zz = zz.detach().clone().requires_grad_(True)
            loss = fn(zz)
            loss.sum().backward()
            return loss.detach(), zz.grad

        ours = loss_grad(lambda zz: golf_fast.softcapped_cross_entropy(zz, t, 30.0, reduction="none"), z)
        eager = loss_grad(lambda zz: softcapped_cross_entropy_ref(zz, t, 30.0, reduction="none"), z)
        exact = loss_grad(lambda zz: F.cross_entropy(30.0 * torch.tanh(zz / 30.0), t, reduction="none"), z.double())
        info, ok = {}, True
        for name, o, e, r in zip(("loss", "grad"), ours, eager, exact):
            e_k, e_e = rel(o, r), rel(e, r)
            ok = ok and e_k <= 2 * e_e + 1e-5
            info[name] = f"{e_k:.2e} (eager {e_e:.2e})"
        return ok, info

    mlp_shapes = [(37, 40, 72)] if smoke else [(1, 512, 2048), (4099, 512, 2048), (16384, 512, 2048)]
    ce_shapes = [(5, 300)] if smoke else [(1, 8192), (513, 8192), (7, 5003), (16384, 8192)]
    for dtype in ((torch.bfloat16,) if not smoke else (torch.float16,)):
        for m, k, h in mlp_shapes:
            c.case("fused_mlp", f"{str(dtype)[6:]} M={m} {k}->{h}->{k} fwd+bwd", lambda m=m, k=k, h=h, d=dtype: mlp(m, k, h, d))
        for n, v in ce_shapes:
            c.case("softcapped_ce", f"{str(dtype)[6:]} N={n} V={v} loss+grad", lambda n=n, v=v, d=dtype: ce(n, v, d))


def check_selfchecks_under_tf32(c: Checker) -> None:
    """Every self-check with TF32 on, as the trainer and parameter-golf scripts set it."""
    from golf_fast.ops import dispatch
    from golf_fast.ops import int6_matmul as im
    from golf_fast.ops import newton_schulz as ns
    from golf_fast.ops.hessian import HESSIAN_OP
    from golf_fast.ops.newton_schulz_kernels import LARGE_TILES, SMALL_TILES

    def run():
        old = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
        torch.set_float32_matmul_precision("high")
        torch.backends.cuda.matmul.allow_tf32 = True
        bad = []
        try:
            for dt in (torch.bfloat16, torch.float16):
                for tile in im.SHIPPED_TILES:
                    for split in ((1, 2) if tile.kernel == "gemv" else (1,)):
                        for cls in (im.launch_class(1, 512, 512, False, 0), im.launch_class(37, 45, 600, True, 3)):
                            try:
                                im.selfcheck_tile(tile, split, dt, c.dev, cls=cls)
                            except dispatch.KernelSelfCheckError as e:
                                bad.append(str(e)[:1200])
                HESSIAN_OP.selfcheck(HESSIAN_OP.resolve(c.dev.type), c.dev, dt)
            for tiles in (SMALL_TILES, LARGE_TILES):
                for dt in (torch.bfloat16, torch.float16, torch.float32):
                    try:
                        ns.selfcheck_tiles(tiles, dt, c.dev)
                    except dispatch.KernelSelfCheckError as e:
                        bad.append(str(e)[:1200])
        finally:
            torch.set_float32_matmul_precision(old[0])
            torch.backends.cuda.matmul.allow_tf32 = old[1]
        return not bad, {"failures": bad[:6], "n_bad": len(bad)}

    c.case("selfcheck", "every int6 tile/split/class, NS tile sets × dtypes, Hessian, under TF32", run)


def check_large_offsets(c: Checker) -> None:
    """Index arithmetic past 2^31 elements (int32 overflow)."""
    from golf_fast.ops import int6_matmul as im
    from golf_fast.ops.hessian import hessian_accumulate_
    from golf_fast.ops.int6_pack import pack_int6, pack_int6_ref, unpack_int6

    def int6(m, n, k):
        x = torch.randn(m, k, device=c.dev, dtype=torch.bfloat16)
        codes, scales = c.codes(n, k), c.scales(n)
        out = im.int6_linear(x, pack_int6(codes), scales)
        rows = torch.cat([torch.arange(64), torch.arange(m - 64, m)]).to(c.dev)
        problem = im.within_output_rounding(out[rows], int6_ref64(x[rows], codes, scales).to(x.dtype))
        return problem is None, {"problem": problem}

    def pack():
        n, k = (1 << 20) + 3, 2100
        codes = torch.randint(-31, 32, (n, k), dtype=torch.int8, device=c.dev)
        p = pack_int6(codes)
        tail = slice(n - 50, n)
        return torch.equal(p[tail], pack_int6_ref(codes[tail])) and torch.equal(unpack_int6(p, k)[tail], codes[tail])

    def hessian():
        x = torch.randn(1_100_000, 2048, device=c.dev, dtype=torch.bfloat16)
        h = torch.zeros(2048, 2048, device=c.dev)
        hessian_accumulate_(h, x)
        e = rel(h, x.double().T @ x.double())
        return e <= 1e-5, {"rel_err": f"{e:.2e}"}

    for name, fn in (("int6 x offsets > 2^31 (M=1.05M, K=2048)", lambda: int6(1_050_000, 512, 2048)),
                     ("int6 out offsets > 2^31 (M=600k, N=4096)", lambda: int6(600_000, 4096, 512)),
                     ("pack/unpack > 2^31 codes", pack), ("hessian T*K > 2^31", hessian)):
        c.case("int32 overflow", name, fn)
        torch.cuda.empty_cache()


def check_costs(c: Checker, smoke: bool) -> None:
    import golf_fast
    from golf_fast.ops.hessian import hessian_accumulate_
    from golf_fast.ops.int6_pack import pack_int6_ref
    from golf_fast.ops.newton_schulz import newton_schulz

    d = 64 if smoke else 512
    codes, scales = c.codes(d, d), c.scales(d)
    packed = pack_int6_ref(codes)
    x1, x64 = c.randn(1, d, dtype=torch.bfloat16), c.randn(64, d, dtype=torch.bfloat16)
    g = c.randn(3, d, d)
    h, xh = torch.zeros(d, d, device=c.dev), c.randn(2048, d, dtype=torch.bfloat16)
    calls = {f"newton_schulz (3,{d},{d})": lambda: newton_schulz(g),
             f"int6_linear M=1 {d}x{d}": lambda: golf_fast.int6_linear(x1, packed, scales),
             f"int6_linear M=64 {d}x{d}": lambda: golf_fast.int6_linear(x64, packed, scales),
             f"hessian K={d} T=2048": lambda: hessian_accumulate_(h, xh)}

    def first_calls():
        out = {}
        for name, fn in calls.items():
            t0 = time.perf_counter(); fn(); c.sync(); t1 = time.perf_counter(); fn(); c.sync(); t2 = time.perf_counter()
            out[name] = f"first {t1 - t0:.2f}s, second {1e3 * (t2 - t1):.2f}ms"
        return None, out

    def overhead():
        out = {}
        reps = 2 if smoke else 200
        for name, fn in calls.items():
            fn(); c.sync()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            t_host = (time.perf_counter() - t0) / reps
            c.sync()
            out[name] = f"host enqueue {1e6 * t_host:.0f}us, wall {1e6 * (time.perf_counter() - t0) / reps:.0f}us/call"
        return None, out

    c.case("cost", "first call (compile + self-check) vs second", first_calls)
    c.case("cost", "host overhead per call", overhead)


def check_capture(c: Checker) -> None:
    def run():
        r = subprocess.run([sys.executable, "-c", CAPTURE_SCRIPT], capture_output=True, text=True, timeout=180)
        lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("CAPTURE_")]
        ok = any(ln.startswith("CAPTURE_REFUSED_CLEARLY") for ln in lines) and \
            any(ln.startswith("CAPTURE_AFTER_PRECHECK_OK True") for ln in lines)
        return ok, {"result": " | ".join(lines)[:400] or (r.stdout + r.stderr)[-400:]}

    c.case("cuda graph", "first call inside capture is refused clearly; capture after a precheck works", run)


def run_kernel_check(out: str, budget_s: float = 170.0, smoke: bool = False) -> int:
    """Every kernel against float64 into ``out/kernel_check.jsonl`` (``smoke``: tiny shapes on the CPU
    under TRITON_INTERPRET=1). 0 when no case failed, 1 otherwise, 2 without a device."""
    if smoke:
        os.environ["TRITON_INTERPRET"] = "1"
    elif not torch.cuda.is_available():
        print("no CUDA device: run with --smoke for the CPU dry run", file=sys.stderr)
        return 2
    import golf_fast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c = Checker(out, budget_s, torch.device("cpu" if smoke else "cuda"))
    print(golf_fast.status(), flush=True)
    if c.dev.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        print(f"device: {props.name}, {props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB", flush=True)
    # one case of everything first, the long sweeps (int6 tiles) last: a budget cut falls on them
    check_costs(c, smoke)
    if not smoke:
        check_selfchecks_under_tf32(c)
        check_capture(c)
    check_mlp_and_ce(c, smoke)
    check_newton_schulz(c, smoke)
    check_hessian_and_gptq(c, smoke)
    if not smoke:
        check_large_offsets(c)
    check_int6(c, smoke)
    n_fail = sum(r["ok"] is False for r in c.results)
    n_pass = sum(r["ok"] is True for r in c.results)
    print(f"\nkernel check: {n_pass} passed, {n_fail} failed, {len(c.results) - n_pass - n_fail} info/skipped")
    for r in c.results:
        if r["ok"] is False:
            print("FAILED:", r["group"], r["case"], r.get("error") or r.get("problem") or r.get("failures") or "")
    return 1 if n_fail else 0

