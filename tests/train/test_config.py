"""Config presets and overrides: typed parsing, unknown keys rejected, the CLI wiring."""

import argparse

import pytest

from golf_fast.cli import build_parser
from golf_fast.model import GPT
from golf_fast.cli.train import resolve
from golf_fast.train.config import PRESETS, TrainConfig, apply_overrides, config_fields, preset
from golf_fast.train.optimizers import build_optimizers


def test_presets_are_valid_and_record_matches_reference():
    for name in PRESETS:
        preset(name).validate()
    r = preset("record")
    assert (r.model.num_layers, r.model.model_dim, r.model.vocab_size) == (11, 512, 8192)
    assert r.optim.matrix_lr == 0.026 and r.optim.muon_momentum == 0.97 and r.optim.beta2 == 0.99
    assert r.schedule.warmdown_frac == 0.85 and r.schedule.min_lr == 0.10 and r.schedule.ema_decay == 0.9965
    assert r.data.train_batch_tokens == 786_432 and r.quant.calibration_batches == 16
    s = preset("smoke")
    assert s.run.device == "cpu" and s.data.data_dir == ""  # the embedded corpus


def test_overrides_typed_and_validated():
    c = apply_overrides(preset("smoke"), {"model.num_layers": "5", "schedule.ema_decay": "0", "quant.enabled": "false",
                                          "run.name": "x", "optim.matrix_lr": 0.5})
    assert c.model.num_layers == 5 and c.schedule.ema_decay == 0.0 and c.quant.enabled is False
    assert c.run.name == "x" and c.optim.matrix_lr == 0.5
    assert preset("smoke").model.num_layers == 6  # the preset itself is untouched
    with pytest.raises(ValueError, match="unknown config key 'model.layers'"):
        apply_overrides(preset("smoke"), {"model.layers": "3"})
    with pytest.raises(ValueError, match="did you mean model.num_layers"):
        apply_overrides(preset("smoke"), {"optim.num_layers": "3"})
    with pytest.raises(ValueError, match="model.num_layers: expected int"):
        apply_overrides(preset("smoke"), {"model.num_layers": "four"})
    with pytest.raises(ValueError, match="quant.enabled: expected a boolean"):
        apply_overrides(preset("smoke"), {"quant.enabled": "maybe"})
    with pytest.raises(ValueError, match="schedule.clock"):
        apply_overrides(preset("smoke"), {"schedule.clock": "sundial"})
    with pytest.raises(ValueError, match="model.num_kv_heads"):
        apply_overrides(preset("smoke"), {"model.num_kv_heads": "3"})
    assert "model.num_layers" in config_fields(TrainConfig())


def test_cli_overrides_and_unknown_flag(capsys):
    args = build_parser().parse_args(["train", "--preset", "smoke", "--model.num_layers", "4",
                                      "--model.loop_end", "2", "--data.train_batch_tokens", "2048"])
    cfg = resolve(args)
    assert cfg.model.num_layers == 4 and cfg.data.train_batch_tokens == 2048 and cfg.preset == "smoke"
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["train", "--preset", "smoke", "--model.num_layer", "4"])
    assert e.value.code == 2
    assert "unrecognized arguments: --model.num_layer" in capsys.readouterr().err
    assert isinstance(args, argparse.Namespace)


def test_graph_step_and_eval_weights_switches():
    """optim.graph_step (Muon's step as a CUDA graph) and eval.weights (round-trip model from int6
    codes): typed, validated, auto = on for CUDA only; 'on' with CPU parameters is an error."""
    c = preset("smoke")
    assert c.optim.graph_step == "auto" and c.eval.weights == "auto"
    assert c.optim.graph_step_enabled("cuda") and not c.optim.graph_step_enabled("cpu")
    assert c.eval.resolved_weights("cuda") == "int6" and c.eval.resolved_weights("cpu") == "dequantized"
    off = apply_overrides(c, {"optim.graph_step": "off", "eval.weights": "int6"})
    assert not off.optim.graph_step_enabled("cuda") and off.eval.resolved_weights("cpu") == "int6"
    assert not apply_overrides(c, {"optim.matrix_optimizer": "adam"}).optim.graph_step_enabled("cuda")
    with pytest.raises(ValueError, match="optim.graph_step"):
        apply_overrides(c, {"optim.graph_step": "sometimes"})
    with pytest.raises(ValueError, match="eval.weights"):
        apply_overrides(c, {"eval.weights": "fp8"})
    with pytest.raises(ValueError, match="optim.graph_warmup_steps"):
        apply_overrides(c, {"optim.graph_warmup_steps": "0"})
    model = GPT(c.model)
    assert build_optimizers(model, c.optim, distributed=False).graphed is None  # auto on CPU: eager
    with pytest.raises(ValueError, match="optim.graph_step: 'on' needs the parameters on CUDA"):
        build_optimizers(model, apply_overrides(c, {"optim.graph_step": "on"}).optim, distributed=False)


def test_bare_boolean_flag_means_true():
    args = build_parser().parse_args(["train", "--preset", "smoke", "--data.caseops", "--quant.lqer", "false"])
    cfg = resolve(args)
    assert cfg.data.caseops is True and cfg.quant.lqer is False
    assert resolve(build_parser().parse_args(["train", "--preset", "record", "--data.caseops", "false"])).data.caseops \
        is False
