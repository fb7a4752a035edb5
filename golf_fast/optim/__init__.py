"""Optimizers: Muon (with Parallel Muon over parameter banks) and its CUDA-graph step."""

from golf_fast.optim.comm import CommConfig
from golf_fast.optim.graph_step import GraphedOptimizerStep
from golf_fast.optim.muon import Muon, shape_scale

__all__ = ["CommConfig", "GraphedOptimizerStep", "Muon", "shape_scale"]
