"""``python -m golf_fast.bench``: run the kernel benchmarks (see ``golf_fast.bench.cli``)."""

from golf_fast.bench.cli import main

raise SystemExit(main())
