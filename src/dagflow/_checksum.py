"""Row and checkpoint checksums, shared by the SQL stores and the checkpoint manager."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

__all__ = ["Checksums"]


class Checksums:
    """Row checksums: HMAC-SHA256 with a key kept outside the database, else SHA-256
    (which catches corruption but not someone who can write to the database)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key

    def __call__(self, *parts: Any) -> str:
        # parts are str, int, float or None: repr() of the tuple is unambiguous and fast
        text = repr(parts)
        if self._key:
            return "h:" + hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
        return "s:" + hashlib.sha256(text.encode()).hexdigest()

    def matches(self, expected: str, *parts: Any) -> bool:
        """Whether ``expected`` is the checksum of ``parts`` (constant time)."""
        return hmac.compare_digest(expected, self(*parts))
