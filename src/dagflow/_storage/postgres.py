"""``postgresql://user@host:port/db``: the store several engine processes can share.

Needs the ``postgres`` extra (psycopg 3 and its pool), imported only when such a URL is
opened. psycopg's blocking API runs in worker threads, so the store works on asyncio and
trio alike. ``?schema=NAME`` keeps dagflow's tables in their own schema (created if
missing); other query options go to libpq.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
import zlib
from typing import Any

import anyio

from .._errors import StorageError
from ._sql import SqlStorage

__all__ = ["PostgresStorage"]


class PostgresStorage(SqlStorage):
    """The :class:`~dagflow.WorkflowStorage` of ``postgresql://`` URLs.

    Args:
        conninfo: A libpq connection string or URL.
        schema: Where dagflow's tables live (default: the connection's search path).
        pool_size: Most connections kept open.
        key: The HMAC key for row checksums (default: plain SHA-256).
    """

    placeholder = "%s"
    greatest = "GREATEST"
    for_update = " FOR UPDATE"
    threads = 4
    # each write in its own transaction, several at once: sharing one measured no faster
    # here, and two processes' shared transactions could lock rows in opposite orders
    share_transactions = False

    def __init__(self, conninfo: str, *, schema: str | None = None, pool_size: int = 4,
                 key: bytes | None = None) -> None:
        super().__init__(key=key)
        try:
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise StorageError("PostgreSQL stores need the postgres extra: "
                               "pip install 'dagflow[postgres]'") from None
        if schema is not None and not schema.replace("_", "").isalnum():
            raise StorageError(f"schema {schema!r}: use letters, digits and '_'")
        self.schema = schema
        self._conninfo = conninfo
        self._shown = _without_password(conninfo)
        configure = self._configure if schema else None
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=pool_size, open=False,
                                    configure=configure, kwargs={"autocommit": False})
        self._opened = False
        self._opening = threading.Lock()

    def __repr__(self) -> str:
        return f"<PostgresStorage {self._shown}>"

    @classmethod
    def from_url(cls, url: str, *, key: bytes | None = None) -> PostgresStorage:
        """The store of ``postgresql://user@host:port/db?schema=NAME``."""
        parsed = urllib.parse.urlsplit(url)
        options = urllib.parse.parse_qsl(parsed.query)
        schema = next((v for k, v in options if k == "schema"), None)
        rest = urllib.parse.urlencode([(k, v) for k, v in options if k != "schema"])
        conninfo = urllib.parse.urlunsplit(parsed._replace(query=rest))
        return cls(conninfo, schema=schema, key=key)

    def _configure(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            cur.execute(f'SET search_path TO "{self.schema}"')
        conn.commit()

    def _connection(self, write: bool = True) -> Any:
        if not self._opened:
            with self._opening:
                if not self._opened:
                    self._open()
        return self._pool.getconn()

    def _open(self) -> None:
        if not self._opened:
            import psycopg

            try:  # one plain connection first: it fails fast and says why
                psycopg.connect(self._conninfo, connect_timeout=5).close()
            except psycopg.Error as exc:
                raise StorageError(f"cannot connect to {self._shown}: "
                                   f"{_hide(str(exc).strip(), self._conninfo)}") from None
            try:
                self._pool.open(wait=True, timeout=10)
            except Exception as exc:
                raise StorageError(f"cannot connect to {self._shown}: "
                                   f"{_hide(str(exc), self._conninfo)}") from None
            conn = self._pool.getconn()
            try:
                with conn.cursor() as cur:
                    # one process creates or migrates the tables at a time
                    cur.execute("SELECT pg_advisory_xact_lock(%s)",
                                (zlib.crc32(b"dagflow-schema") & 0x7FFFFFFF,))
                    self._setup(cur)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                self._pool.putconn(conn)
            self._opened = True

    def _release(self, conn: Any) -> None:
        self._pool.putconn(conn)

    async def close(self) -> None:
        """Close every pooled connection (also after a failed open)."""
        self._closed = True
        await anyio.to_thread.run_sync(self._pool.close)


_PASSWORD_OPTION = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.I)


def _without_password(conninfo: str) -> str:
    """The connection string with every password (URL user part, ``?password=``,
    ``password=...`` in a key=value string) replaced by ``***``."""
    shown = _PASSWORD_OPTION.sub(r"\1***", conninfo)
    if "://" in shown:
        parsed = urllib.parse.urlsplit(shown)
        if parsed.password:
            netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
            shown = urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
    return shown


def _hide(message: str, conninfo: str) -> str:
    """A driver's message without the password of ``conninfo``."""
    for secret in _passwords(conninfo):
        message = message.replace(secret, "***")
    return message


def _passwords(conninfo: str) -> list[str]:
    found = [m.group(2).strip("'") for m in _PASSWORD_OPTION.finditer(conninfo)]
    if "://" in conninfo:
        password = urllib.parse.urlsplit(conninfo).password
        if password:
            found.append(password)
    return [p for p in found if p]
