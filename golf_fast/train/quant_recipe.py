"""The quantization recipe of a training run: :class:`golf_fast.quant.QuantRecipe` from ``cfg.quant``.

Roles (the record's table, with the config's numbers): ``.mlp.`` → ``matrix_bits``,
``mlp_clip_sigmas``; ``.attn.`` → ``matrix_bits``, ``attn_clip_sigmas``; ``tok_emb.`` →
``embed_bits``, ``embed_clip_sigmas``; anything else ``matrix_bits``, ``matrix_clip_sigmas``. GPTQ
``damp``, ``block_size``, ``act_order``; int8 gates (``gate_int8``); LQER (``lqer*``).

The passthrough threshold is the record's 65,536 elements, lowered for a small model so that every
matrix is GPTQ'd and every control tensor passes through (the smoke model's matrices are smaller
than 65,536 elements).
"""

from __future__ import annotations

from golf_fast.model.gpt import GPT
from golf_fast.quant.recipe import QuantRecipe, RoleRule
from golf_fast.train.config import QuantConfig


def passthrough_threshold(model: GPT) -> int:
    """``min(65,536, smallest matrix − 1)``; an error when a control tensor is as large as a matrix."""
    state = model.unbanked_state_dict()
    matrices = set(model.matrix_names())
    largest_control = max(v.numel() for k, v in state.items() if k not in matrices)
    smallest_matrix = min(state[k].numel() for k in matrices)
    if largest_control >= smallest_matrix:
        raise ValueError(f"model: a control tensor ({largest_control} elements) is as large as the smallest "
                         f"matrix ({smallest_matrix}); no passthrough threshold separates them")
    return min(65_536, smallest_matrix - 1)


def recipe_from_config(q: QuantConfig, model: GPT) -> QuantRecipe:
    """The :class:`QuantRecipe` for ``q`` and ``model`` (validated)."""
    if not isinstance(q, QuantConfig):
        raise TypeError(f"q: expected a QuantConfig, got {type(q).__name__}")
    rules = (RoleRule("mlp", r"\.mlp\.", q.matrix_bits, q.mlp_clip_sigmas),
             RoleRule("attention", r"\.attn\.", q.matrix_bits, q.attn_clip_sigmas),
             RoleRule("embedding", r"(^|\.)tok_emb\.", q.embed_bits, q.embed_clip_sigmas))
    recipe = QuantRecipe(rules=rules, default_bits=q.matrix_bits, default_clip_sigmas=q.matrix_clip_sigmas,
                         block_size=q.block_size, damp=q.damp, act_order=q.act_order,
                         passthrough_max_numel=passthrough_threshold(model), gate_int8=q.gate_int8, lqer=q.lqer,
                         lqer_rank=q.lqer_rank, lqer_top_k=q.lqer_top_k, lqer_asym=q.lqer_asym,
                         lqer_group=q.lqer_asym_group, lqer_factor_bits=q.lqer_factor_bits)
    recipe.validate()
    return recipe
