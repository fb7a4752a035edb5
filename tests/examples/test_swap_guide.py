"""The swap guide (examples/): a competitor-style script and the same script with golf_fast's kernels.

* the diff between the two is the swap and nothing else (every added line names golf_fast);
* both train for a few CPU steps to the same losses: every step within 2e-3 relative (half a
  bf16 ulp of the loss; what remains comes from bf16 rounding: the unfused loss rounds the
  softcapped logits to bf16, the baseline Newton-Schulz rounds c·A before ·A), the first step
  within 1e-5;
* that tolerance rejects the plausible wrong swaps: Newton-Schulz without ``"quintic"`` (the
  records' Polar Express, golf_fast's default), relu² instead of LeakyReLU(0.5)², another softcap.
"""

from __future__ import annotations

import ast
import difflib
import types
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PEER, SWAPPED = EXAMPLES / "train_peer.py", EXAMPLES / "train_swapped.py"
STEPS = 8
REL_TOL, FIRST_TOL = 2e-3, 1e-5


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _load(path: Path, edit=None) -> types.ModuleType:
    src = path.read_text()
    if edit is not None:
        edited = edit(src)
        assert edited != src, "the edit did not apply"
        src = edited
    mod = types.ModuleType(path.stem)
    exec(compile(src, str(path), "exec"), mod.__dict__)
    return mod


def _code_lines(path: Path) -> list[str]:
    """The file's lines after its module docstring."""
    src = path.read_text()
    doc_end = ast.parse(src).body[0].end_lineno
    return src.splitlines()[doc_end:]


_CACHE: dict = {}


def _losses(path: Path, edit=None, key=None) -> list[float]:
    key = key or path.name
    if key not in _CACHE:
        _CACHE[key] = _load(path, edit).train(STEPS)
    return _CACHE[key]


def _max_rel(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def test_the_diff_is_only_the_swap():
    diff = list(difflib.unified_diff(_code_lines(PEER), _code_lines(SWAPPED), lineterm="", n=0))
    added = [l[1:] for l in diff if l.startswith("+") and not l.startswith("+++")]
    removed = [l[1:] for l in diff if l.startswith("-") and not l.startswith("---")]
    assert all("golf_fast" in l for l in added if l.strip()), added
    assert sum(1 for l in added if l.strip()) == 4  # import + Newton-Schulz + MLP + loss
    assert len(removed) <= 4, removed


def test_swapped_script_trains_to_the_same_losses():
    peer, ours = _losses(PEER), _losses(SWAPPED)
    assert len(peer) == len(ours) == STEPS
    assert abs(ours[0] - peer[0]) <= FIRST_TOL * peer[0]
    assert _max_rel(ours, peer) <= REL_TOL, (ours, peer)
    assert peer[-1] < peer[0] - 0.3  # it trains


@pytest.mark.parametrize("name,edit", [
    ("polar_express", lambda s: s.replace('"quintic"', '"polar_express"')),
    ("relu2", lambda s: s.replace("self.proj.weight.bfloat16(), 0.5)", "self.proj.weight.bfloat16(), 0.0)")),
    ("softcap15", lambda s: s.replace("targets, self.logit_softcap)", "targets, 15.0)")),
])
def test_the_tolerance_rejects_a_wrong_swap(name, edit):
    wrong = _losses(SWAPPED, edit, key=name)
    assert _max_rel(wrong, _losses(PEER)) > REL_TOL
