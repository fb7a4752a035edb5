"""``torchrun --nproc_per_node=N -m golf_fast.train [options]`` == ``golf-fast train [options]``."""

from golf_fast.train.cli import main

raise SystemExit(main())
