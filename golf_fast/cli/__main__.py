"""``python -m golf_fast.cli COMMAND ...`` == ``golf-fast COMMAND ...`` (also under torchrun:
``torchrun --standalone --nproc_per_node=8 -m golf_fast.cli train --preset record``)."""

from golf_fast.cli import main

raise SystemExit(main())
