"""Every shipped kernel: the Triton families (each ``golf_fast.ops.<family>_kernels`` module
exposes ``SHIPPED_CONFIGS``) and the CUDA sources of ``csrc/``. One line per family;
``golf-fast inspect`` compiles all of them."""

from __future__ import annotations

import importlib
from pathlib import Path

from golf_fast.ops.kernel_config import KernelConfig

TRITON_FAMILIES = (
    "golf_fast.ops.int6_pack_kernels",
    "golf_fast.ops.int6_matmul_kernels",
    "golf_fast.ops.newton_schulz_kernels",
    "golf_fast.ops.gptq_kernels",
    "golf_fast.ops.softcapped_ce_kernels",
    "golf_fast.ops.fused_mlp_kernels",
)


def triton_configs() -> list[KernelConfig]:
    configs: list[KernelConfig] = []
    for mod in TRITON_FAMILIES:
        configs.extend(importlib.import_module(mod).SHIPPED_CONFIGS)
    return configs


def csrc_dir() -> Path | None:
    """The checkout's csrc/ (present in a source or editable install), else None."""
    cand = Path(__file__).resolve().parents[2] / "csrc"
    return cand if cand.is_dir() else None


def cuda_sources() -> list[Path]:
    root = csrc_dir()
    return sorted(root.rglob("*.cu")) if root else []
