"""Drop-in ``torch.nn`` modules built on golf_fast's kernels."""

from golf_fast.nn.int6_bank import Int6Bank, Int6Matrix, bank_linear, lora_linear
from golf_fast.nn.int6_linear import Int6Linear

__all__ = ["Int6Linear", "Int6Bank", "Int6Matrix", "bank_linear", "lora_linear"]
