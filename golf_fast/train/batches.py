"""The run's data: shards and tokenizer found (or the embedded corpus built once), validation
tokens (and their CaseOps byte sidecars, when the data has them) loaded, the training loaders of
this rank, and the Hessian calibration reader.

One step is ``accum`` micro-steps per rank; micro-step k of rank r reads the slice of virtual
rank ``r·accum + k`` of ``world·accum``, each ``tokens_per_rank = train_batch_tokens / (world·accum)``
tokens, so any (world, accum) with the same product sees the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from golf_fast import distributed
from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.corpus import default_dataset
from golf_fast.data.loader import DocumentPackingLoader
from golf_fast.data.errors import check_regular_file
from golf_fast.data.shards import check_token_ids, list_shards, load_tokens, load_val_bytes
from golf_fast.data.windows import RandomWindowLoader
from golf_fast.distributed import Dist
from golf_fast.train.config import TrainConfig


def resolve_data(cfg: TrainConfig, d: Dist, say: Callable[[str], None]) -> tuple[Path, Path]:
    """(data folder, tokenizer path); the embedded corpus (its CaseOps form with ``data.caseops``) is
    built by rank 0 while the others wait."""
    if cfg.data.data_dir:
        data_dir = Path(cfg.data.data_dir)
    else:
        caseops = cfg.data.caseops
        if d.main:
            say("data: the embedded corpus (standard-library docstrings + pydoc topics)"
                + (", CaseOps form" if caseops else ""))
            data_dir = default_dataset(cfg.model.vocab_size, cache_dir=cfg.data.cache_dir or None, caseops=caseops)
        distributed.barrier()
        if not d.main:
            data_dir = default_dataset(cfg.model.vocab_size, cache_dir=cfg.data.cache_dir or None, caseops=caseops)
    tok = Path(cfg.data.tokenizer) if cfg.data.tokenizer else data_dir / "tokenizer.model"
    check_regular_file(tok, "data.tokenizer: SentencePiece model")
    return data_dir, tok


def grad_accum_for(cfg: TrainConfig, world: int) -> int:
    """``data.grad_accum``, or ``8 // world`` like the records (1 when 8 is not a multiple of world)."""
    return cfg.data.grad_accum or (8 // world if 8 % world == 0 else 1)


@dataclass
class TrainData:
    """Everything the run reads: folders, byte table, validation tokens, and the loader factory."""

    cfg: TrainConfig
    d: Dist
    data_dir: Path
    tokenizer: Path
    table: TokenByteTable
    train_files: list
    val: np.ndarray
    accum: int
    tokens_per_rank: int
    val_bytes: Optional[np.ndarray] = None
    """Original UTF-8 bytes per validation token (CaseOps sidecars), parallel to ``val``; None = the table."""

    @classmethod
    def load(cls, cfg: TrainConfig, d: Dist, say: Callable[[str], None]) -> "TrainData":
        data_dir, tok = resolve_data(cfg, d, say)
        table = TokenByteTable.from_sentencepiece(str(tok), vocab_size=cfg.model.vocab_size)
        if table.size > cfg.model.vocab_size:
            raise ValueError(f"model.vocab_size: {cfg.model.vocab_size} is smaller than the tokenizer's "
                             f"{table.size} pieces ({tok})")
        train_files = list_shards(data_dir, "train")
        val_files = list_shards(data_dir, "val")
        val, val_bytes = load_tokens(val_files), load_val_bytes(val_files)
        check_token_ids(val, cfg.model.vocab_size, f"validation shards in {data_dir}")
        if cfg.data.caseops and val_bytes is None:
            raise FileNotFoundError(f"data.caseops: the validation shards in {str(data_dir)!r} have no byte sidecars "
                                    "(*_val_bytes_*.bin); build the data with `golf-fast data build --caseops` "
                                    "(or train on plain data with --data.caseops false)")
        if cfg.data.max_val_tokens:
            val = val[:cfg.data.max_val_tokens]
            val_bytes = val_bytes[:cfg.data.max_val_tokens] if val_bytes is not None else None
        accum = grad_accum_for(cfg, d.world)
        virtual = d.world * accum
        if cfg.data.train_batch_tokens % virtual:
            raise ValueError(f"data.train_batch_tokens: {cfg.data.train_batch_tokens} is not divisible by "
                             f"world_size × grad_accum = {virtual}")
        return cls(cfg, d, data_dir, tok, table, train_files, val, accum, cfg.data.train_batch_tokens // virtual,
                   val_bytes)

    def loaders(self, seed_offset: int = 0) -> list[DocumentPackingLoader]:
        """This rank's ``accum`` loaders (seed ``run.seed + seed_offset``: 0 training, others for
        warm-up and calibration so they do not consume the training stream)."""
        c, d, virtual = self.cfg, self.d, self.d.world * self.accum
        return [DocumentPackingLoader(self.train_files, tokens_per_rank=self.tokens_per_rank,
                                      rank=d.rank * self.accum + k, world_size=virtual,
                                      max_doc_len=c.model.max_seqlen, bos_id=c.model.bos_id, prefetch=c.data.prefetch,
                                      device=d.device, seed=c.run.seed + seed_offset,
                                      shuffle_shards=c.data.shuffle_shards, vocab_size=c.model.vocab_size)
                for k in range(self.accum)]

    def calibration_loader(self) -> Union[RandomWindowLoader, DocumentPackingLoader]:
        """The Hessian reader of ``quant.calibration``: ``windows`` = random ``calibration_seq_len``
        windows across this rank's train shards, ``tokens_per_rank // seq_len`` per batch, no document
        isolation, RNG ``PCG64(rank)`` (the record's ShuffledSequenceLoader); ``batches`` = a
        document-packing loader of the training shape (seed ``run.seed + 3``)."""
        c, d = self.cfg, self.d
        if c.quant.calibration == "batches":
            return self.loaders(seed_offset=3)[0]
        seq = c.quant.calibration_seq_len or c.model.max_seqlen
        return RandomWindowLoader(self.train_files, seq_len=seq, windows=max(1, self.tokens_per_rank // seq),
                                  rank=d.rank, world_size=d.world, device=d.device, vocab_size=c.model.vocab_size)
