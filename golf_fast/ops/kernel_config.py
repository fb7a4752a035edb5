"""``KernelConfig``: one shipped launch configuration of a Triton kernel.

Every kernel family lists the configurations its launchers use as ``SHIPPED_CONFIGS`` in its
``ops/<family>_kernels.py``; ``golf_fast.tools`` (``golf-fast inspect`` and the sm_90 tests)
compiles each one ahead of time. The description lives here, in the kernel layer, so the
kernels never import the tool that inspects them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KernelConfig:
    """One shipped launch configuration of a Triton kernel.

    ``signature`` maps every kernel argument to its Triton type (``"*bf16"``, ``"i32"``,
    ``"constexpr"``...), ``constexprs`` gives the constexpr values the launcher uses.
    ``uses_matmul`` marks kernels whose tiles should use wgmma (HGMMA) on sm_90.
    """

    name: str
    kernel: Any  # golf_fast.ops.triton_support.TritonKernel
    signature: dict[str, str]
    constexprs: dict[str, Any]
    num_warps: int = 4
    num_stages: int = 3
    uses_matmul: bool = False
    divisible_by_16: tuple[str, ...] = ()
    """Arguments (pointers or ints) compiled as multiples of 16, the specialization Triton's
    launcher applies at run time to 16-byte-aligned pointers and ints divisible by 16; without
    it the sm_90 compile can differ from what runs (e.g. loads too narrow for cp.async pipelining)."""

    def label(self) -> str:
        meta = ",".join(f"{k}={v}" for k, v in self.constexprs.items())
        return f"{meta},warps={self.num_warps},stages={self.num_stages}"
