"""``golf-fast train --seeds``: sequential seeds, a per-seed table with mean and std, the Welch test."""

from __future__ import annotations

import json

from golf_fast.cli import main
from train.test_loop import TINY, data_dir  # noqa: F401  (the tiny corpus fixture)


def test_seeds_run_in_turn_and_print_the_table(data_dir, tmp_path, capsys):  # noqa: F811
    args = ["train", "--preset", "smoke", "--no-code-bytes", "--seeds", "3,5", "--baseline", "9.0,9.5,9.2",
            "--data.data_dir", str(data_dir), "--run.out_dir", str(tmp_path), "--run.name", "multi",
            "--eval.stride", "0", "--quant.enabled", "false"]
    for k, v in TINY.items():
        if k not in ("eval.stride",):
            args += [f"--{k}", str(v)]
    assert main(args) == 0
    out = capsys.readouterr().out
    seeds = {}
    for s in (3, 5):
        lines = (tmp_path / "multi" / f"seed{s}" / "metrics.jsonl").read_text().splitlines()
        final = [json.loads(x) for x in lines if '"final"' in x][-1]
        assert final["seed"] == s
        seeds[s] = final["pre_quant"]["val_loss"]
    assert seeds[3] != seeds[5]  # the seed reached the run
    table = out[out.index("  seed  "):]
    assert f"{seeds[3]:.6f}" in table and f"{seeds[5]:.6f}" in table and "mean" in table and "std" in table
    assert "one-sided Welch" in table and "p = " in table
    assert "not measured" in out  # --no-code-bytes: the runs are not submissions
