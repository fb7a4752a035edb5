"""Benchmark harness: ``python -m golf_fast.bench --list | --kernel NAME | --all``."""
