"""The quantization recipe of a training run: :class:`golf_fast.quant.QuantRecipe` from ``cfg.quant``.

The roles are the record's (``golf_fast.quant.recipe.RECORD_RULES``: their patterns, in their
order), with the config's numbers: :data:`ROLE_FIELDS` names the ``QuantConfig`` fields of each
role's bits and clip sigmas (``mlp`` → ``matrix_bits``, ``mlp_clip_sigmas``; ``attention`` →
``matrix_bits``, ``attn_clip_sigmas``; ``embedding`` → ``embed_bits``, ``embed_clip_sigmas``);
a matrix no role matches gets ``matrix_bits``, ``matrix_clip_sigmas``. GPTQ ``damp``,
``block_size``, ``act_order``; int8 gates (``gate_int8``); LQER (``lqer*``).

The passthrough threshold is the record's (``RECORD_RECIPE.passthrough_max_numel``), lowered for
a small model so that every matrix is GPTQ'd and every control tensor passes through (the smoke
model's matrices are smaller than the record's threshold).
"""

from __future__ import annotations

import dataclasses

from golf_fast.model.gpt import GPT
from golf_fast.quant.recipe import RECORD_RECIPE, RECORD_RULES, QuantRecipe
from golf_fast.train.config import QuantConfig

ROLE_FIELDS = {"mlp": ("matrix_bits", "mlp_clip_sigmas"), "attention": ("matrix_bits", "attn_clip_sigmas"),
               "embedding": ("embed_bits", "embed_clip_sigmas")}
"""Role of ``RECORD_RULES`` → the ``QuantConfig`` fields of its (bits, clip sigmas)."""


def passthrough_threshold(model: GPT) -> int:
    """``min(RECORD_RECIPE.passthrough_max_numel, smallest matrix − 1)``; an error when a control
    tensor is as large as a matrix."""
    state = model.unbanked_state_dict()
    matrices = set(model.matrix_names())
    largest_control = max(v.numel() for k, v in state.items() if k not in matrices)
    smallest_matrix = min(state[k].numel() for k in matrices)
    if largest_control >= smallest_matrix:
        raise ValueError(f"model: a control tensor ({largest_control} elements) is as large as the smallest "
                         f"matrix ({smallest_matrix}); no passthrough threshold separates them")
    return min(RECORD_RECIPE.passthrough_max_numel, smallest_matrix - 1)


def recipe_from_config(q: QuantConfig, model: GPT) -> QuantRecipe:
    """The :class:`QuantRecipe` for ``q`` and ``model`` (validated)."""
    if not isinstance(q, QuantConfig):
        raise TypeError(f"q: expected a QuantConfig, got {type(q).__name__}")
    rules = tuple(dataclasses.replace(r, bits=getattr(q, ROLE_FIELDS[r.role][0]),
                                      clip_sigmas=getattr(q, ROLE_FIELDS[r.role][1])) for r in RECORD_RULES)
    recipe = QuantRecipe(rules=rules, default_bits=q.matrix_bits, default_clip_sigmas=q.matrix_clip_sigmas,
                         block_size=q.block_size, damp=q.damp, act_order=q.act_order,
                         passthrough_max_numel=passthrough_threshold(model), gate_int8=q.gate_int8, lqer=q.lqer,
                         lqer_rank=q.lqer_rank, lqer_top_k=q.lqer_top_k, lqer_asym=q.lqer_asym,
                         lqer_group=q.lqer_asym_group, lqer_factor_bits=q.lqer_factor_bits)
    recipe.validate()
    return recipe
