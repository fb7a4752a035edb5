"""The artifact's error type. A leaf module: every artifact module may import it, it imports none."""

from __future__ import annotations


class ArtifactError(ValueError):
    """A malformed, corrupted or inconsistent artifact (the message says what and where)."""

