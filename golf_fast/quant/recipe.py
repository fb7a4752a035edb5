"""The quantization recipe: bits and SDClip clip sigmas per role, and the GPTQ settings.

``RECORD_RECIPE`` is the current record's (R0611; parameter_golf.md §5.2, its log's
``mlp_clip_sigmas``, ``attn_clip_sigmas``, ``embed_bits``/``embed_clip_sigmas``,
``matrix_bits``/``matrix_clip_sigmas``), the one place these numbers are written: the roles are
:data:`RECORD_RULES` (``mlp``: ``\\.mlp\\.`` matches ``blocks.*.mlp.{fc,proj}``; ``attention``:
``\\.attn\\.`` matches ``blocks.*.attn.{c_q,c_k,c_v,proj}``; ``embedding``: ``(^|\\.)tok_emb\\.``
matches the tied ``tok_emb.weight``, in int7), and a matrix no role matches gets the ``default``
role (:attr:`QuantRecipe.default_bits`, :attr:`QuantRecipe.default_clip_sigmas`). Everything
else takes its record values from here: the train config's ``QuantConfig`` defaults, the int6
modules' default clip, the GPTQ functions' defaults, the demos and benchmarks.

Floating tensors of at most ``passthrough_max_numel`` elements are stored as fp16, except the
attention gates ``*.attn_gate_w`` (2-D, 32..8192 elements), which get int8 codes with one abs-max
scale per row (``gate_int8``, :mod:`golf_fast.quant.gate`); GPTQ uses blocks of ``block_size``
columns, damping ``damp``·mean(diag H) and act-order; then LQER (``lqer``,
:mod:`golf_fast.quant.lqer`) adds a rank-``lqer_rank`` correction of the GPTQ residual to the
``lqer_top_k`` matrices with the largest ‖W − q·s‖_F, A as INT2 with one scale, B as
INT``lqer_factor_bits`` per group of ``lqer_group`` (a symmetric fallback when the group does not
divide B).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Iterable, Optional

from golf_fast.quant.formats import qmax


@dataclass(frozen=True)
class RoleRule:
    """Tensors whose name matches ``pattern`` (``re.search``) get ``bits`` and ``clip_sigmas``."""

    role: str
    pattern: str
    bits: int
    clip_sigmas: float


RECORD_RULES = (
    #        role         pattern (re.search)   bits  clip sigmas
    RoleRule("mlp",       r"\.mlp\.",            6,    11.5),
    RoleRule("attention", r"\.attn\.",           6,    13.0),
    RoleRule("embedding", r"(^|\.)tok_emb\.",    7,    14.0),
)
"""The record's roles, tried in order (the first match wins)."""
DEFAULT_ROLE = "default"


@dataclass(frozen=True)
class QuantRecipe:
    """How to quantize a model (the defaults are the current record's: ``RECORD_RECIPE``).

    ``rules`` are tried in order, the first match wins; a matrix no rule matches gets
    ``default_bits`` and ``default_clip_sigmas``.
    """

    rules: tuple[RoleRule, ...] = RECORD_RULES
    default_bits: int = 6
    default_clip_sigmas: float = 12.85
    block_size: int = 128
    damp: float = 0.01
    act_order: bool = True
    passthrough_max_numel: int = 65_536
    batch_same_shape: bool = True
    """On CUDA, run same-shape matrices as one batch (ignored on CPU, where it does not pay)."""
    backend: str = "auto"
    gate_int8: bool = True
    """int8 per-row codes for the attention gates (the record's GATED_ATTN_QUANT_GATE=1)."""
    lqer: bool = True
    lqer_rank: int = 4
    lqer_top_k: int = 3
    lqer_asym: bool = True
    lqer_group: int = 64
    lqer_factor_bits: int = 4

    @property
    def default_rule(self) -> RoleRule:
        """The rule of a matrix no rule matches: ``default_bits`` and ``default_clip_sigmas``."""
        return RoleRule(DEFAULT_ROLE, "", self.default_bits, self.default_clip_sigmas)

    def matching_rule(self, name: str) -> Optional[RoleRule]:
        """The first rule whose pattern matches ``name``, or None."""
        if not isinstance(name, str):
            raise TypeError(f"name: expected a tensor name (str), got {type(name).__name__}")
        for rule in self.rules:
            if re.search(rule.pattern, name):
                return rule
        return None

    def rule_for(self, name: str) -> RoleRule:
        """The rule for ``name``: the first match, else the default role's bits and clip sigmas."""
        rule = self.matching_rule(name)
        return self.default_rule if rule is None else rule

    def role(self, role: str) -> RoleRule:
        """The rule named ``role`` (``"default"``: the default bits and clip sigmas)."""
        if role == DEFAULT_ROLE:
            return self.default_rule
        for rule in self.rules:
            if rule.role == role:
                return rule
        raise KeyError(f"role: expected one of {[r.role for r in self.rules] + [DEFAULT_ROLE]}, got {role!r}")

    def plan(self, names: Iterable[str]) -> dict[str, tuple[int, float]]:
        """name → (bits, clip sigmas) for the names a rule matches (the default role is left out)."""
        if isinstance(names, str):
            raise TypeError("names: expected an iterable of tensor names, got one str")
        plan = {}
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"names: expected str entries, got {type(name).__name__}")
            rule = self.matching_rule(name)
            if rule is not None:
                plan[name] = (rule.bits, rule.clip_sigmas)
        return plan

    def replace(self, **changes) -> "QuantRecipe":
        """A copy with ``changes`` (e.g. ``RECORD_RECIPE.replace(passthrough_max_numel=256)``)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        for rule in self.rules:
            if not isinstance(rule, RoleRule):
                raise TypeError(f"recipe.rules: expected RoleRule entries, got {type(rule).__name__}")
            qmax(rule.bits)
            re.compile(rule.pattern)
            if not rule.clip_sigmas > 0:
                raise ValueError(f"recipe.rules[{rule.role}].clip_sigmas: expected > 0, got {rule.clip_sigmas}")
        qmax(self.default_bits)
        if not self.default_clip_sigmas > 0:
            raise ValueError(f"recipe.default_clip_sigmas: expected > 0, got {self.default_clip_sigmas}")
        if not (isinstance(self.lqer_rank, int) and self.lqer_rank >= 1):
            raise ValueError(f"recipe.lqer_rank: expected an int >= 1, got {self.lqer_rank!r}")
        if not (isinstance(self.lqer_top_k, int) and self.lqer_top_k >= 0):
            raise ValueError(f"recipe.lqer_top_k: expected an int >= 0, got {self.lqer_top_k!r}")
        if not (isinstance(self.lqer_group, int) and self.lqer_group >= 1):
            raise ValueError(f"recipe.lqer_group: expected an int >= 1, got {self.lqer_group!r}")
        qmax(self.lqer_factor_bits)
        if not isinstance(self.passthrough_max_numel, int) or self.passthrough_max_numel < 0:
            raise ValueError(f"recipe.passthrough_max_numel: expected an int >= 0, got {self.passthrough_max_numel!r}")


RECORD_RECIPE = QuantRecipe()
"""The current record's recipe (R0611), see the module docstring."""
