"""The smallest trainer configuration that still runs every stage (looping, parallel lanes, XSA, EMA,
Hessians, GPTQ, golf-rans artifact, reload, plain + sliding eval) and the text it trains on; shared by
the end-to-end tests of the trainer and of the export (tests/ is on sys.path)."""

TEXT = ["the cat sat on the mat and the dog sat on the log", "a quick brown fox jumps over the lazy dog",
        "she sells sea shells by the sea shore", "peter piper picked a peck of pickled peppers",
        "how much wood would a woodchuck chuck if a woodchuck could chuck wood"]

TINY = {
    "model.vocab_size": 320, "model.num_layers": 4, "model.model_dim": 32, "model.num_heads": 2,
    "model.num_kv_heads": 1, "model.loop_start": 1, "model.loop_end": 2, "model.parallel_start_layer": 3,
    "model.max_seqlen": 64, "model.rope_dims": 8, "model.xsa_last_n": 4,
    "data.train_batch_tokens": 512, "data.grad_accum": 1, "data.prefetch": 1,
    "schedule.clock": "steps", "schedule.max_steps": 4, "schedule.enable_looping_at": 0.5,
    "quant.calibration_batches": 2, "eval.seq_len": 64, "eval.stride": 32, "eval.batch_seqs": 8,
    "run.log_every": 1, "run.compile": "off", "run.device": "cpu",
}
