"""Post-training pieces on their own: Hessians against an independent float64 accumulation,
GPTQ'd state written and read back bit for bit, the calibration timing leaves the model as it was."""

import pytest
import torch

from golf_fast.artifact import load_artifact
from golf_fast.quant import QuantizedTensor
from golf_fast.train.posttrain import (collect_hessians, default_recipe, quantize,
                                       time_calibration_batch, write_artifact)
from model_factories import randomized_gpt


def test_hessians_match_an_independent_accumulation(tiny):
    model = randomized_gpt(tiny.cfg, 51)
    g = torch.Generator().manual_seed(52)
    batches = [tiny.batch(g), tiny.batch(g)]
    model.train()
    got = collect_hessians(model, batches, 2)
    assert model.training and model.activation_hook is None  # state restored
    assert list(got) == model.matrix_names()

    sums, rows = {}, {}

    def hook(names, x):
        names = [names] if isinstance(names, str) else list(names)
        x2 = x.detach().reshape(-1, x.shape[-1]).double()
        for n in names:
            sums[n] = sums.get(n, 0) + x2.T @ x2
            rows[n] = rows.get(n, 0) + x2.shape[0]

    model.eval()
    model.activation_hook = hook
    with torch.no_grad():
        for b in batches:
            model.hidden(b.x, b.cu_seqlens)
    model.activation_hook = None
    for n in model.matrix_names():
        want = sums[n] / rows[n]
        err = (got[n].double() - want).norm() / want.norm()
        assert err < 1e-5, (n, float(err))
    # c_q, c_k and c_v read the same input
    assert torch.equal(got["blocks.0.attn.c_q.weight"], got["blocks.0.attn.c_k.weight"])
    with pytest.raises(ValueError, match="n_batches"):
        collect_hessians(model, batches, 0)


def test_quantized_state_survives_the_file_bit_for_bit(tiny, tmp_path):
    model = randomized_gpt(tiny.cfg, 53)
    g = torch.Generator().manual_seed(54)
    hessians = collect_hessians(model, [tiny.batch(g)], 1)
    tensors, seconds, table = quantize(model, hessians)
    assert seconds >= 0 and "blocks.0.mlp.fc.weight" in table
    matrices = set(model.matrix_names())
    assert {k for k, v in tensors.items() if isinstance(v, QuantizedTensor)} >= matrices
    assert default_recipe(model).passthrough_max_numel < min(model.unbanked_state_dict()[k].numel() for k in matrices)
    path = tmp_path / "m.gfa"
    size = write_artifact(path, tensors, model.cfg, metadata={"steps": 3})
    art = load_artifact(path)
    assert size == art.file_bytes and art.metadata["steps"] == 3 and art.config["num_layers"] == tiny.cfg.num_layers
    for k, v in tensors.items():
        a = art.state[k]
        if isinstance(v, QuantizedTensor):
            assert a.bits == v.bits and torch.equal(a.codes, v.codes) and torch.equal(a.scales, v.scales), k
        else:
            assert a.dtype == v.dtype and torch.equal(a, v), k
    with pytest.raises(TypeError, match="model_cfg"):
        write_artifact(path, tensors, {"num_layers": 2})
    with pytest.raises(ValueError, match="hessians"):
        quantize(model, {})


def test_calibration_timing_restores_the_loop_state(tiny):
    model = randomized_gpt(tiny.cfg, 55)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(56)
    synced = []
    s = time_calibration_batch(model, [tiny.batch(g)], looping=True, autocast=torch.no_grad,
                               synchronize=lambda: synced.append(1))
    assert s > 0 and synced == [1] and model.looping_active is False
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _RecordingEvals:
    """EvalHooks stand-in: records the models the full and the adaptive evaluation get."""

    def __init__(self, adaptive: bool):
        self._adaptive = adaptive
        self.adapt = object() if adaptive else None
        self.seen = {}

    def wants_adaptive(self):
        return self._adaptive

    def full(self, model, what):
        self.seen["full"] = model
        return {"val_bpb": 1.0}

    def adaptive(self, model, what, int6_state=None):
        if not self._adaptive:
            return None
        self.seen["adaptive"] = model
        return {"val_bpb": 0.9}


@pytest.mark.parametrize("adaptive", [False, True])
def test_round_trip_with_int6_weights_loads_the_artifact_once(tiny, tmp_path, adaptive):
    from golf_fast.distributed import Dist
    from golf_fast.train.posttrain import round_trip
    from golf_fast.train.runlog import RunLog

    model = randomized_gpt(tiny.cfg, 57)
    g = torch.Generator().manual_seed(58)
    hessians = collect_hessians(model, [tiny.batch(g)], 1)
    evals = _RecordingEvals(adaptive)
    rt = round_trip(model, hessians, path=tmp_path / "m.gfa", d=Dist(), evals=evals, log=RunLog(None, enabled=False),
                    weights="int6")
    assert evals.seen["full"].int6_banks is not None  # the plain round-trip eval runs from the codes
    if adaptive:
        # the artifact is loaded once: the adaptive evaluation gets the same fresh model (run_adaptive
        # gives it float banks of the same dequantized matrices itself, tested in
        # tests/train/test_int6_eval_weights.py), and the exported script's own load is timed
        assert evals.seen["adaptive"] is evals.seen["full"]
        assert rt.phases["artifact_load_exported"] > 0
        assert rt.evals["adaptive"]["val_bpb"] == 0.9
    else:
        assert "adaptive" not in evals.seen
