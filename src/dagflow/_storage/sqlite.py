"""``sqlite:///path.db``: the embedded default store.

One file, WAL journal, ``synchronous=FULL`` by default (a committed change survives a
power cut; ``?synchronous=normal`` keeps it across process crashes only, and is faster),
a 10-second busy timeout so that several processes can share the file. Tables are
created, or migrated, on first use. A store has two connections: one for its writes
(which share transactions, see :mod:`dagflow._storage._sql`) and one for its reads, which
do not wait for a write being committed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from typing import Any

import anyio

from .._errors import StorageError
from ._sql import SqlStorage

__all__ = ["SqliteStorage", "sqlite_path"]

_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}


def sqlite_path(url: str) -> tuple[str, dict[str, str]]:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``; plus the
    query options.

    Raises:
        StorageError: The URL names no file.
    """
    parsed = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parsed.path)
    path = path[1:] if path.startswith("/") else path
    if parsed.netloc or not path:
        raise StorageError(f"invalid SQLite URL {url!r}: write sqlite:///relative/path.db or "
                           "sqlite:////absolute/path.db")
    return path, dict(urllib.parse.parse_qsl(parsed.query))


class SqliteStorage(SqlStorage):
    """The :class:`~dagflow.WorkflowStorage` of ``sqlite:///...`` URLs.

    Args:
        path: The database file (its directory is created if needed).
        synchronous: ``full`` (default), ``normal`` or ``extra``: SQLite's durability.
        key: The HMAC key for row checksums (default: plain SHA-256).
    """

    threads = 1  # one writer at a time anyway; one connection, used by one thread at once

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "full",
                 key: bytes | None = None) -> None:
        super().__init__(key=key)
        self.path = os.fspath(path)
        if synchronous.lower() not in _SYNCHRONOUS:
            raise StorageError(f"synchronous={synchronous!r}: use full, normal or extra")
        self.synchronous = _SYNCHRONOUS[synchronous.lower()]
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._read_limiter = anyio.CapacityLimiter(1)
        self._ready = False

    def __repr__(self) -> str:
        return f"<SqliteStorage {self.path!r}>"

    @classmethod
    def from_url(cls, url: str, *, key: bytes | None = None) -> SqliteStorage:
        """The store of ``sqlite:///path.db?synchronous=normal``."""
        path, options = sqlite_path(url)
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise StorageError(f"unknown SQLite URL option(s) {', '.join(sorted(unknown))} "
                               "(known: synchronous)")
        return cls(path, synchronous=options.get("synchronous", "full"), key=key)

    def _connection(self, write: bool = True) -> Any:
        # Writes go through one connection, reads through another, so that a read does
        # not wait for the write being committed (WAL readers see the last commit). The
        # locks, not only the thread limiters, keep each connection to one transaction
        # at a time: a worker thread whose caller was cancelled may still be using it.
        lock = self._lock if write else self._read_lock
        lock.acquire()
        try:
            if self._closed:  # a transaction that was queued when the store was closed
                raise StorageError("the store is closed")
            if write:
                return self._open()
            if self._reader is None:
                if not self._ready:
                    with self._lock:
                        self._open()  # the tables first
                self._reader = self._connect()
            return self._reader
        except BaseException:
            lock.release()
            raise

    def _release(self, conn: Any) -> None:
        (self._read_lock if conn is self._reader else self._lock).release()

    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _open(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect()
        if not self._ready:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                self._setup(cur)
                self._conn.commit()
            except BaseException:
                self._conn.rollback()
                raise
            self._ready = True
        return self._conn

    def _begin(self, cur: Any, write: bool) -> None:
        # IMMEDIATE takes the write lock up front: two processes never deadlock upgrading
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    async def close(self) -> None:
        """Close the connection (once the transaction in progress, if any, is done)."""
        self._closed = True

        def close_connections() -> None:
            with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()
            with self._read_lock:
                reader, self._reader = self._reader, None
                if reader is not None:
                    reader.close()

        await anyio.to_thread.run_sync(close_connections)
