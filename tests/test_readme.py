"""The README's two commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- (main|test) command -->\s*```bash\n(.*?)\n```", text, re.S)
    return dict(blocks)


def test_ci_runs_the_readme_test_command_exactly():
    cmds = readme_commands()
    assert set(cmds) == {"main", "test"}
    ci_lines = [l for l in (ROOT / ".ci" / "run").read_text().splitlines() if l and not l.startswith("#")]
    assert cmds["test"] in ci_lines


def test_both_commands_set_up_the_same_environment():
    cmds = readme_commands()
    setup = "python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0"
    assert cmds["main"].startswith(setup) and cmds["test"].startswith(setup)
