"""The int6 code format in every tier: spec, reference, C++, Triton interpreter, sm_90 compile."""

from __future__ import annotations

import pytest
import torch

import golf_fast
from golf_fast.ops.dispatch import BackendUnavailableError
from golf_fast.ops.int6_pack_kernels import SHIPPED_CONFIGS
from golf_fast.ops.int6_pack import (
    pack_int6_ref,
    packed_row_bytes,
    unpack_int6_ref,
)
from conftest import requires_ext

ODD_SHAPES = [(1, 1), (3, 5), (7, 16), (5, 33), (2, 100), (33, 130), (1, 257)]


def spec_pack(codes: torch.Tensor) -> bytes:
    """The layout written out bit by bit, independently of the reference's tensor ops."""
    out = bytearray()
    for row in codes.tolist():
        kp = -(-len(row) // 16) * 16
        u = [c + 32 for c in row] + [32] * (kp - len(row))
        lo = bytearray(kp // 2)
        hi = bytearray(kp // 4)
        for col, val in enumerate(u):
            for bit in range(6):
                if not (val >> bit) & 1:
                    continue
                if bit < 4:
                    lo[col // 2] |= 1 << (4 * (col % 2) + bit)
                else:
                    hi[col // 4] |= 1 << (2 * (col % 4) + bit - 4)
        out += lo + hi
    return bytes(out)


def random_codes(n: int, k: int) -> torch.Tensor:
    codes = torch.randint(-31, 32, (n, k), dtype=torch.int8)
    if codes.numel() >= 2:  # always include both extremes
        codes.view(-1)[0], codes.view(-1)[-1] = -31, 31
    return codes


@pytest.mark.parametrize("n,k", ODD_SHAPES)
def test_reference_matches_bit_level_spec(n, k):
    torch.manual_seed(6101)
    codes = random_codes(n, k)
    packed = pack_int6_ref(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (n, packed_row_bytes(k))
    assert bytes(packed.flatten().tolist()) == spec_pack(codes)
    assert torch.equal(unpack_int6_ref(packed, k), codes)


def test_every_code_value_round_trips():
    codes = torch.arange(-31, 32, dtype=torch.int8).repeat(3, 1)  # 63 columns, odd
    assert torch.equal(unpack_int6_ref(pack_int6_ref(codes), 63), codes)


def test_packed_row_bytes():
    assert [packed_row_bytes(k) for k in (1, 16, 17, 512, 2048)] == [12, 12, 24, 384, 1536]
    assert packed_row_bytes(512) / 512 == 0.75
    for bad in (0, -3, 2.0, True):
        with pytest.raises(ValueError, match="num_cols"):
            packed_row_bytes(bad)


@requires_ext
@pytest.mark.parametrize("n,k", ODD_SHAPES + [(0, 7)])
def test_cpp_backend_matches_reference(n, k):
    torch.manual_seed(6104)
    codes = random_codes(n, k)
    packed = golf_fast.pack_int6(codes, backend="cpp")
    assert torch.equal(packed, pack_int6_ref(codes))
    assert torch.equal(golf_fast.unpack_int6(packed, k, backend="cpp"), codes)


def test_auto_backend_on_cpu_is_exact_on_noncontiguous_input():
    torch.manual_seed(6105)
    codes = random_codes(40, 24).t()  # (24, 40), column stride != 1
    packed = golf_fast.pack_int6(codes)
    assert torch.equal(packed, pack_int6_ref(codes.contiguous()))
    assert torch.equal(golf_fast.unpack_int6(packed, 40), codes)


@pytest.mark.interpreter
@pytest.mark.parametrize("n,k", ODD_SHAPES + [(0, 5), (70, 3)])
def test_triton_kernels_in_interpreter(triton_interpret, n, k):
    torch.manual_seed(6106)
    codes = random_codes(n, k)
    packed = golf_fast.pack_int6(codes, backend="triton")
    assert torch.equal(packed, pack_int6_ref(codes))
    assert torch.equal(golf_fast.unpack_int6(packed, k, backend="triton"), codes)


@pytest.mark.interpreter
def test_triton_kernels_in_interpreter_noncontiguous(triton_interpret):
    torch.manual_seed(6107)
    codes = random_codes(21, 34).t()
    packed = golf_fast.pack_int6(codes, backend="triton")
    assert torch.equal(packed, pack_int6_ref(codes.contiguous()))
    strided = torch.zeros(34, 2 * packed.shape[1], dtype=torch.uint8)[:, ::2]
    strided.copy_(packed)  # a packed buffer whose rows have stride != row bytes
    assert torch.equal(golf_fast.unpack_int6(strided, 21, backend="triton"), codes.contiguous())


@pytest.mark.sm90
@pytest.mark.parametrize("cfg", SHIPPED_CONFIGS, ids=lambda c: c.name)
def test_shipped_configs_compile_for_sm90_without_spills(sm90_report, cfg):
    report = sm90_report(cfg)
    assert report.ok, report.error
    assert report.local_bytes == 0, f"{cfg.name} spills {report.local_bytes} bytes"
    assert 0 < report.registers <= 255


def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    torch.manual_seed(6109)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    codes = random_codes(4, 8)
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1|Triton"):
        golf_fast.pack_int6(codes, backend="triton")
    # asked-for fallback runs the reference instead
    assert torch.equal(golf_fast.pack_int6(codes, backend="triton", fallback="reference"), pack_int6_ref(codes))


@pytest.mark.parametrize("bad,match", [
    (torch.tensor([[32]], dtype=torch.int8), r"\[-31, 31\]"),
    (torch.tensor([[-32, 0]], dtype=torch.int8), r"\[-31, 31\]"),
    (torch.zeros(2, 3, dtype=torch.int16), "int8"),
    (torch.zeros(2, 3), "int8"),
    (torch.zeros(6, dtype=torch.int8), "2-D"),
    (torch.zeros(2, 3, 4, dtype=torch.int8), "2-D"),
    (torch.zeros(3, 0, dtype=torch.int8), "at least one column"),
])
def test_pack_rejects_bad_codes(bad, match):
    with pytest.raises((ValueError, TypeError), match=match) as info:
        golf_fast.pack_int6(bad)
    assert "codes" in str(info.value)


def test_pack_rejects_non_tensor():
    with pytest.raises(TypeError, match="codes: expected a torch.Tensor"):
        golf_fast.pack_int6([[1, 2]])


def test_unpack_rejects_bad_input():
    torch.manual_seed(6112)
    packed = pack_int6_ref(random_codes(3, 20))
    with pytest.raises(ValueError, match="packed: expected 12 bytes per row for num_cols=16"):
        golf_fast.unpack_int6(packed, 16)
    with pytest.raises(TypeError, match="packed: expected dtype torch.uint8"):
        golf_fast.unpack_int6(packed.to(torch.int8), 20)
    with pytest.raises(ValueError, match="packed: expected a 2-D"):
        golf_fast.unpack_int6(packed.flatten(), 20)
    with pytest.raises(ValueError, match="num_cols"):
        golf_fast.unpack_int6(packed, 0)
    with pytest.raises(ValueError, match="backend: expected one of"):
        golf_fast.unpack_int6(packed, 20, backend="cuda-magic")


def test_opcheck():
    torch.manual_seed(6113)
    codes = random_codes(9, 37)
    torch.library.opcheck(torch.ops.golf_fast.pack_int6.default, (codes,))
    torch.library.opcheck(torch.ops.golf_fast.unpack_int6.default, (pack_int6_ref(codes), 37))


def test_works_under_torch_compile_fullgraph():
    torch.manual_seed(6114)
    torch._dynamo.reset()

    @torch.compile(fullgraph=True, backend="inductor")
    def round_trip(codes):
        return golf_fast.unpack_int6(golf_fast.pack_int6(codes), codes.shape[1]) + 1

    codes = random_codes(6, 19)
    assert torch.equal(round_trip(codes), codes + 1)
