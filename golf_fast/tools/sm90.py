"""Compile kernels for sm_90 with no GPU present and read their resource usage.

* Triton: ``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` yields PTX and a
  cubin for the H100 without a device.
* CUDA: ``nvcc -gencode=arch=compute_90a,code=sm_90a -cubin -Xptxas -v`` on a ``.cu`` file that
  includes only CUDA headers.
* Both cubins go through ``cuobjdump`` (shipped in Triton's wheel, or next to nvcc):
  ``--dump-resource-usage`` gives registers, static shared memory, the stack frame and local
  memory; ``-sass`` shows whether the tensor-core path is the Hopper one (``HGMMA``, from
  ``wgmma``) and counts local loads/stores (``LDL``/``STL``).
* Register spills land in the per-thread stack frame (cuobjdump's ``STACK``, ptxas's "bytes stack
  frame"), not in its ``LOCAL`` column, so ``CompileReport.local_bytes`` is STACK + LOCAL: the
  per-thread local memory a kernel touches. Triton kernels have no local arrays, so any nonzero
  value there is a spill.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from golf_fast.ops.kernel_config import KernelConfig

SM90_TRITON_TARGET = ("cuda", 90, 32)


@dataclass
class CompileReport:
    """What the sm_90 compile of one kernel (config or .cu function) produced."""

    kernel: str
    config: str
    registers: int = -1
    shared_bytes: int = -1
    local_bytes: int = -1  # stack frame + local memory per thread: spills (see module docstring)
    stack_bytes: int = -1
    hgmma: int = 0
    uses_matmul: bool = False
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def spills(self) -> bool:
        return self.local_bytes > 0


def find_cuobjdump() -> Optional[str]:
    """cuobjdump from Triton's wheel (preferred) or the CUDA toolkit."""
    try:
        import triton

        cand = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        if cand.exists():
            return str(cand)
    except ImportError:
        pass
    return shutil.which("cuobjdump")


def find_nvcc() -> Optional[str]:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and (Path(home) / "bin" / "nvcc").exists():
        return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


_RES_RE = re.compile(r"Function (\S+):\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)")


def cubin_resources(cubin: bytes) -> dict[str, dict[str, int]]:
    """``{function: {registers, stack, shared, local, hgmma}}`` for every function of a cubin."""
    tool = find_cuobjdump()
    if tool is None:
        raise RuntimeError("cuobjdump not found: install triton (its wheel ships cuobjdump) or the CUDA toolkit")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        res = subprocess.run([tool, "--dump-resource-usage", str(path)], capture_output=True, text=True, check=True)
        sass = subprocess.run([tool, "-sass", str(path)], capture_output=True, text=True, check=True).stdout
    out: dict[str, dict[str, int]] = {}
    for name, reg, stack, shared, local in _RES_RE.findall(res.stdout):
        out[name] = {"registers": int(reg), "stack": int(stack), "shared": int(shared), "local": int(local)}
    # SASS is printed per function: "Function : name" then its instructions.
    for block in re.split(r"\n\s*Function : ", "\n" + sass)[1:]:
        fname = block.split("\n", 1)[0].strip()
        if fname in out:
            out[fname]["hgmma"] = len(re.findall(r"\bHGMMA\b", block))
            out[fname]["ldl_stl"] = len(re.findall(r"\b(?:LDL|STL)(?:\.\w+)*\b", block))
            out[fname]["hmma"] = len(re.findall(r"\bHMMA\b", block))  # mma.sync tensor-core instructions
            out[fname]["fadd"] = len(re.findall(r"\bFADD\b", block))  # fp32 adds (round to nearest)
    return out


def compile_triton_sm90(cfg: KernelConfig) -> CompileReport:
    """Compile one Triton configuration for sm_90 (no GPU needed) and report its resources."""
    report = CompileReport(kernel=cfg.name, config=cfg.label(), uses_matmul=cfg.uses_matmul)
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        names = list(cfg.signature)
        attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in cfg.divisible_by_16}
        src = ASTSource(fn=cfg.kernel.jit, signature=dict(cfg.signature), constexprs=dict(cfg.constexprs),
                        attrs=attrs)
        with warnings.catch_warnings():  # Triton 3.9 warns that its FP-fusion default will change
            warnings.filterwarnings("ignore", message=".*TRITON_DEFAULT_FP_FUSION.*")
            compiled = triton.compile(src, target=GPUTarget(*SM90_TRITON_TARGET),
                                      options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
        res = cubin_resources(compiled.asm["cubin"])
    except Exception as exc:  # reported in the table and failed by the tests
        report.error = f"{type(exc).__name__}: {exc}"
        return report
    fn = res.get(compiled.metadata.name) or next(iter(res.values()))
    report.registers = fn["registers"]
    report.local_bytes = fn["local"] + fn["stack"]
    report.stack_bytes = fn["stack"]
    report.shared_bytes = fn["shared"] + int(compiled.metadata.shared)
    report.hgmma = fn.get("hgmma", 0)
    report.extra["wgmma_in_ptx"] = "wgmma" in compiled.asm["ptx"]
    report.extra["ldl_stl"] = fn.get("ldl_stl", 0)
    return report


def compile_cu_sm90(path: str | os.PathLike, include_dirs: tuple[str, ...] = ()) -> list[CompileReport]:
    """Compile a ``.cu`` file alone for sm_90a with ``-Xptxas -v``; one report per kernel function."""
    path = Path(path)
    nvcc = find_nvcc()
    if nvcc is None:
        return [CompileReport(kernel=path.name, config="sm_90a", error="nvcc not found")]
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / (path.stem + ".cubin")
        cmd = [nvcc, "-gencode=arch=compute_90a,code=sm_90a", "-cubin", "-O3", "-std=c++17", "-Xptxas", "-v",
               *[f"-I{d}" for d in include_dirs], "-o", str(cubin), str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return [CompileReport(kernel=path.name, config="sm_90a",
                                  error=f"nvcc failed: {proc.stderr.strip()[-2000:]}")]
        res = cubin_resources(cubin.read_bytes())
    return [CompileReport(kernel=f"{path.name}:{name}", config="sm_90a", registers=r["registers"],
                          shared_bytes=r["shared"], local_bytes=r["local"] + r["stack"], stack_bytes=r["stack"],
                          hgmma=r.get("hgmma", 0), extra={"ptxas": proc.stderr.strip(), "ldl_stl": r.get("ldl_stl", 0),
                                                          "hmma": r.get("hmma", 0), "fadd": r.get("fadd", 0)})
            for name, r in res.items()]
