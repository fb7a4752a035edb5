"""golf-fast inspect: sm_90 compilation without a GPU, and the checks it makes."""

from __future__ import annotations

import textwrap

import pytest

from golf_fast.ops.triton_support import tl, triton_kernel
import golf_fast.cli as golf_fast_cli
from golf_fast.cli import inspect as inspect_tool
from golf_fast.tools.kernels import triton_configs
from golf_fast.ops.kernel_config import KernelConfig
from golf_fast.tools.sm90 import compile_cu_sm90
from conftest import requires_nvcc, requires_triton

pytestmark = pytest.mark.sm90


@triton_kernel
def _tiny_matmul_kernel(a_ptr, b_ptr, c_ptr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm, rn, rk = tl.arange(0, BM), tl.arange(0, BN), tl.arange(0, BK)
    a = tl.load(a_ptr + rm[:, None] * BK + rk[None, :])
    b = tl.load(b_ptr + rk[:, None] * BN + rn[None, :])
    tl.store(c_ptr + rm[:, None] * BN + rn[None, :], tl.dot(a, b))


@triton_kernel
def _register_hog_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr):
    # 8192 values live in one warp (256 per thread) across a reduction: more than 255 registers.
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, volatile=True)
    tl.store(y_ptr + offs, x * tl.sum(x, axis=0))


MATMUL = KernelConfig("tiny_matmul", _tiny_matmul_kernel,
                      {"a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*fp32", "BM": "constexpr", "BN": "constexpr",
                       "BK": "constexpr"}, {"BM": 128, "BN": 128, "BK": 64}, num_warps=4, uses_matmul=True)
HOG = KernelConfig("register_hog", _register_hog_kernel, {"x_ptr": "*fp32", "y_ptr": "*fp32", "BLOCK": "constexpr"},
                   {"BLOCK": 8192}, num_warps=1)


@requires_triton
def test_every_shipped_config_compiles_without_spills_and_matmuls_use_wgmma(sm90_report):
    configs = triton_configs()
    assert configs, "no shipped Triton configuration found"
    for cfg in configs:
        r = sm90_report(cfg)
        assert r.ok, f"{cfg.name} [{cfg.label()}]: {r.error}"
        assert r.local_bytes == 0, f"{cfg.name} [{cfg.label()}] spills {r.local_bytes} bytes"
        if cfg.uses_matmul:
            assert r.hgmma > 0, f"{cfg.name} [{cfg.label()}] is a matrix kernel without HGMMA"


@requires_triton
def test_detects_hgmma_in_a_matrix_kernel(sm90_report):
    r = sm90_report(MATMUL)
    assert r.ok, r.error
    assert r.hgmma > 0 and r.extra["wgmma_in_ptx"]
    assert not inspect_tool.problems(r)


@requires_triton
def test_detects_spills(sm90_report):
    r = sm90_report(HOG)
    assert r.ok, r.error
    assert r.local_bytes > 0 and r.extra["ldl_stl"] > 0
    assert "spills" in inspect_tool.problems(r)[0]


@requires_triton
def test_matrix_kernel_without_hgmma_is_flagged():
    r = inspect_tool.CompileReport("k", "c", registers=10, shared_bytes=0, local_bytes=0, hgmma=0, uses_matmul=True)
    assert inspect_tool.problems(r) == ["matrix kernel without HGMMA (wgmma)"]


@requires_nvcc
def test_cu_file_compiles_for_sm90a_and_reports_resources(tmp_path):
    src = tmp_path / "axpy.cu"
    src.write_text(textwrap.dedent("""
        #include <cuda_runtime.h>
        extern "C" __global__ void axpy(const float* x, float* y, float a, int n) {
          int i = blockIdx.x * blockDim.x + threadIdx.x;
          if (i < n) y[i] += a * x[i];
        }
    """))
    reports = compile_cu_sm90(src)
    assert [r.kernel for r in reports] == ["axpy.cu:axpy"]
    r = reports[0]
    assert r.ok and r.registers > 0 and r.local_bytes == 0 and r.hgmma == 0
    assert "sm_90a" in r.extra["ptxas"]


@requires_nvcc
def test_cu_compile_error_is_reported(tmp_path):
    src = tmp_path / "broken.cu"
    src.write_text("__global__ void k() { this is not C++; }\n")
    (r,) = compile_cu_sm90(src)
    assert not r.ok and "nvcc failed" in r.error


@requires_triton
def test_inspect_cli_prints_the_table(capsys):
    assert golf_fast_cli.main(["inspect", "--only", "pack_int6"]) == 0  # pack_int6 and unpack_int6 only: quick
    out = capsys.readouterr().out
    assert "pack_int6" in out and "unpack_int6" in out and "local B" in out
    assert "all compiled, zero spills" in out
