"""The quantization recipe: the record's per-role table, rule matching, the plan, bad input."""

from __future__ import annotations

import dataclasses

import pytest

from golf_fast.artifact.synthetic import record_matrix_shapes
from golf_fast.quant.recipe import RECORD_RECIPE, QuantRecipe, RoleRule


def test_record_recipe_is_r0611():
    """The values of R0611's log (mlp/attn/embed clip sigmas, embed_bits, matrix_bits/clip sigmas)."""
    table = {r.role: (r.bits, r.clip_sigmas) for r in RECORD_RECIPE.rules}
    assert table == {"mlp": (6, 11.5), "attention": (6, 13.0), "embedding": (7, 14.0)}
    assert (RECORD_RECIPE.default_bits, RECORD_RECIPE.default_clip_sigmas) == (6, 12.85)
    assert RECORD_RECIPE.passthrough_max_numel == 65_536
    assert (RECORD_RECIPE.block_size, RECORD_RECIPE.damp, RECORD_RECIPE.act_order) == (128, 0.01, True)
    assert QuantRecipe() == RECORD_RECIPE


def test_plan_of_the_record_shapes():
    plan = RECORD_RECIPE.plan(record_matrix_shapes())
    assert len(plan) == 67
    assert plan["tok_emb.weight"] == (7, 14.0)
    assert plan["blocks.4.mlp.fc.weight"] == plan["blocks.0.mlp.proj.weight"] == (6, 11.5)
    assert plan["blocks.10.attn.c_k.weight"] == plan["blocks.3.attn.proj.weight"] == (6, 13.0)


def test_rule_for_and_role():
    assert RECORD_RECIPE.rule_for("blocks.2.mlp.fc.weight").role == "mlp"
    assert RECORD_RECIPE.rule_for("tok_emb.weight").role == "embedding"
    assert RECORD_RECIPE.rule_for("my_tok_emb.weight").role == "default"  # whole component only
    lm_head = RECORD_RECIPE.rule_for("lm_head.weight")
    assert (lm_head.role, lm_head.bits, lm_head.clip_sigmas) == ("default", 6, 12.85)
    assert RECORD_RECIPE.plan(["lm_head.weight", "blocks.0.attn.c_q.weight"]) == {"blocks.0.attn.c_q.weight": (6, 13.0)}
    assert RECORD_RECIPE.role("embedding").bits == 7 and RECORD_RECIPE.role("default").clip_sigmas == 12.85
    with pytest.raises(KeyError, match="role"):
        RECORD_RECIPE.role("gate")


def test_first_matching_rule_wins_and_recipe_is_frozen():
    recipe = QuantRecipe(rules=(RoleRule("a", r"x", 4, 3.0), RoleRule("b", r"x\.y", 8, 9.0)))
    assert recipe.rule_for("x.y").role == "a"
    changed = RECORD_RECIPE.replace(passthrough_max_numel=256)
    assert changed.passthrough_max_numel == 256 and changed.rules == RECORD_RECIPE.rules
    assert RECORD_RECIPE.passthrough_max_numel == 65_536
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECORD_RECIPE.default_bits = 8


def test_bad_recipes_and_names():
    with pytest.raises(ValueError, match="bits"):
        QuantRecipe(default_bits=9).validate()
    with pytest.raises(ValueError, match=r"rules\[mlp\].clip_sigmas"):
        QuantRecipe(rules=(RoleRule("mlp", r"\.mlp\.", 6, 0.0),)).validate()
    with pytest.raises(TypeError, match="recipe.rules"):
        QuantRecipe(rules=((r"\.mlp\.", 6, 11.5),)).validate()
    with pytest.raises(ValueError, match="passthrough_max_numel"):
        QuantRecipe(passthrough_max_numel=-1).validate()
    with pytest.raises(TypeError, match="names"):
        RECORD_RECIPE.plan("tok_emb.weight")
    with pytest.raises(TypeError, match="names"):
        RECORD_RECIPE.plan([3])
    with pytest.raises(TypeError, match="name: expected a tensor name"):
        RECORD_RECIPE.rule_for(None)
