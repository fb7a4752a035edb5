"""The train config's quantization settings come from the record recipe, written once."""

from __future__ import annotations

import dataclasses

from golf_fast.quant.recipe import RECORD_RECIPE, RECORD_RULES
from golf_fast.train.config import QuantConfig
from golf_fast.train.quant_recipe import ROLE_FIELDS


def test_role_fields_cover_the_record_roles_and_defaults_are_the_recipes():
    assert set(ROLE_FIELDS) == {r.role for r in RECORD_RULES}  # a new role must name its config fields
    q = QuantConfig()
    for r in RECORD_RULES:
        bits, clip = ROLE_FIELDS[r.role]
        assert (getattr(q, bits), getattr(q, clip)) == (r.bits, r.clip_sigmas)
    assert (q.matrix_bits, q.matrix_clip_sigmas) == (RECORD_RECIPE.default_bits, RECORD_RECIPE.default_clip_sigmas)
    fields = {f.name for f in dataclasses.fields(QuantConfig)}
    assert {b for b, _ in ROLE_FIELDS.values()} | {c for _, c in ROLE_FIELDS.values()} <= fields
