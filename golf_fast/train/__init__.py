"""The lean trainer: typed config + presets, the training loop, and the post-training pipeline.

Modules (each one job, each with its own tests in tests/train):

* ``config``: typed config dataclasses, presets (smoke, h100x1, record), command-line overrides;
* ``cli`` / ``__main__``: ``golf-fast train`` and ``torchrun -m golf_fast.train``;
* ``batches``: data folder and tokenizer, validation tokens, this rank's training loaders;
* ``optimizers``: Muon / Adam groups, lr scaling, replicated-gradient sync, gradient clipping;
* ``schedule``: progress, lr multiplier, looping switch, stop rule, the (cross-rank) training clock;
* ``step``: one optimizer step over the micro-batches, the weight EMA;
* ``steplog``: per-step losses kept on the device, read back and logged on logging steps;
* ``evalhooks``: periodic and final evaluations;
* ``warmup``: compile warm-up with weights restored;
* ``posttrain``: Hessians → GPTQ → artifact → fresh model → round-trip eval;
* ``result``: the run's result, the final table, ``TrainingDiverged``;
* ``runlog``: the log file, JSONL metrics, header;
* ``loop``: wires the parts: ``train(cfg)`` and ``training_loop(...)``.
"""

from golf_fast.train.config import PRESETS, TrainConfig, apply_overrides, preset

__all__ = ["PRESETS", "TrainConfig", "apply_overrides", "preset"]
