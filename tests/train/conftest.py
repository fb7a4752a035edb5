"""Fixtures of the trainer tests (the one-thread fixture is in tests/conftest.py)."""

import pytest
import torch


class _FixedLoader:
    """A loader that returns the same batch at every step."""

    def __init__(self, batch):
        self.batch = batch

    def next_batch(self):
        return self.batch


def _tiny_batch(g, L=16):
    from golf_fast.data.loader import Batch

    s = torch.randint(2, 64, (L + 1,), generator=g)
    s[0] = 1
    return Batch(s[None, :-1].clone(), s[None, 1:].clone(), torch.tensor([0, L], dtype=torch.int32), L)


@pytest.fixture
def tiny():
    """A 2-layer model config (no recurrence), ``batch(generator)`` and ``FixedLoader(batch)``."""
    import types

    from golf_fast.model.config import ModelConfig

    cfg = ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, loop_start=0,
                      loop_end=0, num_loops=0, parallel_start_layer=0, max_seqlen=16, rope_dims=8, xsa_last_n=0)
    return types.SimpleNamespace(cfg=cfg, batch=_tiny_batch, FixedLoader=_FixedLoader)
