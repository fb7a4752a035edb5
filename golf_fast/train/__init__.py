"""The lean trainer: typed config + presets, the training loop, and the post-training pipeline."""

from golf_fast.train.config import PRESETS, TrainConfig, apply_overrides, preset

__all__ = ["PRESETS", "TrainConfig", "apply_overrides", "preset"]
