"""``golf-fast inspect`` / ``python -m golf_fast.cli.inspect``: compile every shipped kernel for
the H100 with no GPU present and print what it uses.

Triton configurations are compiled for sm_90 (``GPUTarget("cuda", 90, 32)``), every ``.cu`` file
of csrc/ for sm_90a with nvcc. The table shows registers, shared memory, local memory (spills:
must be 0) and the number of HGMMA (wgmma) instructions in the SASS, and whether the kernel is a
matrix kernel that should use them. The exit status is 1 if anything failed to compile, spilled,
or is a matrix kernel without HGMMA.
"""

from __future__ import annotations

import argparse
from typing import Optional

from golf_fast.tools.kernels import csrc_dir, cuda_sources, triton_configs
from golf_fast.tools.sm90 import CompileReport, compile_cu_sm90, compile_triton_sm90


def collect(only: Optional[str] = None, include_cuda: bool = True) -> list[CompileReport]:
    reports = [compile_triton_sm90(cfg) for cfg in triton_configs() if only is None or only in cfg.name]
    if include_cuda:
        root = csrc_dir()
        for path in cuda_sources():
            if only is None or only in path.name:
                reports += compile_cu_sm90(path, include_dirs=(str(root),) if root else ())
    return reports


def problems(r: CompileReport) -> list[str]:
    out = []
    if r.error:
        out.append(r.error.splitlines()[0][:160])
    else:
        if r.local_bytes > 0:
            out.append(f"spills {r.local_bytes} bytes to local memory")
        if r.uses_matmul and r.hgmma == 0:
            out.append("matrix kernel without HGMMA (wgmma)")
    return out


def format_table(reports: list[CompileReport]) -> str:
    cols = ("kernel", "config", "regs", "shared B", "local B", "HGMMA", "status")
    rows = [cols]
    for r in reports:
        status = "; ".join(problems(r)) or "ok"
        if r.error:
            rows.append((r.kernel, r.config, "-", "-", "-", "-", status))
        else:
            hg = f"{r.hgmma}" + (" (matmul)" if r.uses_matmul else "")
            rows.append((r.kernel, r.config, str(r.registers), str(r.shared_bytes), str(r.local_bytes), hg, status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", default=None, help="only kernels whose name contains this text")
    p.add_argument("--no-cuda", action="store_true", help="skip the .cu files (no nvcc)")


def run(args: argparse.Namespace) -> int:
    from golf_fast._availability import triton_status

    if not triton_status()[0]:
        print(f"golf-fast inspect: {triton_status()[1]}")
        return 1
    reports = collect(args.only, include_cuda=not args.no_cuda)
    print("target: sm_90 (Triton, GPUTarget('cuda', 90, 32)) / sm_90a (nvcc); compiled without a GPU")
    print(format_table(reports))
    if not reports:
        print("no kernels matched")
        return 1
    bad = [r for r in reports if problems(r)]
    if bad:
        print(f"{len(bad)} of {len(reports)} kernels have problems")
        return 1
    print(f"{len(reports)} kernels: all compiled, zero spills, HGMMA wherever a matrix kernel needs it")
    return 0
