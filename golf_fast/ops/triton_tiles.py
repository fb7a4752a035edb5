"""Triton device functions shared by several kernel families: how programs map to output tiles.

``grouped_tile_ids`` orders a 1-D grid of ``cdiv(M, BLOCK_M) · cdiv(N, BLOCK_N)`` programs in
groups of ``GROUP_M`` row-blocks: program ``pid`` of group ``g = pid // (GROUP_M · num_n)``
takes row-block ``g·GROUP_M + (pid mod per_group) mod group_size`` and column-block
``(pid mod per_group) // group_size`` (``group_size = min(num_m − g·GROUP_M, GROUP_M)``), so
consecutive programs reuse the same column-block (B / weight) tiles from L2.
"""

from __future__ import annotations

from golf_fast.ops.triton_support import tl, triton_helper


@triton_helper
def grouped_tile_ids(pid, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """``(pid_m, pid_n)``: the row- and column-block of program ``pid`` (int32 scalars, grouped order)."""
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * num_n
    group = pid // per_group
    first_m = group * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_size
    pid_n = (pid % per_group) // group_size
    return pid_m, pid_n
