"""``golf-fast eval`` on bad input: one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golf_fast.artifact import ArtifactError, save_artifact
from golf_fast.cli import main as cli_main
from golf_fast.data.build import build_dataset
from golf_fast.model.config import ModelConfig
from golf_fast.model.from_artifact import load_model_from_artifact
from golf_fast.model.gpt import GPT
from golf_fast.quant.formats import quantize_rtn


def _cfg(vocab: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, loop_start=0,
                       loop_end=0, num_loops=0, parallel_start_layer=2, max_seqlen=32, rope_dims=8, xsa_last_n=0,
                       gate_window=4)


def _save(path, cfg, config=None, extra=None):
    torch.manual_seed(1351)
    model = GPT(cfg)
    state = model.unbanked_state_dict()
    tensors = {k: (quantize_rtn(v, 6, 12.0) if k in model.matrix_names() else v.half()) for k, v in state.items()}
    tensors.update(extra or {})
    save_artifact(path, tensors, cfg if config is None else config, codec="lzma-9")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    rng = np.random.default_rng(1352)
    words = "the cat sat on a mat while dogs ran far away from home".split()
    docs = [" ".join(rng.choice(words, size=rng.integers(3, 30))) for _ in range(80)]
    return build_dataset(docs, tmp_path_factory.mktemp("d"), vocab_size=300, val_docs=10, progress=lambda s: None)


def _one_line_exit_2(capsys, argv, needle):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("golf-fast eval:") and "\n" not in err and needle in err, err


def test_eval_errors_are_one_line(tmp_path, data_dir, capsys):
    good = tmp_path / "good.gfa"
    _save(good, _cfg(300))
    bad = tmp_path / "bad.gfa"
    raw = bytearray(good.read_bytes())
    raw[40] ^= 1
    bad.write_bytes(bytes(raw))
    _one_line_exit_2(capsys, ["eval", str(bad), "--data.data_dir", str(data_dir)], "checksum mismatch")
    _one_line_exit_2(capsys, ["eval", str(tmp_path), "--data.data_dir", str(data_dir)], "is a folder")
    mism = tmp_path / "mismatch.gfa"
    d = dict(_cfg(300).__dict__)
    d["model_dim"] = 64
    _save(mism, _cfg(300), config=d)
    _one_line_exit_2(capsys, ["eval", str(mism), "--data.data_dir", str(data_dir)], "has shape")
    unknown = tmp_path / "unknown.gfa"
    _save(unknown, _cfg(300), config={**_cfg(300).__dict__, "evil": 1})
    _one_line_exit_2(capsys, ["eval", str(unknown), "--data.data_dir", str(data_dir)], "model config is invalid")
    huge = tmp_path / "huge.gfa"
    _save(huge, _cfg(300), config={**_cfg(300).__dict__, "vocab_size": 10 ** 12})
    _one_line_exit_2(capsys, ["eval", str(huge), "--data.data_dir", str(data_dir)], "model.vocab_size")
    small_vocab = tmp_path / "v256.gfa"
    _save(small_vocab, _cfg(256))  # the shards hold ids up to 299
    _one_line_exit_2(capsys, ["eval", str(small_vocab), "--data.data_dir", str(data_dir)], "outside the model's vocabulary")
    _one_line_exit_2(capsys, ["eval", str(good), "--data.data_dir", str(tmp_path / "absent")], "does not exist")
    _one_line_exit_2(capsys, ["eval", str(good), "--data.data_dir", str(data_dir), "--eval.adapt.ttt", "sgd"],
                     "eval.adapt.ttt: expected one of")
    _one_line_exit_2(capsys, ["eval", str(good)], "data.data_dir")
    with pytest.raises(ArtifactError, match="has shape"):
        load_model_from_artifact(mism)
    lqer = tmp_path / "lqer.gfa"  # an LQER entry without its factors
    _save(lqer, _cfg(300), extra={"blocks.0.attn.c_q.weight.lqer.meta": torch.tensor([0, 64, 4])})
    with pytest.raises(ArtifactError, match="LQER entries are malformed"):
        load_model_from_artifact(lqer)
