"""Stores by URL: ``memory://``, ``sqlite:///path.db``, ``postgresql://user@host/db``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import StorageError
from .memory import MemoryStorage

if TYPE_CHECKING:
    from .._protocols import WorkflowStorage

__all__ = ["MemoryStorage", "open_storage"]


def open_storage(url: str) -> WorkflowStorage:
    """The store a URL names.

    Raises:
        StorageError: The URL's scheme is not one dagflow knows.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "memory":
        return MemoryStorage()
    raise StorageError(
        f"unknown store URL {url!r}: use memory://, sqlite:///path/to/file.db or "
        "postgresql://user@host:port/database"
    )
