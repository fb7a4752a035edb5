"""Drop-in ``torch.nn`` modules built on golf_fast's kernels."""

from golf_fast.nn.int6_linear import Int6Linear

__all__ = ["Int6Linear"]
