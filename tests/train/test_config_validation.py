"""Config values are checked when the config is parsed (issue 13): Literal choices, ranges,
finiteness, the codec, the run name; the validator is generic over dataclass fields."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import pytest

from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.cli import main as cli_main
from golf_fast.model.typed_config import bounds, check_config, parse_field
from golf_fast.train.config import apply_overrides, config_fields, preset
from golf_fast.train.loop import train


@pytest.mark.parametrize("key,value,match", [
    ("run.log_every", "0", r"run.log_every: expected an int in \[1, inf\]"),
    ("eval.batch_seqs", "0", "eval.batch_seqs"),
    ("quant.codec", "pickle", "quant.codec: expected one of golf-rans"),
    ("optim.beta1", "5", r"optim.beta1: expected a number in \[0, 1\)"),
    ("optim.beta2", "1", "optim.beta2"),
    ("model.vocab_size", "1e12", r"model.vocab_size: expected an int in \[2, 65536\]"),
    ("optim.matrix_lr", "nan", "optim.matrix_lr: expected a finite number"),
    ("optim.scalar_lr", "inf", "optim.scalar_lr: expected a finite number"),
    ("optim.embed_lr", "-0.1", "optim.embed_lr"),
    ("schedule.max_wallclock_s", "0", "schedule.max_wallclock_s"),
    ("run.device", "gpu", "run.device: expected one of 'auto', 'cuda', 'cpu'"),
    ("optim.matrix_optimizer", "sgd", "optim.matrix_optimizer"),
    ("run.name", "../../x", "run.name: expected one folder name"),
    ("run.name", "/tmp/abs", "run.name"),
    ("run.name", "a/b", "run.name"),
    ("run.name", "..", "run.name"),
    ("data.grad_accum", "-1", "data.grad_accum"),
])
def test_bad_values_are_refused_at_parse_time(key, value, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(preset("smoke"), {key: value})


def test_good_values_pass_and_literals_are_typed():
    c = apply_overrides(preset("smoke"), {"run.name": "my-run_1", "quant.codec": "lzma-9", "optim.beta1": "0",
                                          "run.device": "cpu", "model.vocab_size": "1024"})
    assert (c.run.name, c.quant.codec, c.optim.beta1, c.model.vocab_size) == ("my-run_1", "lzma-9", 0.0, 1024)
    assert "Literal" in str(config_fields(c)["run.device"])


def test_validation_is_generic_over_new_fields():
    """A field another change adds is checked by its annotation and bounds, nothing else to write."""

    @dataclasses.dataclass
    class NewSection:
        mode: Literal["a", "b"] = "a"
        rate: float = dataclasses.field(default=0.5, metadata=bounds(0, 1, hi_open=True))
        count: int = dataclasses.field(default=3, metadata=bounds(1))
        flag: bool = False
        free: float = 1.0

    check_config(NewSection(), "new")
    for kw, match in ((dict(mode="c"), "new.mode"), (dict(rate=1.0), r"new.rate: expected a number in \[0, 1\)"),
                      (dict(count=0), "new.count"), (dict(count=2.0), "new.count: expected an int"),
                      (dict(flag=1), "new.flag"), (dict(free=math.nan), "new.free: expected a finite")):
        with pytest.raises(ValueError, match=match):
            check_config(NewSection(**kw), "new")
    assert parse_field("new.mode", Literal["a", "b"], "b") == "b"
    with pytest.raises(ValueError, match="new.mode"):
        parse_field("new.mode", Literal["a", "b"], "z")


def test_codec_is_resolved_before_training(monkeypatch, tmp_path):
    def not_ready(self):
        raise RuntimeError("golf-rans needs the compiled extension (simulated)")

    monkeypatch.setattr(RansCodec, "check_ready", not_ready)
    cfg = apply_overrides(preset("smoke"), {"quant.codec": "golf-rans", "run.out_dir": str(tmp_path)})
    with pytest.raises(ValueError, match="quant.codec: 'golf-rans' cannot be used here"):
        train(cfg)
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_cli_prints_one_line_and_exits_2(capsys):
    for argv in (["train", "--preset", "smoke", "--quant.codec", "pickle"],
                 ["train", "--preset", "smoke", "--run.log_every", "0"],
                 ["train", "--preset", "smoke", "--run.name", "../escape"]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("golf-fast train:") and "\n" not in err, err


@pytest.mark.parametrize("extra", [[], ["--seeds", "1,2"]])
def test_cli_data_errors_are_one_line_and_exit_2(capsys, tmp_path, extra):
    # `golf-fast train` (with and without --seeds) reports what the user can fix in one line
    argv = ["train", "--preset", "smoke", "--data.data_dir", str(tmp_path / "missing"), "--no-code-bytes",
            "--run.out_dir", str(tmp_path / "runs")] + extra
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("golf-fast train:") and "\n" not in err and "does not exist" in err, err
