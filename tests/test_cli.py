"""The golf-fast command line."""

from __future__ import annotations

import pytest

from golf_fast import cli


def test_demo_runs_and_round_trips(capsys):
    assert cli.main(["demo", "--rows", "64", "--cols", "40"]) == 0
    out = capsys.readouterr().out
    assert "round trip bit-exact: True" in out and "pack_int6@cpu" in out


def test_unknown_subcommand_is_rejected(capsys):
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])
    assert "invalid choice" in capsys.readouterr().err


def test_every_subcommand_has_help(capsys):
    for name in cli.SUBCOMMANDS:
        with pytest.raises(SystemExit) as info:
            cli.main([name, "--help"])
        assert info.value.code == 0
