"""Evaluation-time adapters: per-document LoRA, full-parameter training of the last blocks
(AdamW), global SGD phases, and their shared training step."""
