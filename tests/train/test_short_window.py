"""A wall-clock window shorter than the Hessian reserve is one line on stderr and exit 2 (no traceback)."""

import random

from golf_fast import cli
from golf_fast.data.build import build_dataset
from tiny_run import TEXT, TINY


def test_window_shorter_than_the_hessian_reserve_is_one_line_exit_2(tmp_path, capsys):
    rng = random.Random(2)
    docs = [" ".join(rng.choice(TEXT) for _ in range(rng.randint(1, 6))) for _ in range(120)]
    data = build_dataset(docs, tmp_path / "data", vocab_size=320, val_docs=10, progress=lambda s: None)
    args = ["train", "--preset", "smoke", "--no-code-bytes", "--data.data_dir", str(data),
            "--run.out_dir", str(tmp_path / "runs")]
    for k, v in {**TINY, "schedule.clock": "wallclock"}.items():
        args += [f"--{k}", str(v)]
    capsys.readouterr()  # the dataset build's progress
    args += ["--schedule.max_wallclock_s", "0.1"]  # below quant.reserve_s (0.5 s) whatever the machine
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("golf-fast train: schedule.max_wallclock_s: 0.1 s leaves no training")
    assert "Traceback" not in err[0]
