"""From a run to a records folder: a self-contained ``train_gpt.py``, exact code bytes, the budget,
multi-seed statistics, README.md and submission.json (``golf-fast export``). Top layer: nothing in
the package imports it."""
