"""The clean environment of the export tests: :mod:`golf_fast.export.clean_env` (the rehearsal uses it too)."""

import sys
from pathlib import Path

from golf_fast.export.clean_env import WANTED, clean_environ, make_clean_env

__all__ = ["WANTED", "clean_environ", "make_clean_env"]

if __name__ == "__main__":  # manual use: python tests/export/clean_env.py DIR
    print(make_clean_env(Path(sys.argv[1])))
