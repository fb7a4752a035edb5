"""Benchmark harness: ``golf-fast bench --list | --kernel NAME | --all``."""
