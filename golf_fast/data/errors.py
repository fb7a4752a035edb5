"""The data layer's error type and the file check every reader uses first.

``DataError`` (a ``ValueError``) is a problem with the user's data: a shard that is not in the
format, token ids outside the vocabulary, a path that is a folder or a device where a file was
expected. A missing file stays ``FileNotFoundError``. The CLIs print either as one line and exit
non-zero. A leaf module: the other data modules import it.
"""

from __future__ import annotations

import os
import stat
from typing import Union


class DataError(ValueError):
    """Bad input data (the message names the file or argument and what was expected)."""


def check_regular_file(path: Union[str, os.PathLike], what: str) -> None:
    """``path`` names an existing regular file: else ``FileNotFoundError`` (missing) or
    ``DataError`` (a folder; a device, pipe or socket such as ``/dev/zero``)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: {p!r} does not exist") from None
    except OSError as exc:
        raise DataError(f"{what}: cannot access {p!r} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{what}: {p!r} is a folder, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{what}: {p!r} is not a regular file (a device, pipe or socket)")
