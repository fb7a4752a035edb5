"""Newton-Schulz: references against float64, the Triton kernels in the interpreter, sm_90 compiles."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import golf_fast
from golf_fast.ops import newton_schulz as nst
from golf_fast.ops import newton_schulz_kernels as nsk
from golf_fast.ops.newton_schulz_kernels import SHIPPED_CONFIGS
from golf_fast.ops.newton_schulz import (
    NS_OP,
    POLAR_EXPRESS,
    SELFCHECK_TOLERANCE,
    newton_schulz,
    newton_schulz_f64,
    newton_schulz_ref,
    resolve_coefficients,
)
from conftest import requires_cuda

COEFFS = ("polar_express", "quintic")
# Tiles small enough that the interpreter's odd shapes span several tiles (tails, mirrors).
TINY = nsk.NSTiles(elementwise_r=16, elementwise_c=32, syrk=16, syrk_k=16, update_m=16, update_n=32, update_k=16)
MID = nsk.NSTiles(elementwise_r=32, elementwise_c=64, syrk=32, syrk_k=32, update_m=32, update_n=64, update_k=32)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x.double() - ref).norm() / ref.norm())


def ill_conditioned(batch: int, rows: int, cols: int, cond: float = 1e4) -> torch.Tensor:
    """Random singular vectors, singular values spread log-uniformly over ``cond``."""
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(batch, rows, k, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(batch, cols, k, dtype=torch.float64))
    s = torch.logspace(0, -torch.log10(torch.tensor(cond)).item(), k, dtype=torch.float64)
    return (u * s[None, None, :]) @ v.mT


def flat(coefficients: str, steps: int = 5) -> list[float]:
    return [v for t in resolve_coefficients(steps, coefficients) for v in t]


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize("coefficients", COEFFS)
def test_f64_reference_orthogonalizes(coefficients):
    """The float64 iteration keeps G's singular vectors and maps its singular values near 1."""
    torch.manual_seed(2101)
    G = torch.randn(3, 48, 80, dtype=torch.float64)
    out = newton_schulz_f64(G, coefficients=coefficients)
    u, s, vh = torch.linalg.svd(G, full_matrices=False)
    core = u.mT @ out @ vh.mT  # diagonal iff the singular vectors are preserved
    diag = torch.diagonal(core, dim1=-2, dim2=-1)
    assert float((core - torch.diag_embed(diag)).norm() / core.norm()) < 1e-10
    assert float(diag.min()) > 0.6 and float(diag.max()) < 1.25


def test_f64_reference_one_step_by_hand():
    torch.manual_seed(2102)
    G = torch.randn(5, 7, dtype=torch.float64)
    a, b, c = POLAR_EXPRESS[0]
    X = G / (G.norm() + 1e-7)
    A = X @ X.T
    expect = a * X + (b * A + c * A @ A) @ X
    torch.testing.assert_close(newton_schulz_f64(G, steps=1), expect, rtol=1e-12, atol=1e-12)


def test_reference_tall_is_transpose_of_wide():
    torch.manual_seed(2103)
    G = torch.randn(2, 40, 24, dtype=torch.float64)
    torch.testing.assert_close(newton_schulz_f64(G), newton_schulz_f64(G.mT.contiguous()).mT, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("coefficients", COEFFS)
def test_reference_float32_close_to_float64(coefficients):
    torch.manual_seed(2104)
    G = torch.randn(2, 64, 96)
    assert rel_err(newton_schulz_ref(G, coefficients=coefficients, dtype=torch.float32),
                   newton_schulz_f64(G, coefficients=coefficients)) < 1e-4


def test_zero_input_gives_zero_reference():
    for dt in (torch.bfloat16, torch.float64):
        out = newton_schulz_ref(torch.zeros(3, 16, 24), dtype=dt)
        assert out.dtype == dt and torch.equal(out, torch.zeros_like(out))
    out = newton_schulz(torch.zeros(2, 8, 8))  # CPU auto: reference
    assert not torch.isnan(out).any() and torch.equal(out.float(), torch.zeros(2, 8, 8))


def test_coefficient_lists_and_steps():
    torch.manual_seed(2106)
    assert resolve_coefficients(3, "quintic") == [(3.4445, -4.7750, 2.0315)] * 3
    assert resolve_coefficients(2, "polar_express") == [tuple(t) for t in POLAR_EXPRESS[:2]]
    custom = [(2.0, -1.5, 0.5), (1.5, -0.5, 0.25), (9.0, 9.0, 9.0)]
    G = torch.randn(6, 9, dtype=torch.float64)
    X = G / (G.norm() + 1e-7)
    for a, b, c in custom[:2]:
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    torch.testing.assert_close(newton_schulz_f64(G, 2, custom), X, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad, kwargs, exc, words", [
    (torch.arange(12).reshape(3, 4), {}, TypeError, "G: expected a floating-point"),
    (torch.randn(5), {}, ValueError, "G: expected a 2-D"),
    ([[1.0, 2.0]], {}, TypeError, "G: expected a torch.Tensor"),
    (torch.randn(4, 4), {"steps": 0}, ValueError, "steps"),
    (torch.randn(4, 4), {"steps": 6}, ValueError, "steps: 'polar_express' defines 5"),
    (torch.randn(4, 4), {"coefficients": "cubic"}, ValueError, "coefficients"),
    (torch.randn(4, 4), {"coefficients": [(1.0, 2.0)], "steps": 1}, ValueError, "coefficients"),
    (torch.randn(4, 4), {"coefficients": [(1.0, 2.0, 3.0)], "steps": 2}, ValueError, "steps"),
    (torch.randn(4, 4), {"eps": -1.0}, ValueError, "eps"),
    (torch.randn(4, 4), {"dtype": torch.int32}, ValueError, "dtype"),
])
def test_bad_input_is_a_clear_error(bad, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        newton_schulz(bad, **kwargs)


def test_public_export_and_cpu_backend():
    torch.manual_seed(2108)
    assert golf_fast.newton_schulz is newton_schulz
    G = torch.randn(2, 12, 20)
    assert torch.equal(newton_schulz(G), newton_schulz_ref(G))  # CPU auto resolves to the reference
    assert NS_OP.resolve("cpu").name == "reference"


def _ns_float64(G: torch.Tensor, coeffs, eps: float = 1e-7) -> torch.Tensor:
    """The iteration written out in float64 here (independent of the package's code)."""
    X = G.double()
    tall = X.shape[-2] > X.shape[-1]
    X = X.mT if tall else X
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    for a, b, c in coeffs:
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    return X.mT if tall else X


def test_opcheck_and_compile():
    """The compiled op against float64 math: bf16 error 0.05-0.06 (relative Frobenius); one step
    fewer (the plausible wrong answer) is 0.39 away, outside the 0.12 bound."""
    torch.manual_seed(2101)
    G = torch.randn(2, 16, 24)
    torch.library.opcheck(NS_OP.torch_op, (G, flat("polar_express"), 1e-7, torch.bfloat16))
    compiled = torch.compile(lambda g: newton_schulz(g), fullgraph=True, backend="eager")
    out = compiled(G)
    exact = _ns_float64(G, POLAR_EXPRESS)
    assert out.shape == G.shape and out.dtype == torch.bfloat16
    assert rel_err(out, exact) < 0.12
    assert rel_err(_ns_float64(G, POLAR_EXPRESS[:4]), exact) > 0.12


# --------------------------------------------------------------------------- kernels, interpreter


@pytest.mark.interpreter
@pytest.mark.parametrize("shape", [(1, 5), (37, 53), (53, 37), (2, 33, 33)])
def test_kernel_odd_shapes_tiny_tiles(triton_interpret, shape):
    """Tails, M=1, tall (transposed) and batched inputs over several 16-wide tiles."""
    torch.manual_seed(2110)
    G = torch.randn(shape)
    out = nst.newton_schulz_triton(G, flat("polar_express"), 1e-7, torch.bfloat16, tiles=TINY)
    assert out.shape == G.shape and out.dtype == torch.bfloat16
    ref64 = newton_schulz_f64(G)
    assert rel_err(out, ref64) <= 2 * rel_err(newton_schulz_ref(G), ref64)


@pytest.mark.interpreter
@pytest.mark.parametrize("coefficients", COEFFS)
@pytest.mark.parametrize("kind", ["random", "ill_conditioned"])
def test_kernel_error_at_most_twice_eager(triton_interpret, coefficients, kind):
    """DESIGN.md: against float64, the kernel's error <= 2 x eager bf16 PyTorch's."""
    torch.manual_seed(2111)
    G = torch.randn(2, 64, 96) if kind == "random" else ill_conditioned(2, 64, 96).float()
    out = newton_schulz(G, coefficients=coefficients, backend="triton")
    ref64 = newton_schulz_f64(G, coefficients=coefficients)
    e_kernel, e_eager = rel_err(out, ref64), rel_err(newton_schulz_ref(G, coefficients=coefficients), ref64)
    assert e_kernel <= 2 * e_eager, (e_kernel, e_eager)


@pytest.mark.interpreter
def test_syrk_kernel_both_triangles_exact_fp32(triton_interpret):
    """A = X·Xᵀ and B = b·A + c·A·A from lower-triangle tiles only: every entry written, right."""
    torch.manual_seed(2112)
    ws = nst.NSWorkspace(x=(torch.randn(2, 37, 21), torch.empty(0)), a=torch.full((2, 37, 37), float("nan")),
                         b=torch.full((2, 37, 37), float("nan")), partials=torch.empty(0))
    t = -(-37 // 16)
    x, a, b = ws.x[0], ws.a, ws.b
    nsk._ns_syrk_kernel[(t * (t + 1) // 2, 2)](x, x, a, 37, 21, 1.0, 0.0, *x.stride()[:2], *x.stride()[:2],
                                               *a.stride()[:2], ADD_C=False, BLOCK=16, BLOCK_K=16)
    torch.testing.assert_close(a, x @ x.mT, rtol=1e-5, atol=1e-5)
    nsk._ns_syrk_kernel[(t * (t + 1) // 2, 2)](a, a, b, 37, 37, 0.5, -1.25, *a.stride()[:2], *a.stride()[:2],
                                               *b.stride()[:2], ADD_C=True, BLOCK=16, BLOCK_K=16)
    torch.testing.assert_close(b, -1.25 * a + 0.5 * a @ a, rtol=1e-5, atol=1e-4)


@pytest.mark.interpreter
def test_update_kernel_exact_fp32_transposed_store(triton_interpret):
    torch.manual_seed(2113)
    B, X = torch.randn(2, 19, 19), torch.randn(2, 19, 45)
    out = torch.empty(2, 45, 19)  # tall destination: written through swapped strides
    nsk._ns_update_kernel[(2 * 2, 2)](B, X, out, 19, 45, 1.75, *B.stride()[:2], *X.stride()[:2],
                                      out.stride(0), out.stride(2), out.stride(1),
                                      BLOCK_M=16, BLOCK_N=32, BLOCK_K=16)
    torch.testing.assert_close(out, (1.75 * X + B @ X).mT, rtol=1e-5, atol=1e-5)


@pytest.mark.interpreter
def test_kernel_zero_input_and_dtypes(triton_interpret):
    torch.manual_seed(2114)
    z = newton_schulz(torch.zeros(2, 20, 12), backend="triton")
    assert torch.equal(z.float(), torch.zeros(2, 20, 12))
    G = torch.randn(3, 18, 26)
    out16 = newton_schulz(G, dtype=torch.float16, backend="triton")
    out32 = newton_schulz(G, dtype=torch.float32, backend="triton")
    ref64 = newton_schulz_f64(G)
    assert out16.dtype == torch.float16 and rel_err(out16, ref64) < 0.02
    assert out32.dtype == torch.float32 and rel_err(out32, ref64) < 1e-4
    # non-contiguous (transposed view) and 4-D stacks
    Gt = torch.randn(2, 26, 18).mT
    torch.testing.assert_close(newton_schulz(Gt, dtype=torch.float32, backend="triton"),
                               newton_schulz_ref(Gt, dtype=torch.float32), rtol=1e-4, atol=1e-4)
    G4 = torch.randn(2, 2, 9, 13)
    assert newton_schulz(G4, backend="triton").shape == G4.shape


class _AllocationRecorder(TorchDispatchMode):
    """Records tensor allocations made by the launcher code (not inside a kernel launch).

    Under the interpreter a "launch" runs the kernel body in numpy/torch on the host; on a GPU it
    is one asynchronous launch that allocates nothing, so launches are paused out of the record.
    """

    FACTORIES = ("empty", "zeros", "ones", "full", "new_", "clone", "_to_copy", "rand", "cat", "stack")

    def __init__(self):
        super().__init__()
        self.allocations = []
        self.launches = 0
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if not self.paused and any(name.startswith(f) for f in self.FACTORIES):
            self.allocations.append(name)
        return out

    def wrap(self, kernel):
        recorder = self

        class Launch:
            def __getitem__(self, grid):
                def launch(*args, **kwargs):
                    recorder.launches += 1
                    recorder.paused = True
                    try:
                        return kernel[grid](*args, **kwargs)
                    finally:
                        recorder.paused = False
                return launch

        return Launch()


@pytest.mark.interpreter
def test_iteration_loop_allocates_nothing_and_workspaces_are_reused(triton_interpret, monkeypatch):
    torch.manual_seed(2115)
    G = torch.randn(2, 20, 36)
    first = newton_schulz(G, backend="triton")
    ws = nst.workspace(G.device, torch.bfloat16, 2, 20, 36, 1)
    pointers = (ws.x[0].data_ptr(), ws.a.data_ptr(), ws.b.data_ptr())
    out = torch.empty_like(first)
    nst.prepare(G, ws, 1e-7, nsk.SMALL_TILES)
    rec = _AllocationRecorder()
    monkeypatch.setattr(nst, "_ns_syrk_kernel", rec.wrap(nst._ns_syrk_kernel))
    monkeypatch.setattr(nst, "_ns_update_kernel", rec.wrap(nst._ns_update_kernel))
    with rec:
        nst.iterate(ws, resolve_coefficients(5, "polar_express"), out, tuple(out.stride()), nsk.SMALL_TILES)
    assert rec.launches == 15 and rec.allocations == []
    assert torch.equal(out, first)
    again = nst.workspace(G.device, torch.bfloat16, 2, 20, 36, 1)
    assert again is ws and (ws.x[0].data_ptr(), ws.a.data_ptr(), ws.b.data_ptr()) == pointers


def test_allocation_recorder_sees_allocations():
    """The recorder above is not blind: an allocating loop is caught."""
    torch.manual_seed(2116)
    with _AllocationRecorder() as rec:
        x = torch.randn(4, 4)
        _ = x @ x.mT + torch.zeros(4, 4)
    assert "zeros" in rec.allocations


def test_launch_count():
    assert nst.launches_per_call(5) == 17


# --------------------------------------------------------------------------- sm_90 compiles


@pytest.mark.sm90
@pytest.mark.parametrize("cfg", SHIPPED_CONFIGS, ids=lambda c: c.name)
def test_sm90_compile_no_spills_and_wgmma(sm90_report, cfg):
    report = sm90_report(cfg)
    assert report.ok, report.error
    assert report.local_bytes == 0, f"{cfg.name} spills {report.local_bytes} bytes"
    if cfg.uses_matmul:
        assert report.hgmma > 0, f"{cfg.name} does not use wgmma (HGMMA) on sm_90"


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("shape", [(3, 512, 512), (3, 256, 512), (2, 2048, 512), (2, 512, 2048)])
def test_gpu_kernel_vs_float64_at_record_shapes(shape):
    torch.manual_seed(2119)
    G = torch.randn(shape, device="cuda")
    for coefficients in COEFFS:
        out = newton_schulz(G, coefficients=coefficients)
        ref64 = newton_schulz_f64(G, coefficients=coefficients)
        assert rel_err(out, ref64) <= 2 * rel_err(newton_schulz_ref(G, coefficients=coefficients), ref64)


@pytest.mark.gpu
@requires_cuda
def test_gpu_cuda_graph_capture():
    torch.manual_seed(2120)
    G = torch.randn(3, 512, 512, device="cuda")
    expect = newton_schulz(G)  # warm up: compile, self-check, workspaces
    static_in = G.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        newton_schulz(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = newton_schulz(static_in)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_out, expect)


@pytest.mark.interpreter
def test_selfcheck_passes_on_the_kernel_and_catches_a_broken_one(triton_interpret):
    """The first-use GPU self-check, run here on the interpreter: the kernel passes with margin,
    a kernel that forgets the mirrored tiles of A fails."""
    torch.manual_seed(2121)
    args = NS_OP.selfcheck_inputs(torch.device("cpu"), torch.float32)
    out = nst.newton_schulz_triton(*args, tiles=MID)
    ref = NS_OP.reference(*args)
    assert NS_OP.compare(out, ref) is None
    assert rel_err(out, ref.double()) < SELFCHECK_TOLERANCE / 2

    def no_mirror(x, c, o, M, K, alpha, beta, *strides, ADD_C, BLOCK, BLOCK_K, **kw):
        real_syrk[grid_box[0]](x, c, o, M, K, alpha, beta, *strides, ADD_C=ADD_C, BLOCK=BLOCK,
                               BLOCK_K=BLOCK_K, **kw)
        o.copy_(torch.tril(o))  # what a kernel without the mirrored store would leave

    class Broken:
        def __getitem__(self, grid):
            grid_box[0] = grid
            return no_mirror

    real_syrk, grid_box = nst._ns_syrk_kernel, [None]
    nst._ns_syrk_kernel = Broken()
    try:
        nst.clear_workspaces()
        bad = nst.newton_schulz_triton(*args, tiles=MID)
    finally:
        nst._ns_syrk_kernel = real_syrk
        nst.clear_workspaces()
    assert NS_OP.compare(bad, ref) is not None
