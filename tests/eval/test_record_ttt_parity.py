"""golf_fast's phased TTT against the record's own code (record_ttt_reference.py, extracted from
R0611's train_gpt.py with a CPU stand-in for FlashAttention), on the same tiny model, documents
and seed: the per-document losses agree within 1e-5 nats per token.

The tiny run exercises every part the record has: depth recurrence (a looped layer), the parallel
lanes, XSA, sparse attention gates, SmearGate, skip gates; LoRA on q, k, v, o, mlp and lm_head;
batches of 4 documents (the longest batch is short, so it gets a fresh adapter); A warm-started;
two global-SGD phases (boundaries 3 and 6 documents) over several 64-token chunks with two steps
each; chunks of 8 targets with windows of 32 tokens (longer documents slide).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from golf_fast.eval.adapt.config import AdaptConfig, LoRAConfig, PhasedConfig
from golf_fast.eval.adapt.documents import run_documents
from golf_fast.eval.windows import document_spans, target_ends

from . import record_ttt_reference as R
from .adapt_helpers import VOCAB, byte_table, tiny_model, tiny_stream

SEED = 1234


def _record_h(model, run_id: str, warm: bool) -> SimpleNamespace:
    c = model.cfg
    return SimpleNamespace(
        # model
        logit_softcap=c.logit_softcap, tie_embeddings=True, tied_embed_init_std=c.tied_embed_init_std,
        fused_ce_enabled=False, vocab_size=c.vocab_size, num_layers=c.num_layers, model_dim=c.model_dim,
        num_heads=c.num_heads, num_kv_heads=c.num_kv_heads, mlp_mult=c.mlp_mult, rope_base=c.rope_base,
        qk_gain_init=c.qk_gain_init, train_seq_len=c.max_seqlen, ln_scale=c.ln_scale, rope_yarn=False,
        attn_out_gate_enabled=False, attn_out_gate_src="proj", gate_window=c.gate_window, gated_attn_enabled=False,
        gated_attn_init_std=0.01, sparse_attn_gate_enabled=c.sparse_attn_gate, sparse_attn_gate_init_std=0.0,
        sparse_attn_gate_scale=c.sparse_attn_gate_scale, rope_dims=c.rope_dims, xsa_last_n=c.xsa_last_n,
        num_loops=c.num_loops, loop_start=c.loop_start, loop_end=c.loop_end, skip_gates_enabled=c.skip_gates,
        parallel_start_layer=c.parallel_start_layer, parallel_final_lane=c.parallel_final_lane,
        smear_gate_enabled=c.smear_gate,
        # phased TTT (the record's names)
        val_doc_fraction=1.0, seed=SEED, phased_ttt_prefix_docs=6, phased_ttt_num_phases=2, ttt_chunk_size=8,
        ttt_eval_seq_len=32, eval_seq_len=32, ttt_eval_batches="", ttt_batch_size=4, run_id=run_id, rank=0,
        world_size=1, ttt_lora_rank=4, ttt_k_lora=True, ttt_mlp_lora=True, ttt_o_lora=True, ttt_optimizer="adam",
        ttt_lora_lr=1e-2, ttt_beta1=0.0, ttt_beta2=0.99, ttt_weight_decay=0.5, ttt_grad_steps=1,
        global_ttt_chunk_tokens=64, global_ttt_batch_seqs=1, global_ttt_lr=5e-2, global_ttt_momentum=0.9,
        global_ttt_epochs=1, global_ttt_warmup_chunks=0, global_ttt_warmup_start_lr=0.0,
        global_ttt_respect_doc_boundaries=True, global_ttt_grad_clip=1.0,
    ), warm


def _ours_config(warm: bool) -> AdaptConfig:
    return AdaptConfig(ttt="phased", seq_len=32, batch_seqs=4, probe_every=2, seed=SEED,
                       lora=LoRAConfig(rank=4, alpha=8.0, lr=1e-2, beta1=0.0, beta2=0.99, eps=1e-10, weight_decay=0.5,
                                       chunk=8, batch_docs=4, warm_start_a=warm),
                       phased=PhasedConfig(num_phases=2, prefix_docs=6, lr=5e-2, momentum=0.9, chunk_tokens=64,
                                           grad_clip=1.0, epochs=1, batch_seqs=1, row_groups=1))


def _model(seed: int):
    model = tiny_model(seed, num_loops=1)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every gate and mix away from its identity init, so each one matters
        for name, p in model.named_parameters():
            if not name.endswith("_bank") and name != "tok_emb.weight":
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    model.looping_active = True
    return model


def _record_model(ours, h):
    rec = R.GPT(h)
    missing, unexpected = rec.load_state_dict(ours.state_dict(), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    rec.looping_active = True
    return rec


def _run_record(rec, h, tokens: np.ndarray, monkeypatch) -> dict:
    """The record's eval_val_ttt_phased; per-document loss sums captured around its _accumulate_bpb."""
    all_tokens = torch.from_numpy(tokens.astype(np.int64))
    docs = R._find_docs(all_tokens)
    queue = R._build_ttt_global_batches(R._select_ttt_doc_entries(docs, h), h)
    state = {"q": None}
    per_doc: dict = {}
    claim, accumulate = R._claim_next_batch, R._accumulate_bpb

    def claim_spy(path, n):
        state["q"] = claim(path, n)
        return state["q"]

    def accumulate_spy(ptl, x, y, chunk_offsets, chunk_lens, pos_idx, *rest, **kw):
        pos = pos_idx[: x.size(1)].unsqueeze(0)
        mask = (chunk_lens.unsqueeze(1) > 0) & (pos >= chunk_offsets.unsqueeze(1)) & (
            pos < (chunk_offsets + chunk_lens).unsqueeze(1))
        sums = (ptl.double() * mask).sum(1)
        for b, (_, (start, _len)) in enumerate(queue[state["q"]][1]):
            per_doc[start] = per_doc.get(start, 0.0) + float(sums[b])
        return accumulate(ptl, x, y, chunk_offsets, chunk_lens, pos_idx, *rest, **kw)

    monkeypatch.setattr(R, "_claim_next_batch", claim_spy)
    monkeypatch.setattr(R, "_accumulate_bpb", accumulate_spy)
    table = byte_table()
    val_data = SimpleNamespace(val_tokens=all_tokens, caseops_enabled=False, val_bytes=None,
                               base_bytes_lut=table.base_bytes.long(), has_leading_space_lut=table.has_space,
                               is_boundary_token_lut=table.is_boundary)
    torch.manual_seed(SEED)
    try:
        loss, bpb = R.eval_val_ttt_phased(h, rec, torch.device("cpu"), val_data, rec.forward_ttt)
    finally:
        for name in ("ttt_counter_", "ttt_prefix_counter_", "ttt_pause_flag_"):
            path = f"/tmp/{name}{h.run_id}"
            if os.path.exists(path):
                os.remove(path)
    return {"loss": loss, "bpb": bpb, "per_doc": per_doc}


def _per_doc_ours(res, tokens: np.ndarray) -> dict:
    pos, nats = res.log.losses()
    docs = document_spans(tokens, 1)
    te = target_ends(docs, len(tokens))
    doc_of = np.searchsorted(te, pos, side="right")  # position j is a target of the document whose targets hold it
    sums = np.bincount(doc_of, weights=nats, minlength=len(docs))
    return {int(docs[i, 0]): float(sums[i]) for i in range(len(docs)) if te[i] - docs[i, 0] >= 2}


@pytest.mark.parametrize("warm", [True, False])
def test_phased_ttt_matches_the_records_code_per_document(warm, monkeypatch, tmp_path):
    monkeypatch.setattr(R, "BOS_ID", 1)  # the record sets it when it loads its data
    monkeypatch.setattr(R.BatchedLinearLoRA, "_ALPHA", 8.0)  # the record's TTT_LORA_ALPHA (env) for rank 4
    monkeypatch.setattr(R.BatchedLinearLoRA, "_WARM_START_A", warm)  # its TTT_WARM_START_A
    tokens = tiny_stream(7, n_docs=11, max_len=70)
    ours_model = _model(7)
    h, _ = _record_h(ours_model, f"golf_fast_parity_{os.getpid()}_{int(warm)}", warm)
    rec = _record_model(ours_model, h)
    want = _run_record(rec, h, tokens, monkeypatch)

    res = run_documents(ours_model, tokens, byte_table(), _ours_config(warm), adapt="phased")
    got = _per_doc_ours(res, tokens)
    assert res.flag == "compliant", res.compliance.as_dict()
    assert sum(1 for n in res.notes if n.startswith("phase after")) == 2
    assert set(got) == set(want["per_doc"])
    lengths = {int(s): int(e - s) for s, e in zip(document_spans(tokens, 1)[:, 0], target_ends(
        document_spans(tokens, 1), len(tokens)))}
    worst = max(abs(got[s] - want["per_doc"][s]) / (lengths[s] - 1) for s in got)
    assert worst < 1e-5, worst
    assert res.result.val_loss == pytest.approx(want["loss"], abs=1e-6)
    assert res.result.val_bpb == pytest.approx(want["bpb"], abs=1e-6)
    # the comparison can fail: the same run without the lm_head adapter is measurably different
    off = run_documents(_model(7), tokens, byte_table(), _with_targets(_ours_config(warm), "q,k,v,o,mlp"),
                        adapt="phased")
    moved = max(abs(a - want["per_doc"][s]) / (lengths[s] - 1) for s, a in _per_doc_ours(off, tokens).items())
    assert moved > 1e-4, moved


def _with_targets(cfg: AdaptConfig, targets: str) -> AdaptConfig:
    cfg.lora.targets = targets
    return cfg
