"""Stores by URL: ``memory://``, ``sqlite:///path.db``, ``postgresql://user@host/db``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import StorageError
from .memory import MemoryStorage

if TYPE_CHECKING:
    from .._protocols import WorkflowStorage

__all__ = ["MemoryStorage", "open_storage"]


def open_storage(url: str, *, key: bytes | None = None) -> WorkflowStorage:
    """The store a URL names.

    Args:
        url: ``memory://``, ``sqlite:///path.db`` or ``postgresql://user@host/db``.
        key: HMAC key for the checksums of stored rows and checkpoints.

    Raises:
        StorageError: The URL's scheme is not one dagflow knows.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryStorage()
    if scheme == "sqlite":
        from .sqlite import SqliteStorage

        return SqliteStorage.from_url(url, key=key)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStorage

        return PostgresStorage.from_url(url, key=key)
    raise StorageError(
        f"unknown store URL {url!r}: use memory://, sqlite:///path/to/file.db or "
        "postgresql://user@host:port/database"
    )
