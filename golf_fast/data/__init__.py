"""Data: parameter-golf token shards, SentencePiece byte tables, corpus builder, loaders."""

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.loader import Batch, DocumentPackingLoader, cu_seqlens_from_bos
from golf_fast.data.shards import (MAGIC, VERSION, ShardFormatError, list_shards, load_tokens, load_val_bytes,
                                   read_header, read_shard, sidecar_path, write_shard)

__all__ = ["TokenByteTable", "Batch", "DocumentPackingLoader", "cu_seqlens_from_bos", "MAGIC", "VERSION",
           "ShardFormatError", "list_shards", "load_tokens", "load_val_bytes", "sidecar_path", "read_header", "read_shard", "write_shard"]
