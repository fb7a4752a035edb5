"""Kernel inspection without a GPU: sm_90 compilation and resource reports."""
