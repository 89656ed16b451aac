"""The conformance kits of ``dagflow.testing``: every default passes its seam's kit, and an
implementation broken on purpose (a default with one method changed) fails it with a
message that names what was wrong.

PostgreSQL tests read ``DAGFLOW_TEST_POSTGRES`` (a URL); without it they skip, unless
``DAGFLOW_REQUIRE_SERVICES=1``, when they fail. Each gets a schema of its own, dropped
afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dagflow import (
    ApprovalRequest,
    Checkpoint,
    ComposedStorage,
    MemoryStorage,
)
from dagflow._storage import open_storage
from dagflow._storage.sqlite import SqliteStorage
from dagflow.testing import (
    check_approval_store,
    check_checkpoint_store,
    check_control_store,
    check_instance_store,
    check_lease_store,
    check_storage,
)

pytestmark = pytest.mark.anyio

PART_KITS = [check_checkpoint_store, check_lease_store, check_approval_store,
             check_control_store]


def postgres_base() -> str:
    """The PostgreSQL URL to test against, or skip (fail under DAGFLOW_REQUIRE_SERVICES=1)."""
    url = os.environ.get("DAGFLOW_TEST_POSTGRES", "")
    if url:
        return url
    if os.environ.get("DAGFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail("DAGFLOW_REQUIRE_SERVICES=1 but DAGFLOW_TEST_POSTGRES is not set")
    pytest.skip("PostgreSQL tests need DAGFLOW_TEST_POSTGRES=postgresql://USER@HOST:PORT/DB")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of an empty schema of its own, dropped afterwards."""
    base = postgres_base()
    schema = f"dagflow_kits_{uuid.uuid4().hex}"
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_import_dagflow_does_not_load_the_kits() -> None:
    """``import dagflow`` (and using the engine's names) leaves dagflow.testing unloaded."""
    probe = ("import sys, dagflow\ndagflow.Engine, dagflow.MemoryStorage\n"
             "print('dagflow.testing' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------- storage parts


@pytest.mark.parametrize("kit", PART_KITS, ids=lambda kit: kit.__name__)
async def test_memory_store_passes_each_part_kit(kit: Callable[..., Any]) -> None:
    """MemoryStorage passes the kit of each part it implements."""
    await kit(MemoryStorage)


async def test_memory_store_passes_the_instance_kit() -> None:
    """MemoryStorage passes the instance kit as a non-durable store."""
    await check_instance_store(MemoryStorage, durable=False)


@pytest.mark.parametrize("kit", PART_KITS, ids=lambda kit: kit.__name__)
async def test_sqlite_store_passes_each_part_kit(tmp_path: Path,
                                                 kit: Callable[..., Any]) -> None:
    """SqliteStorage passes the kit of each part, every check on one shared file."""
    await kit(lambda: SqliteStorage(tmp_path / "shared.db"))


async def test_sqlite_store_passes_the_instance_kit(tmp_path: Path) -> None:
    """SqliteStorage passes the instance kit as a durable store, reopened on its file."""
    await check_instance_store(lambda: SqliteStorage(tmp_path / f"{uuid.uuid4().hex}.db"),
                               reopen=lambda old: SqliteStorage(old.path))


@pytest.mark.parametrize("kit", [*PART_KITS, check_instance_store],
                         ids=lambda kit: kit.__name__)
async def test_postgres_store_passes_each_part_kit(postgres_url: str,
                                                   kit: Callable[..., Any]) -> None:
    """PostgresStorage passes the kit of each part, every check on one shared schema."""
    if kit is check_instance_store:
        await kit(lambda: open_storage(postgres_url), reopen=lambda old: open_storage(
            postgres_url))
    else:
        await kit(lambda: open_storage(postgres_url))


def _composed(path: Path) -> ComposedStorage:
    """Instances and leases in one SQLite file, every other part in another."""
    both = SqliteStorage(path)
    return ComposedStorage(SqliteStorage(path.with_suffix(".rest.db")), instances=both,
                           leases=both)


def _reopen_composed(old: ComposedStorage) -> ComposedStorage:
    assert isinstance(old.instances, SqliteStorage)
    return _composed(Path(old.instances.path))


async def test_composed_store_of_one_sqlite_store_passes_check_storage(tmp_path: Path) -> None:
    """A ComposedStorage with every part from one SQLite store passes the whole kit."""
    await check_storage(lambda: ComposedStorage(SqliteStorage(tmp_path / f"{uuid.uuid4()}.db")),
                        reopen=lambda old: ComposedStorage(SqliteStorage(old.default.path)))


@pytest.mark.parametrize("kit", [*PART_KITS, check_instance_store],
                         ids=lambda kit: kit.__name__)
async def test_composed_store_of_two_sqlite_stores_passes_each_part_kit(
        tmp_path: Path, kit: Callable[..., Any]) -> None:
    """A ComposedStorage whose parts live in two SQLite files passes every part's kit."""
    def make() -> ComposedStorage:
        return _composed(tmp_path / f"{uuid.uuid4().hex}.db")

    if kit is check_instance_store:
        await kit(make, reopen=_reopen_composed)
    else:
        await kit(make)


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="ComposedStorage.delete_workflow deletes from the instance part "
                          "only: checkpoints and controls kept in another part stay")
async def test_composed_store_of_two_sqlite_stores_passes_check_storage(
        tmp_path: Path) -> None:
    """A ComposedStorage of two SQLite files passes the whole kit, fencing included
    (instances and leases are one store)."""
    await check_storage(lambda: _composed(tmp_path / f"{uuid.uuid4().hex}.db"),
                        reopen=_reopen_composed)


class _AnyoneRenews(MemoryStorage):
    """Renews a lease for whoever asks, even after another owner took it."""

    async def renew_lease(self, instance_id: str, owner: str, seconds: float) -> bool:
        return True


class _NewestFirst(MemoryStorage):
    """Lists checkpoints newest first."""

    async def list_checkpoints(self, instance_id: str) -> list[Checkpoint]:
        return list(reversed(await super().list_checkpoints(instance_id)))


class _KeepsControls(MemoryStorage):
    """Hands out control requests without removing them."""

    async def take_controls(self, instance_id: str) -> list[tuple[str, str]]:
        taken = await super().take_controls(instance_id)
        for action, reason in taken:
            await self.request_control(instance_id, action, reason)
        return taken


class _SwallowsRefusals(MemoryStorage):
    """Ignores an error raised by an approval change, as if it had been applied."""

    async def update_approval(
        self, approval_id: str,
        change: Callable[[ApprovalRequest], tuple[ApprovalRequest, str]],
    ) -> ApprovalRequest:
        try:
            return await super().update_approval(approval_id, change)
        except Exception:
            found = await self.load_approval(approval_id)
            assert found is not None
            return found


class _IgnoresAfter(MemoryStorage):
    """Returns every event, whatever ``after`` says."""

    async def load_events(self, instance_id: str, after: int = 0,
                          limit: int | None = None) -> list[Any]:
        return await super().load_events(instance_id, 0, limit)


@pytest.mark.parametrize(("kit", "store", "message"), [
    (check_lease_store, _AnyoneRenews,
     r"check_lease_store: leases: A renewed a lease B has taken over"),
    (check_checkpoint_store, _NewestFirst,
     r"check_checkpoint_store: checkpoints: list_checkpoints \(oldest first\)"),
    (check_control_store, _KeepsControls,
     r"check_control_store: controls: take_controls a second time: 3 items, expected 0"),
    (check_approval_store, _SwallowsRefusals,
     r"check_approval_store: approval gates: update_approval swallowed the error"),
    (check_instance_store, _IgnoresAfter,
     r"check_instance_store: commit and load_events: load_events\(after=2\): 8 items, "
     r"expected 6"),
], ids=["lease", "checkpoint", "control", "approval", "instance"])
async def test_part_kit_names_what_a_broken_store_got_wrong(
        kit: Callable[..., Any], store: type[MemoryStorage], message: str) -> None:
    """A store broken in one method fails its part's kit, which names the check and the
    difference."""
    options = {"durable": False} if kit is check_instance_store else {}
    with pytest.raises(AssertionError, match=message):
        await kit(store, **options)


async def test_instance_kit_needs_reopen_for_durable_stores() -> None:
    """``check_instance_store(durable=True)`` without ``reopen`` is a TypeError."""
    with pytest.raises(TypeError, match="reopen"):
        await check_instance_store(MemoryStorage)
