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


def test_export_needs_a_run_and_an_out_unless_it_only_counts_code_bytes(capsys, tmp_path):
    assert cli.main(["export", "--out", str(tmp_path / "o")]) == 2
    assert "RUN_DIR and --out are required" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path), "--out", str(tmp_path / "o"), "--preset", "record"]) == 2
    assert "--preset only with --code-bytes" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path), "--code-bytes", "--preset", "record"]) == 2
    assert "give a preset or RUN_DIR, not both" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "missing"), "--code-bytes"]) == 2
    assert "run_dir: no directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
