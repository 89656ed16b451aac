"""The storage contract (``dagflow.testing.check_storage``) against every store dagflow
ships: memory, SQLite (``synchronous`` full and normal) and PostgreSQL.

PostgreSQL tests read ``DAGFLOW_TEST_POSTGRES`` (a URL); without it they skip, unless
``DAGFLOW_REQUIRE_SERVICES=1``, when they fail. Each PostgreSQL store gets a schema of its
own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from dagflow._models import InstanceChanges, WorkflowInstance
from dagflow._storage import MemoryStorage, open_storage
from dagflow._storage.postgres import PostgresStorage
from dagflow._storage.sqlite import SqliteStorage
from dagflow.testing import check_storage

pytestmark = pytest.mark.anyio


def postgres_base() -> str:
    """The PostgreSQL URL to test against, or skip (fail under DAGFLOW_REQUIRE_SERVICES=1)."""
    url = os.environ.get("DAGFLOW_TEST_POSTGRES", "")
    if url:
        return url
    if os.environ.get("DAGFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail("DAGFLOW_REQUIRE_SERVICES=1 but DAGFLOW_TEST_POSTGRES is not set")
    pytest.skip("PostgreSQL tests need DAGFLOW_TEST_POSTGRES=postgresql://USER@HOST:PORT/DB")


@pytest.fixture
def postgres_schemas() -> Iterator[tuple[str, list[str]]]:
    """The server URL and a list to add schema names to; each is dropped afterwards."""
    base = postgres_base()
    schemas: list[str] = []
    yield base, schemas
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_memory_store_keeps_the_contract() -> None:
    """MemoryStorage passes the kit as a non-durable store."""
    await check_storage(MemoryStorage, durable=False)


async def test_memory_url_store_keeps_the_contract() -> None:
    """``open_storage("memory://")`` gives a store that passes the kit."""
    await check_storage(lambda: open_storage("memory://"), durable=False)


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_sqlite_store_keeps_the_contract(tmp_path: Path, synchronous: str) -> None:
    """SqliteStorage passes the kit as a durable store, a new file per check."""
    def make() -> SqliteStorage:
        url = f"sqlite:///{tmp_path / uuid.uuid4().hex}.db?synchronous={synchronous}"
        store = open_storage(url)
        assert isinstance(store, SqliteStorage)
        return store

    def reopen(old: SqliteStorage) -> SqliteStorage:
        return SqliteStorage(old.path, synchronous=synchronous)

    await check_storage(make, reopen=reopen)


async def test_sqlite_store_with_a_key_keeps_the_contract(tmp_path: Path) -> None:
    """SqliteStorage with an HMAC key passes the kit (one shared file for every check)."""
    path = tmp_path / "shared.db"
    await check_storage(lambda: SqliteStorage(path, key=b"secret"),
                        reopen=lambda old: SqliteStorage(old.path, key=b"secret"))


async def test_postgres_store_keeps_the_contract(
        postgres_schemas: tuple[str, list[str]]) -> None:
    """PostgresStorage passes the kit as a durable store, a new schema per check."""
    base, schemas = postgres_schemas
    urls: dict[int, str] = {}

    def open_url(url: str) -> PostgresStorage:
        store = open_storage(url)
        assert isinstance(store, PostgresStorage)
        urls[id(store)] = url
        return store

    def make() -> PostgresStorage:
        schemas.append(f"dagflow_test_{uuid.uuid4().hex}")
        sep = "&" if "?" in base else "?"
        return open_url(f"{base}{sep}schema={schemas[-1]}")

    await check_storage(make, reopen=lambda old: open_url(urls[id(old)]))


class _SilentCommit(MemoryStorage):
    """Loses commits to unknown instances instead of raising WorkflowNotFound."""

    async def commit(self, instance_id: str, changes: InstanceChanges) -> None:
        if await self.load_workflow(instance_id) is not None:
            await super().commit(instance_id, changes)


class _LossyOutputs(MemoryStorage):
    """Forgets the ``data`` of task outputs."""

    async def load_workflow(self, instance_id: str) -> WorkflowInstance | None:
        found = await super().load_workflow(instance_id)
        if found is None:
            return None
        states = {k: attrs.evolve(s, output=attrs.evolve(s.output, data=None))
                  if s.output is not None else s for k, s in found.task_states.items()}
        return attrs.evolve(found, task_states=states)


@pytest.mark.parametrize(("store", "message"), [
    (_SilentCommit, r"unknown ids: commit to an unknown id: returned None, expected "
                    r"WorkflowNotFound"),
    (_LossyOutputs, r"round trip: load_workflow\.task_states\['build'\]\.output\.data: got "
                    r"None"),
])
async def test_kit_names_the_check_and_the_difference(store: type[MemoryStorage],
                                                      message: str) -> None:
    """A store that breaks the contract fails the kit with the check's name and the first
    field that differs."""
    with pytest.raises(AssertionError, match=message):
        await check_storage(store, durable=False)


async def test_kit_needs_reopen_for_durable_stores() -> None:
    """``durable=True`` without ``reopen`` is a TypeError that says what to pass."""
    with pytest.raises(TypeError, match="reopen"):
        await check_storage(MemoryStorage)
