"""Models for tests, built one way everywhere (imported by test modules; tests/ is on sys.path)."""

from __future__ import annotations

import torch

from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT


def randomized_gpt(cfg: ModelConfig, seed: int) -> GPT:
    """A GPT from ``cfg`` whose every parameter is moved off its initial value by N(0, 0.05²)
    noise (zero-initialized projections would hide bugs), drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    m = GPT(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m
