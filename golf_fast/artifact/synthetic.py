"""Record-shaped synthetic weights for compression tests and benchmarks (no training needed).

``record_matrix_shapes()`` gives the 67 quantized matrices of the current record (R0611,
parameter_golf.md §3): ``tok_emb.weight`` (8192, 512) and per layer ``attn.c_q`` (512, 512),
``attn.c_k`` / ``attn.c_v`` (256, 512), ``attn.proj`` (512, 512), ``mlp.fc`` (2048, 512),
``mlp.proj`` (512, 2048). ``heavy_tailed_weights`` draws i.i.d. Student-t entries (df 4 by
default: heavy tails, as trained weights have), so the codes are i.i.d. within a matrix and no
codec can beat their order-0 entropy.
"""

from __future__ import annotations

from typing import Mapping

import torch


def record_matrix_shapes(num_layers: int = 11, model_dim: int = 512, kv_dim: int = 256, mlp_mult: int = 4,
                         vocab_size: int = 8192) -> dict[str, tuple[int, int]]:
    """name → (rows, cols) of the record's quantized matrices, in the record's order."""
    for name, v in (("num_layers", num_layers), ("model_dim", model_dim), ("kv_dim", kv_dim),
                    ("mlp_mult", mlp_mult), ("vocab_size", vocab_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    d, h = model_dim, mlp_mult * model_dim
    shapes = {"tok_emb.weight": (vocab_size, d)}
    for i in range(num_layers):
        p = f"blocks.{i}."
        shapes[p + "attn.c_q.weight"] = (d, d)
        shapes[p + "attn.c_k.weight"] = (kv_dim, d)
        shapes[p + "attn.c_v.weight"] = (kv_dim, d)
        shapes[p + "attn.proj.weight"] = (d, d)
        shapes[p + "mlp.fc.weight"] = (h, d)
        shapes[p + "mlp.proj.weight"] = (d, h)
    return shapes


def heavy_tailed_weights(shapes: Mapping[str, tuple[int, int]], seed: int = 0, df: int = 4,
                         std: float = 0.02) -> dict[str, torch.Tensor]:
    """name → float32 matrix of i.i.d. Student-t(df) entries scaled to ``std`` (seeded, CPU).

    t = z / sqrt(χ²_df / df) with χ²_df a sum of ``df`` squared normals; var(t) = df / (df − 2).
    """
    if not isinstance(df, int) or df < 3:
        raise ValueError(f"df: expected an int >= 3 (finite variance), got {df!r}")
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (r, c) in shapes.items():
        z = torch.randn(r, c, generator=g)
        chi2 = torch.zeros(r, c)
        for _ in range(df):
            chi2 += torch.randn(r, c, generator=g).square()
        t = z / torch.sqrt(chi2 / df)
        out[name] = (t * (std / (df / (df - 2)) ** 0.5)).float()
    return out
