"""``golf-fast rehearse``: the reduced CI form at record shapes (one step, one validation window, no
exported-script run), a failing phase that fails the rehearsal loudly, and the argument checks."""

from pathlib import Path

import pytest

from golf_fast import cli
from golf_fast.export.rehearse import PhaseRow, Rehearsal, RehearsalSpec, rehearse


def test_spec_checks_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        RehearsalSpec(tmp_path, steps=0).validate()
    with pytest.raises(ValueError, match="time_limit_s"):
        RehearsalSpec(tmp_path, time_limit_s=0).validate()
    with pytest.raises(TypeError, match="out_dir"):
        RehearsalSpec(3).validate()


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert cli.main(["rehearse", "--steps", "0", "--out", str(tmp_path)]) == 2
    assert "steps" in capsys.readouterr().err


def test_table_marks_failures_and_the_verdict():
    reh = Rehearsal([PhaseRow("a", 1.0, 10, 1.5, "fine"), PhaseRow("b", verdict="broke", ok=False)], wall_s=2.0)
    text = reh.table()
    assert not reh.ok and "FAILED: broke" in text and text.rstrip().endswith("FAIL")
    assert Rehearsal([PhaseRow("a", verdict="fine")]).ok and not Rehearsal().ok


def test_a_phase_that_cannot_run_fails_the_rehearsal_and_later_phases_are_not_run(tmp_path):
    reh = rehearse(RehearsalSpec(tmp_path, preset="smoke", time_limit_s=1e-3, exported=True), log=lambda s: None)
    assert not reh.ok
    by = {r.phase: r for r in reh.rows}
    assert by["train"].ok is False and "no time left" in by["train"].verdict
    assert by["export"].verdict == "not run" and by["exported train_gpt.py"].verdict == "not run"


@pytest.mark.slow
def test_reduced_record_rehearsal_passes(tmp_path):
    """Record shapes end to end (35,945,671 parameters, 67 GPTQ'd matrices, int8 gates, LQER, reload
    from int6 codes, export) without the budget fit, the TTT and the exported run, which cost many
    minutes on two cores (the full rehearsal is ``golf-fast rehearse --preset record``)."""
    reh = rehearse(RehearsalSpec(Path(tmp_path), preset="record", steps=1, val_tokens=2049, eval_stride=0,
                                 calibration_batches=1, exported=False, ttt=False, budget=False), log=print)
    print(reh.table())
    assert reh.ok, reh.table()
    verdicts = " | ".join(r.verdict for r in reh.rows)
    assert "35,945,671 parameters" in verdicts and "67/67 matrices GPTQ'd" in verdicts
    assert [r.phase for r in reh.rows][-1] == "golf-fast export"
