"""Pieces of the adaptive evaluation: windows, the void fraction, SLOT's fit, configuration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from golf_fast.eval.adapt.config import AdaptConfig, SlotConfig, record_adapt, smoke_adapt
from golf_fast.eval.adapt.result import assert_record_exportable, mark_metadata
from golf_fast.eval.adapt.slot import fit_delta, focal_loss
from golf_fast.eval.adapt.documents import run_documents
from golf_fast.eval.adapt.schedule import phase_boundaries
from golf_fast.eval.ternary_void import to_host, void_fractions
from golf_fast.eval.windows import build_windows, document_spans, stream_chunk_pieces

from .adapt_helpers import byte_table, tiny_config, tiny_model, tiny_stream


def test_windows_cover_every_target_once_with_in_document_context():
    rng = np.random.default_rng(61)
    toks = rng.integers(2, 40, size=300).astype(np.int64)
    toks[[0, 37, 38, 150]] = 1  # documents, one of length 1
    docs = document_spans(toks, 1)
    assert docs.tolist() == [[0, 37], [37, 38], [38, 150], [150, 300]]
    pieces = [p for c in range(0, 300, 64) for p in stream_chunk_pieces(docs, c, min(c + 64, 300), 16)]
    covered = np.concatenate([np.arange(a, b) for _, a, b in pieces])
    # every position but 0, as the plain evaluation: a document's closing BOS is its last target
    assert np.array_equal(np.sort(covered), np.arange(1, 300))
    owner = {a: s for s, a0, b0 in pieces for a in range(a0, b0)}
    assert owner[37] == 0 and owner[38] == 37 and owner[150] == 38  # the next BOS, from its own document
    wb = build_windows(torch.from_numpy(toks), pieces, 16)
    for r, (s, a, b) in enumerate(pieces):
        w0 = wb.windows[r, 0]
        assert s <= w0 and b - w0 - 1 <= 16  # context never crosses the document start
        m = wb.mask[r].nonzero().squeeze(1).numpy()
        assert np.array_equal(w0 + 1 + m, np.arange(a, b))  # mask ↔ scored targets
        n = b - w0 - 1
        assert torch.equal(wb.y[r, :n], torch.from_numpy(toks[w0 + 1:b]))
        assert torch.equal(wb.x[r, :n], torch.from_numpy(toks[w0:b - 1]))
    with pytest.raises(ValueError, match="pieces"):
        build_windows(torch.from_numpy(toks), [(0, 1, 30)], 16)


def test_void_fraction_is_the_ternary_rule_and_stays_on_device():
    g = torch.Generator().manual_seed(62)
    w = torch.randn(37, 53, generator=g)
    v = torch.randn(5, 7, generator=g)
    per, overall = void_fractions({"w": w, "v": v}, ratio=0.7)
    assert isinstance(overall, torch.Tensor) and overall.dim() == 0
    want_w = (w.abs() < 0.7 * w.abs().mean()).double().mean().item()
    host, tot = to_host(per, overall)
    assert host["w"] == pytest.approx(want_w, abs=1e-7)
    n_void = (w.abs() < 0.7 * w.abs().mean()).sum() + (v.abs() < 0.7 * v.abs().mean()).sum()
    assert tot == pytest.approx(n_void.item() / (w.numel() + v.numel()), abs=1e-7)
    assert 0.4 < want_w < 0.6  # Gaussian: P(|w| < 0.7·E|w|) ≈ 0.43
    per_1, _ = void_fractions({"w": w}, ratio=1.0)
    assert to_host(per_1, per_1["w"])[1] > want_w
    with pytest.raises(ValueError, match="ratio"):
        void_fractions({"w": w}, ratio=0)
    model_vf = void_fractions({"m": tiny_model(62).qo_bank[0]})[1]
    assert 0 < float(model_vf) < 1


def test_slot_fit_lowers_the_focal_loss_and_is_clamped():
    g = torch.Generator().manual_seed(63)
    z = torch.randn(40, 30, generator=g)
    y = torch.randint(0, 5, (40,), generator=g)  # only 5 of 30 tokens occur: a bias helps
    cfg = SlotConfig(max_iter=25, history=20, clamp=2.0, focal_gamma=2.0)
    d0 = torch.zeros(30)
    d = fit_delta(z, y, d0, cfg)
    assert focal_loss(z, y, d, 2.0) < 0.7 * focal_loss(z, y, d0, 2.0)
    assert d.abs().max() <= 2.0 and d.abs().max() == 2.0  # the unseen tokens hit the clamp
    with pytest.raises(ValueError, match="z/y/delta0"):
        fit_delta(z, y, torch.zeros(29), cfg)


def test_config_presets_validation_and_export_guard():
    rec = record_adapt()  # the record preset's eval.adapt
    rec.validate()
    assert (rec.ttt, rec.lora.rank, rec.lora.alpha, rec.lora.lr, rec.lora.beta1, rec.lora.beta2, rec.lora.weight_decay,
            rec.lora.chunk, rec.lora.batch_docs) == ("phased", 80, 144.0, 1e-4, 0.0, 0.99, 0.5, 48, 64)
    assert (rec.phased.num_phases, rec.phased.prefix_docs, rec.phased.lr, rec.phased.momentum,
            rec.phased.chunk_tokens, rec.phased.grad_clip) == (3, 2500, 1e-3, 0.9, 32768, 1.0)
    assert (rec.adamw.epochs, rec.adamw.lr, rec.adamw.freeze_blocks) == (1, 1e-3, 10)
    assert (rec.slot_cfg.max_iter, rec.slot_cfg.history, rec.slot_cfg.clamp, rec.slot_cfg.focal_positions) == \
        (25, 20, 5.0, 128)
    assert (rec.prequant.epochs, rec.prequant.lr, rec.prequant.min_lr) == (21, 5e-4, 5e-5)
    smoke_adapt().validate()
    for bad, match in ((dict(ttt="sgd"), "ttt: expected one of"), (dict(slot="window"), "slot: expected one of"),
                       (dict(research="prequant", ttt="lora"), "research: a research mode runs alone"),
                       (dict(seq_len=1), r"seq_len: expected an int in \[2"),
                       (dict(lora=dataclasses.replace(AdaptConfig().lora, chunk=4096)), "lora.chunk: expected <="),
                       (dict(slot_cfg=SlotConfig(clamp=0.0)), r"slot_cfg.clamp: expected a number in \(0"),
                       # the record-parity fields are checked by their annotations and bounds too
                       (dict(lora=dataclasses.replace(AdaptConfig().lora, optimizer="lion")),
                        "lora.optimizer: expected one of 'adam', 'sgd'"),
                       (dict(lora=dataclasses.replace(AdaptConfig().lora, grad_steps=0)),
                        r"lora.grad_steps: expected an int in \[1"),
                       (dict(phased=dataclasses.replace(AdaptConfig().phased, row_groups=0)),
                        r"phased.row_groups: expected an int in \[1"),
                       (dict(phased=dataclasses.replace(AdaptConfig().phased, warmup_start_lr=-1e-3)),
                        r"phased.warmup_start_lr: expected a number in \[0"),
                       (dict(probe_seed=-2), r"probe_seed: expected an int in \[-1")):
        with pytest.raises(ValueError, match=match):
            AdaptConfig(**bad).validate()
    assert phase_boundaries(50_000, 2500, 3) == [833, 1666, 2500]  # R0611's log
    assert phase_boundaries(10, 2500, 3) == [3, 6, 10] and phase_boundaries(2, 2500, 3) == [0, 1, 2]
    assert_record_exportable(mark_metadata({"preset": "smoke"}, "compliant"))
    with pytest.raises(ValueError, match="non-compliant: condition 1, 3"):
        assert_record_exportable(mark_metadata({}, "non-compliant: condition 1, 3"))
    with pytest.raises(ValueError, match="unverified"):  # fail closed: no recorded verdict is not compliant
        assert_record_exportable({"preset": "smoke"})


def test_caseops_sidecar_bytes_replace_the_tables():
    val = tiny_stream(64, n_docs=5, max_len=30)
    cfg = tiny_config()
    ref = run_documents(tiny_model(64), val, byte_table(), cfg, adapt="none")
    same = np.where(val == 1, 0, 1).astype(np.int32)  # what the tables charge (BOS 0, others 1, no spaces)
    got = run_documents(tiny_model(64), val, None, cfg, adapt="none", val_bytes=same)
    assert (got.result.bytes, got.result.val_bpb) == (ref.result.bytes, pytest.approx(ref.result.val_bpb, rel=1e-12))
    triple = run_documents(tiny_model(64), val, None, cfg, adapt="none", val_bytes=3 * same)
    assert triple.result.bytes == 3 * ref.result.bytes
    with pytest.raises(ValueError, match="val_bytes"):
        run_documents(tiny_model(64), val, None, cfg, adapt="none", val_bytes=same[:-1])


def test_one_driver_per_mode():
    from golf_fast.eval.adapt.config import RESEARCH_MODES, TTT_MODES
    from golf_fast.eval.adapt.run import DRIVERS

    assert set(DRIVERS) == set(TTT_MODES) | set(RESEARCH_MODES)  # a new mode must name its driver
    assert AdaptConfig(ttt="lora").mode == "lora" and AdaptConfig(research="prequant").mode == "prequant"
    assert DRIVERS["lora"] is DRIVERS["phased"] and DRIVERS["none"] is DRIVERS["adamw"]
