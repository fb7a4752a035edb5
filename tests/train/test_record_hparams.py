"""The resolved ``record`` preset equals the R0611 record, key by key.

``tests/data/r0611_hparams.txt`` is the hyperparameter table the record's seed-42 run printed.
Every key must be either mapped to the preset (a config path, or a function of the resolved
config for derived values) and equal, or listed in NOT_COMPARED / DIFFERENCES with its reason. A
new key, an unmapped key, or a value that differs without a listed reason fails the test.
"""

from pathlib import Path

import pytest
import torch

from golf_fast.model.gpt import GPT
from golf_fast.quant.recipe import RECORD_RECIPE
from golf_fast.train.config import RECORD_SEEDS, apply_overrides, preset
from golf_fast.train.quant_recipe import recipe_from_config

TABLE = Path(__file__).resolve().parent.parent / "data" / "r0611_hparams.txt"


def _table() -> dict[str, str]:
    out, inside = {}, False
    for line in TABLE.read_text().splitlines():
        if line.startswith("Hyperparameters:"):
            inside = True
            continue
        if inside and line.startswith("  "):
            key, _, value = line.strip().partition(":")
            out[key] = value.strip()
    return out


# record key -> config path (section.field) or a function of the resolved config
MAPPED = {
    "adam_eps": "optim.eps", "adam_wd": "optim.scalar_wd", "beta1": "optim.beta1", "beta2": "optim.beta2",
    "attn_clip_sigmas": "quant.attn_clip_sigmas", "mlp_clip_sigmas": "quant.mlp_clip_sigmas",
    "matrix_clip_sigmas": "quant.matrix_clip_sigmas", "embed_clip_sigmas": "quant.embed_clip_sigmas",
    "matrix_bits": "quant.matrix_bits", "embed_bits": "quant.embed_bits",
    "caseops_enabled": "data.caseops", "ema_decay": "schedule.ema_decay", "embed_wd": "optim.embed_wd",
    "enable_looping_at": "schedule.enable_looping_at", "eval_seq_len": "eval.seq_len", "eval_stride": "eval.stride",
    "gate_window": "model.gate_window", "gated_attn_quant_gate": "quant.gate_int8",
    "gptq_calibration_batches": "quant.calibration_batches", "gptq_reserve_seconds": "quant.reserve_s",
    "grad_clip_norm": "optim.grad_clip", "ln_scale": "model.ln_scale", "logit_softcap": "model.logit_softcap",
    "loop_start": "model.loop_start", "loop_end": "model.loop_end", "num_loops": "model.num_loops",
    "lqer_enabled": "quant.lqer", "lqer_asym_enabled": "quant.lqer_asym", "lqer_asym_group": "quant.lqer_asym_group",
    "lqer_factor_bits": "quant.lqer_factor_bits", "lqer_rank": "quant.lqer_rank", "lqer_top_k": "quant.lqer_top_k",
    "matrix_lr": "optim.matrix_lr", "max_wallclock_seconds": "schedule.max_wallclock_s", "min_lr": "schedule.min_lr",
    "mlp_mult": "model.mlp_mult", "model_dim": "model.model_dim", "num_heads": "model.num_heads",
    "num_kv_heads": "model.num_kv_heads", "num_layers": "model.num_layers", "vocab_size": "model.vocab_size",
    "muon_backend_steps": "optim.ns_steps", "muon_momentum": "optim.muon_momentum",
    "muon_momentum_warmup_start": "optim.muon_momentum_warmup_start",
    "muon_momentum_warmup_steps": "optim.muon_momentum_warmup_steps", "muon_row_normalize": "optim.muon_row_normalize",
    "muon_wd": "optim.muon_wd", "parallel_final_lane": "model.parallel_final_lane",
    "parallel_start_layer": "model.parallel_start_layer", "qk_gain_init": "model.qk_gain_init",
    "rope_base": "model.rope_base", "rope_dims": "model.rope_dims", "scalar_lr": "optim.scalar_lr", "seed": "run.seed",
    "skip_gates_enabled": "model.skip_gates", "smear_gate_enabled": "model.smear_gate",
    "sparse_attn_gate_enabled": "model.sparse_attn_gate", "sparse_attn_gate_scale": "model.sparse_attn_gate_scale",
    "tied_embed_init_std": "model.tied_embed_init_std", "tied_embed_lr": "optim.embed_lr",
    "train_batch_tokens": "data.train_batch_tokens", "train_seq_len": "model.max_seqlen",
    "val_loss_every": "eval.val_every", "warmdown_frac": "schedule.warmdown_frac",
    "warmup_steps": "schedule.compile_warmup_steps", "xsa_last_n": "model.xsa_last_n",
    # derived values
    "grad_accum_steps": lambda c: c.data.grad_accum or max(1, 8 // 8),  # 0 = 8 // world_size, at 8 ranks
    "val_doc_fraction": lambda c: 1.0 if c.data.max_val_tokens == 0 else "a prefix",
    # switches golf_fast does not have: its only behavior is the record's setting
    "tie_embeddings": lambda c: True,  # the head is always the tied embedding
    "rope_yarn": lambda c: False,  # no YaRN rescaling of RoPE
    "attn_out_gate_enabled": lambda c: False,  # no attention output gate (AttnOutGate)
    "gated_attn_enabled": lambda c: False,  # no dense gated attention
    "sparse_attn_gate_init_std": lambda c: 0.0,  # the sparse gate is zero-initialized
    # evaluation-time adaptation: the record preset's eval.adapt (phased LoRA TTT)
    "global_ttt_batch_seqs": lambda c: _adapt(c).phased.batch_seqs,
    "global_ttt_chunk_tokens": lambda c: _adapt(c).phased.chunk_tokens,
    "global_ttt_epochs": lambda c: _adapt(c).phased.epochs,
    "global_ttt_grad_clip": lambda c: _adapt(c).phased.grad_clip,
    "global_ttt_lr": lambda c: _adapt(c).phased.lr,
    "global_ttt_momentum": lambda c: _adapt(c).phased.momentum,
    "global_ttt_respect_doc_boundaries": lambda c: _adapt(c).phased.respect_doc_boundaries,
    "global_ttt_warmup_chunks": lambda c: _adapt(c).phased.warmup_chunks,
    "global_ttt_warmup_start_lr": lambda c: _adapt(c).phased.warmup_start_lr,
    "phased_ttt_num_phases": lambda c: _adapt(c).phased.num_phases,
    "phased_ttt_prefix_docs": lambda c: _adapt(c).phased.prefix_docs,
    "ttt_batch_size": lambda c: _adapt(c).lora.batch_docs,
    "ttt_beta1": lambda c: _adapt(c).lora.beta1,
    "ttt_beta2": lambda c: _adapt(c).lora.beta2,
    "ttt_chunk_size": lambda c: _adapt(c).lora.chunk,
    "ttt_enabled": lambda c: _adapt(c).ttt in ("lora", "phased"),
    "ttt_eval_batches": lambda c: "",  # golf_fast scores every batch (the record's empty list: all of them)
    "ttt_eval_seq_len": lambda c: _adapt(c).seq_len,
    "ttt_grad_steps": lambda c: _adapt(c).lora.grad_steps,
    "ttt_k_lora": lambda c: "k" in _adapt(c).lora.targets.split(","),
    "ttt_lora_lr": lambda c: _adapt(c).lora.lr,
    "ttt_lora_rank": lambda c: _adapt(c).lora.rank,
    "ttt_mlp_lora": lambda c: "mlp" in _adapt(c).lora.targets.split(","),
    "ttt_o_lora": lambda c: "o" in _adapt(c).lora.targets.split(","),
    "ttt_optimizer": lambda c: _adapt(c).lora.optimizer,
    "ttt_weight_decay": lambda c: _adapt(c).lora.weight_decay,
}

TTT_KEYS = 26
"""The record log's test-time-training keys (global_ttt_*, phased_ttt_*, ttt_*): all compared."""


def _adapt(cfg):
    return cfg.eval.adapt


NOT_COMPARED = {
    # properties of the launch, not of the recipe
    "distributed": "set by torchrun (world size > 1)", "is_main_process": "rank 0 at run time",
    "local_rank": "set by torchrun", "rank": "set by torchrun",
    "world_size": "the number of processes torchrun starts (the record: 8×H100)",
    "model_path": "output file name", "quantized_model_path": "output file name (golf_fast: <run>/model.gfa)",
    "train_log_every": "log cadence only",
    # settings of switches that are off in the record (and absent from golf_fast)
    "attn_out_gate_src": "only read when attn_out_gate_enabled (False)",
    "gated_attn_init_std": "only read when gated_attn_enabled (False)",
    "rope_train_seq_len": "only read when rope_yarn (False)",
    "embed_lr": "only read for an untied embedding (tie_embeddings True uses tied_embed_lr)",
    "fused_ce_enabled": "a kernel choice for the same fp32 cross-entropy",
    "val_batch_tokens": "evaluation batching (golf_fast: eval.batch_seqs rows); the score does not depend on it",
}

# record key -> (golf_fast value, reason): mapped keys whose value differs on purpose
DIFFERENCES = {
    "compressor": ("", "the record's 'pergroup' (lrzip/ZPAQ per role + brotli) needs an external binary; golf_fast "
                       "uses its own codec (quant.codec '' = the artifact default); compression is its own issue"),
    "iterations": (0, "a step cap the record never reaches (it stops on the 600 s clock at step 4945); golf_fast's "
                      "schedule.max_steps 0 means no step cap on the wallclock clock"),
}
MAPPED.update({"compressor": "quant.codec", "iterations": "schedule.max_steps"})


def _get(cfg, how):
    if callable(how):
        return how(cfg)
    sec, name = how.split(".")
    return getattr(getattr(cfg, sec), name)


def _same(record_text: str, value) -> bool:
    if isinstance(value, bool):
        return record_text == str(value)
    if isinstance(value, (int, float)):
        try:
            return float(record_text) == float(value)
        except ValueError:
            return False
    return record_text == str(value)


def test_record_preset_equals_the_record_table():
    table = _table()
    assert len(table) == 115 and table["seed"] == "42"
    cfg = preset("record")
    unknown = sorted(set(table) - set(MAPPED) - set(NOT_COMPARED))
    assert not unknown, f"record keys with no mapping and no reason: {unknown}"
    stale = sorted((set(MAPPED) | set(NOT_COMPARED)) - set(table))
    assert not stale, f"mapped keys the record does not print: {stale}"
    assert not set(MAPPED) & set(NOT_COMPARED)
    bad = []
    for key, text in sorted(table.items()):
        if key in NOT_COMPARED:
            continue
        value = _get(cfg, MAPPED[key])
        if key in DIFFERENCES:
            want, _reason = DIFFERENCES[key]
            assert not _same(text, value), f"{key}: listed as a difference but equal ({text}); drop the entry"
            if value != want:
                bad.append(f"{key}: golf_fast {value!r} is not the listed difference {want!r}")
            continue
        if not _same(text, value):
            bad.append(f"{key}: record {text!r}, golf_fast {MAPPED[key]} = {value!r}")
    assert not bad, "record preset differs from the record:\n" + "\n".join(bad)


def test_every_ttt_key_is_compared_and_the_settings_the_log_omits_are_the_records():
    table = _table()
    ttt = [k for k in table if k.startswith(("ttt_", "global_ttt_", "phased_ttt_"))]
    assert len(ttt) == TTT_KEYS and not set(ttt) & set(NOT_COMPARED) and set(ttt) <= set(MAPPED)
    a = _adapt(preset("record"))
    # environment-only settings of the record (not in its log): TTT_LORA_ALPHA=144, TTT_WARM_START_A=1, the
    # lm_head adapter (always on), AdamW eps 1e-10, its 8 ranks splitting each global-SGD chunk
    assert (a.lora.alpha, a.lora.warm_start_a, a.lora.eps, a.phased.row_groups) == (144.0, True, 1e-10, 8)
    assert "lm_head" in a.lora.targets.split(",")
    c = preset("record")
    assert _same(table["ttt_lora_rank"], _get(c, MAPPED["ttt_lora_rank"]))
    c = apply_overrides(c, {"eval.adapt.lora.rank": "8"})  # a changed adaptation setting is caught key by key
    assert not _same(table["ttt_lora_rank"], _get(c, MAPPED["ttt_lora_rank"]))
    assert not _same(table["ttt_lora_rank"], _get(preset("smoke"), MAPPED["ttt_lora_rank"]))


def test_the_comparison_catches_a_changed_value():
    table = _table()
    cfg = preset("record")
    cfg.quant.mlp_clip_sigmas = 12.0
    assert not _same(table["mlp_clip_sigmas"], _get(cfg, MAPPED["mlp_clip_sigmas"]))
    assert _same("True", True) and not _same("1", True)  # bools compare by their printed text
    assert not _same("False", True) and not _same("mean", "attn") and _same("1e-08", 1e-8)


@pytest.mark.parametrize("seed", RECORD_SEEDS)
def test_the_records_seeds_are_accepted(seed):
    assert apply_overrides(preset("record"), {"run.seed": str(seed)}).run.seed == seed
    assert preset("record").run.precision == "record" and preset("record").quant.calibration == "windows"


def test_quant_config_becomes_the_records_recipe():
    cfg = preset("record")
    with torch.device("meta"):
        model = GPT(cfg.model)
    r = recipe_from_config(cfg.quant, model)
    assert r == RECORD_RECIPE  # the record preset's numbers are the record recipe, field by field
    small = recipe_from_config(preset("smoke").quant, GPT(preset("smoke").model))
    assert small.passthrough_max_numel < 65_536 and small.rules == RECORD_RECIPE.rules
    c = apply_overrides(preset("record"), {"quant.damp": "0.005", "quant.mlp_clip_sigmas": "12", "quant.lqer": "0"})
    r2 = recipe_from_config(c.quant, model)
    assert r2.damp == 0.005 and r2.rule_for("blocks.0.mlp.fc.weight").clip_sigmas == 12.0 and not r2.lqer
