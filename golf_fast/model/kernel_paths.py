"""Where the GPT uses golf_fast's fused kernels instead of its eager PyTorch code.

``FusedKernels`` holds one switch per fused path: ``"cuda"`` (the default: the kernel on CUDA
tensors, the eager code elsewhere, so the CPU model stays bit-identical to the record's
``train_gpt.py``), ``"always"`` (the golf_fast op on every device: on CPU it runs its reference,
or the Triton kernel under ``TRITON_INTERPRET=1``; used to test the kernel path in a model) and
``"never"``.

* ``cross_entropy``: the training loss (when a gradient is being recorded) is
  ``golf_fast.softcapped_cross_entropy`` on the pre-softcap logits, the records'
  ``FUSED_CE_ENABLED`` path (softcap in fp32 inside the kernel). Evaluation (no gradient) keeps the
  eager softcap in the compute dtype, as the records' evaluation does.
* ``mlp``: ``golf_fast.leaky_relu_square_mlp`` for each block's MLP, except while an activation
  hook (calibration) needs the hidden activation. The op computes in bf16/fp16: the block's input
  is cast to the autocast dtype first (what ``F.linear`` does under autocast). ``"cuda"`` runs it
  only when that dtype is bf16/fp16 (an fp32 run on a GPU keeps the eager MLP); ``"always"``
  calls it whatever the dtype (an fp32 input is then an error).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODES = ("cuda", "always", "never")


@dataclass
class FusedKernels:
    cross_entropy: str = "cuda"
    mlp: str = "cuda"

    def __post_init__(self) -> None:
        for name in ("cross_entropy", "mlp"):
            if getattr(self, name) not in MODES:
                raise ValueError(f"{name}: expected one of {MODES}, got {getattr(self, name)!r}")

    def use(self, mode: str, t: torch.Tensor) -> bool:
        """True when the path whose switch is ``mode`` should run its fused op for tensors like ``t``."""
        return mode == "always" or (mode == "cuda" and t.is_cuda)

    def use_mlp(self, n: torch.Tensor) -> bool:
        """The MLP switch for block input ``n`` (see the module docstring)."""
        if self.mlp == "always":
            return True
        return self.mlp == "cuda" and n.is_cuda and compute_dtype(n) in HALF_DTYPES


HALF_DTYPES = (torch.bfloat16, torch.float16)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on ``t`` runs in: the autocast dtype when autocast is on, else t's."""
    if torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return t.dtype
