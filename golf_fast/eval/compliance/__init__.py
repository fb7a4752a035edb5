"""Compliance with the challenge's evaluation rules, decided from what happened, not from names:
``events`` (the score/update event log every adaptive driver writes), ``checker`` (conditions 1–4
decided from that log and the probes)."""
