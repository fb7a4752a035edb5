"""Self-checks that a user's settings cannot fail and that cover what actually runs: references at full
fp32 precision whatever the TF32 settings (simulated here), every int6 launch class, several
Newton-Schulz tiles in every dtype, no random state moved, no check inside CUDA-graph capture."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.overrides import TorchFunctionMode

from golf_fast.ops import dispatch
from golf_fast.ops import int6_matmul as im
from golf_fast.ops import int6_matmul_kernels as imk
from golf_fast.ops import newton_schulz as ns
from golf_fast.ops.dispatch import (KernelOp, KernelSelfCheckError, SelfCheckDuringCaptureError, precise_reference,
                                    relative_error_within, seeded_cpu_inputs)
from golf_fast.ops.newton_schulz_kernels import LARGE_TILES, SMALL_TILES


def _round_to_tf32(t: torch.Tensor) -> torch.Tensor:
    """Round fp32 to TF32 (10 explicit mantissa bits, round to nearest) as tensor cores do."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


class SimulatedTF32(TorchFunctionMode):
    """fp32 matmuls round their inputs to TF32 unless the float32 matmul precision is "highest" and
    ``torch.backends.cuda.matmul.allow_tf32`` is off: what a GPU does with TF32 turned on."""

    OPS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.bmm,
           torch.nn.functional.linear}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tf32 = torch.get_float32_matmul_precision() != "highest" or torch.backends.cuda.matmul.allow_tf32
        if func in self.OPS and tf32:
            args = tuple(_round_to_tf32(a) if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a
                         for a in args)
        return func(*args, **kwargs)


@pytest.fixture
def tf32_on():
    old = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision("high")  # what parameter-golf scripts set
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with SimulatedTF32():
            yield
    finally:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cuda.matmul.allow_tf32 = old[1]


def _exact_launch(x2, packed, scales, bias, lowrank_a, lowrank_b, tile, split):
    """A correct kernel: exact fp32 products, fp32 accumulation (what the Triton tiles compute)."""
    with precise_reference():
        return im.int6_linear_ref(x2, packed, scales, bias, lowrank_a, lowrank_b)


def test_simulated_tf32_fails_the_old_int6_check_and_not_the_new_one(tf32_on, monkeypatch):
    monkeypatch.setattr(im, "_launch", _exact_launch)
    failures_old = 0
    for dtype, tile in itertools.product((torch.float16, torch.bfloat16), (imk.GEMV_M16, imk.GEMM_MID)):
        gen = torch.Generator().manual_seed(4301)
        m, n, k = 16, 45, 600
        codes = torch.randint(-31, 32, (n, k), dtype=torch.int8, generator=gen)
        scales = (torch.rand(n, generator=gen) * 0.02 + 0.001).to(torch.float16)
        args = (torch.randn(m, k, generator=gen).to(dtype), im.pack_int6_ref(codes), scales,
                torch.randn(n, generator=gen).to(dtype), torch.randn(n, 3, generator=gen), torch.randn(3, k, generator=gen))
        out = _exact_launch(*args, tile, 1)
        old_problem = im.within_output_rounding(out, im.int6_linear_ref(*args))  # reference at the user's TF32
        failures_old += old_problem is not None
        im.selfcheck_tile(tile, 1, dtype, torch.device("cpu"))  # the new check passes
    assert failures_old >= 1  # fp16 at least: the old check stops a correct run
    assert torch.get_float32_matmul_precision() == "high"  # the user's setting is back


def test_the_op_level_reference_runs_at_full_precision(tf32_on):
    gen = torch.Generator().manual_seed(4302)
    w = torch.randn(64, 64, generator=gen)

    def ref(x: torch.Tensor) -> torch.Tensor:
        return x @ w

    op = KernelOp("_test_tf32_selfcheck", ref, fake=lambda x: torch.empty_like(x),
                  selfcheck_inputs=lambda dev, dt: (torch.randn(8, 64, device=dev, dtype=dt),),
                  compare=relative_error_within(1e-6))
    correct = dispatch.Backend("k", "cuda", lambda x: _exact_matmul(x, w), dispatch.always_available, True)
    x = torch.randn(8, 64, generator=gen)
    assert op.compare(_exact_matmul(x, w), ref(x)) is not None  # the reference under TF32: a false alarm
    op.selfcheck(correct, torch.device("cpu"), torch.float32)  # passes: the reference ran at "highest"


def _exact_matmul(x, w):
    with precise_reference():
        return x @ w


def test_selfcheck_inputs_come_from_the_cpu_and_leave_the_random_state(monkeypatch):
    seen = []

    def make(dev, dt):
        seen.append(dev)
        return (torch.randn(4, dtype=dt, device=dev), 3)

    state = torch.random.get_rng_state()
    a = seeded_cpu_inputs(make, torch.device("meta"), torch.float32)
    b = seeded_cpu_inputs(make, torch.device("cpu"), torch.float32)
    assert seen == [torch.device("cpu")] * 2  # never drawn on the GPU: its random state cannot move
    assert a[0].device.type == "meta" and a[1] == 3
    assert torch.equal(b[0], seeded_cpu_inputs(make, torch.device("cpu"), torch.float32)[0])  # fixed seed
    assert torch.equal(torch.random.get_rng_state(), state)


def _plus_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1


def test_a_first_call_inside_cuda_graph_capture_is_refused_and_a_precheck_avoids_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    cuda = torch.device("cuda", 0)
    with pytest.raises(SelfCheckDuringCaptureError, match="before capturing"):
        dispatch.refuse_selfcheck_in_capture("x", cuda)
    dispatch.refuse_selfcheck_in_capture("x", torch.device("cpu"))  # not CUDA: nothing to refuse
    op = KernelOp("_test_capture_selfcheck", _plus_one, fake=lambda x: torch.empty_like(x),
                  selfcheck_inputs=lambda dev, dt: (torch.ones(2, device=dev, dtype=dt),))
    kern = dispatch.Backend("k", "cuda", lambda x: x + 1, dispatch.always_available, True)
    with pytest.raises(SelfCheckDuringCaptureError):
        op.selfcheck(kern, cuda, torch.float32)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    dispatch._registry.checked.add((op.name, "k", str(cuda), str(torch.float32)))  # as a precheck leaves it
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    op.selfcheck(kern, cuda, torch.float32)  # already checked: nothing runs during capture
    cls = im.launch_class(1, 512, 512, False, 0)
    with pytest.raises(SelfCheckDuringCaptureError):
        im.ensure_tile_checked(imk.GEMV_M16, 1, torch.bfloat16, cuda, cls)
    with pytest.raises(SelfCheckDuringCaptureError):
        ns.ensure_tiles_checked(SMALL_TILES, torch.bfloat16, cuda)


# --------------------------------------------------------------------------- int6: every launch class

RECORD_SHAPES = [(m, n, k) for m in (1, 7, 16, 48, 64, 100, 2048, 98304) for n, k in
                 ((512, 512), (256, 512), (1536, 512), (2048, 512), (512, 2048), (8192, 512), (45, 600))]


def test_check_dims_reproduce_every_launch_class_of_every_tile():
    for (m, n, k), bias, rank in itertools.product(RECORD_SHAPES, (False, True), (0, 4)):
        tile, _ = im.select_config(m, n, k)
        cls = im.launch_class(m, n, k, bias, rank)
        cm, cn, ck = im.check_dims(tile, cls)
        assert im.launch_class(cm, cn, ck, bias, rank) == cls, (m, n, k, tile)
        assert cm <= 64 if tile.kernel == "gemv" else cm > 64  # the tile's own regime
        assert ck < 700 and cn <= 48  # small problems


def test_the_launcher_checks_the_class_of_its_own_call(monkeypatch):
    seen = []
    monkeypatch.setattr(im, "selfcheck_tile", lambda tile, split, dtype, device, cls: seen.append((tile, cls)))
    monkeypatch.setattr(im, "_CHECKED_TILES", set())
    for m, n, k, bias in ((1, 512, 512, False), (16, 512, 512, False), (1, 512, 512, True), (7, 45, 600, False)):
        im.ensure_tile_checked(imk.GEMV_M16, 1, torch.float16, torch.device("cpu"),
                               im.launch_class(m, n, k, bias, 0))
    im.ensure_tile_checked(imk.GEMV_M16, 1, torch.float16, torch.device("cpu"), im.launch_class(1, 512, 512, False, 0))
    assert len(seen) == 4 and len({c for _, c in seen}) == 4  # one check per class, each once


@pytest.mark.interpreter
@pytest.mark.parametrize("tile,split,shape,bias,rank", [
    (imk.GEMV_M16, 2, (1, 512, 512), False, 0),
    (imk.GEMV_M64, 1, (33, 45, 600), True, 4),
    (imk.GEMM_MID, 1, (128, 512, 512), False, 0),
], ids=["gemv16-split-aligned", "gemv64-tails-epilogue", "gemm-mid-aligned"])
def test_selfcheck_tile_runs_the_real_launch_class_in_the_interpreter(triton_interpret, tile, split, shape, bias,
                                                                       rank):
    cls = im.launch_class(*shape, bias, rank)
    im.selfcheck_tile(tile, split, torch.float16, torch.device("cpu"), cls=cls)


# --------------------------------------------------------------------------- Newton-Schulz: several tiles, dtypes


def _ns_fp32(g, drop_mirror=False, syrk=64):
    """Newton-Schulz in fp32; ``drop_mirror`` zeroes one mirrored tile of A = X·Xᵀ (a plausible bug)."""
    x = g.mT.float()
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in ns.POLAR_EXPRESS:
        A = x @ x.mT
        if drop_mirror:
            A[..., :syrk, syrk:2 * syrk] = 0
        B = b * A + c * (A @ A)
        x = a * x + B @ x
    return x.mT


@pytest.mark.parametrize("tiles", [SMALL_TILES, LARGE_TILES], ids=["small", "large"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_ns_selfcheck_covers_several_tiles_and_rejects_a_dropped_mirror_tile(tiles, dtype):
    b, r, c = ns.selfcheck_problem(tiles)
    assert c >= 2 * tiles.syrk + 1 and r > c  # three row tiles of A (off-diagonal and mirrored), transposed path
    ns.selfcheck_tiles(tiles, dtype, torch.device("cpu"), kernel=lambda g: _ns_fp32(g).to(dtype))
    with pytest.raises(KernelSelfCheckError, match="2 × eager"):
        ns.selfcheck_tiles(tiles, dtype, torch.device("cpu"),
                           kernel=lambda g: _ns_fp32(g, drop_mirror=True, syrk=tiles.syrk).to(dtype))


@pytest.mark.interpreter
def test_ns_selfcheck_passes_the_triton_kernel_in_the_interpreter(triton_interpret):
    ns.selfcheck_tiles(SMALL_TILES, torch.float32, torch.device("cpu"))


def test_precheck_runs_the_selfcheck_before_capture(monkeypatch):
    real = dispatch.seeded_cpu_inputs
    monkeypatch.setattr(dispatch, "seeded_cpu_inputs",  # keep the inputs on the CPU: no GPU here
                        lambda make, device, dtype, seed=1234: real(make, torch.device("cpu"), dtype, seed))
    ran = []
    op = KernelOp("_test_precheck", _plus_one, fake=lambda x: torch.empty_like(x),
                  selfcheck_inputs=lambda dev, dt: (torch.ones(2, device=dev, dtype=dt),))
    op.add_backend("k", "cuda", lambda x: (ran.append(x.dtype), x + 1)[1])
    cuda = torch.device("cuda", 0)
    assert op.precheck(torch.device("cpu"), [torch.float32]) == []
    assert op.precheck(cuda, [torch.float32, torch.float16]) == [f"{op.name}:k:torch.float32",
                                                                   f"{op.name}:k:torch.float16"]
    assert ran == [torch.float32, torch.float16]
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    op.selfcheck(op.resolve("cuda"), cuda, torch.float16)  # checked before capture: nothing runs now
    assert len(ran) == 2
