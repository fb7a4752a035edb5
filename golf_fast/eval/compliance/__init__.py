"""Compliance with the challenge's evaluation rules, decided from what happened, not from names:
``events`` (the score/update/read log), ``guarded`` (the stream reader every driver reads the
validation tokens through, recording each read), ``checker`` (conditions 1–4 from the log and the
per-position checks; the sums recomputed from the logged losses), ``audit`` (the replay audit)."""
