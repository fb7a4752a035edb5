"""Optimizers: Muon (with Parallel Muon over parameter banks)."""

from golf_fast.optim.comm import CommConfig
from golf_fast.optim.muon import Muon, shape_scale

__all__ = ["CommConfig", "Muon", "shape_scale"]
