"""One module per kernel family, each defining ``BENCHMARK`` (see golf_fast.bench.case)."""
