"""Stores by URL: ``memory://``, ``sqlite:///path.db``, ``postgresql://user@host/db``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import StorageError
from .memory import MemoryStorage

if TYPE_CHECKING:
    from .._protocols import WorkflowStorage

__all__ = ["MemoryStorage", "open_storage", "open_store"]


def open_store(url: str, *, key: bytes | None = None) -> WorkflowStorage:
    """The store a URL names, as ``Engine(store=url)`` and ``dagflow run --store`` open it.

    ``memory://`` gives a :class:`~dagflow.MemoryStorage`, ``sqlite:///path.db`` a
    :class:`~dagflow.SqliteStorage` (four slashes for an absolute path), and
    ``postgresql://user@host:port/db`` a :class:`~dagflow.PostgresStorage`, which needs
    the ``postgres`` extra. Nothing is connected or created until the store is first used.

    Args:
        url: ``memory://``, ``sqlite:///path.db`` or ``postgresql://user@host/db``.
        key: HMAC key for the checksums of stored rows and checkpoints.

    Returns:
        A :class:`~dagflow.WorkflowStorage`.

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


# the engine core's name for it, from before open_store was public
open_storage = open_store
