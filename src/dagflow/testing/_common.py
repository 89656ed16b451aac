"""What every conformance kit shares: running named checks, comparing values so that a
failure names the first field that differs, and the stores one storage check opens.

A kit stops at the first violation and raises :class:`AssertionError` as
``"<kit>: <check>: <what differed>"``; anything else a check raises (a ``KeyError`` from
the implementation, say) is reported the same way, as unexpected.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import anyio
import attrs

from .._errors import WorkflowNotFound
from .._models import Checkpoint, WorkflowInstance
from .._protocols import InstanceStore

__all__ = ["StoreCheck", "StoreRun", "checkpoint_ids", "diff", "expect_raises", "ids_of",
           "known", "load_instance", "made", "named", "no_events", "run_store_checks", "same",
           "short"]

#: One check of a storage kit: it opens the stores it needs through the run.
StoreCheck = Callable[["StoreRun"], Awaitable[None]]


@contextlib.contextmanager
def named(kit: str, check: str) -> Iterator[None]:
    """Report a failure inside the block as ``AssertionError("<kit>: <check>: ...")``."""
    try:
        yield
    except Exception as exc:
        inner = _only(exc)
        if isinstance(inner, AssertionError):
            raise AssertionError(f"{kit}: {check}: {inner}") from exc
        raise AssertionError(f"{kit}: {check}: unexpected {type(inner).__name__}: "
                             f"{inner}") from exc


def _only(exc: BaseException) -> BaseException:
    """The one error inside (nested) one-item exception groups, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def made(value: Any) -> Any:
    """What a factory returned, awaited if it is awaitable."""
    return await value if inspect.isawaitable(value) else value


# --------------------------------------------------------------------------- stores


@attrs.define(eq=False)
class StoreRun:
    """One storage check's stores: made, reopened, and closed at the end."""

    make: Callable[[], Any]
    reopen: Callable[[Any], Any] | None = None
    durable: bool = False
    opened: list[Any] = attrs.Factory(list)
    closed: set[int] = attrs.Factory(set)

    async def new(self) -> Any:
        """A new store from the factory."""
        return self._track(await made(self.make()))

    async def again(self, store: Any) -> Any:
        """Another store on the database of ``store`` (as a second process opens it)."""
        assert self.reopen is not None
        return self._track(await made(self.reopen(store)))

    def _track(self, store: Any) -> Any:
        self.opened.append(store)
        return store

    async def close_one(self, store: Any) -> None:
        """Close ``store`` (once, and only if it can be closed)."""
        close = getattr(store, "close", None)
        if id(store) not in self.closed and close is not None:
            self.closed.add(id(store))
            await close()

    async def close(self) -> None:
        """Close every store this check opened, newest first."""
        with anyio.CancelScope(shield=True):  # shielded: a failed check still closes
            for store in reversed(self.opened):
                await self.close_one(store)


async def run_store_checks(kit: str, checks: Sequence[tuple[str, StoreCheck]],
                           make: Callable[[], Any], *, reopen: Callable[[Any], Any] | None = None,
                           durable: bool = False) -> None:
    """Run each check with stores of its own; stop at the first failure."""
    for name, check in checks:
        run = StoreRun(make, reopen, durable)
        try:
            with named(kit, name):
                await check(run)
        finally:
            await run.close()


async def known(store: Any, *instances: WorkflowInstance) -> None:
    """Store ``instances`` first when ``store`` keeps instances too: the built-in stores
    keep an instance's checkpoints, leases and controls only while it exists."""
    if isinstance(store, InstanceStore):
        for instance in instances:
            await store.store_workflow(instance)


# --------------------------------------------------------------------------- assertions


def short(value: Any) -> str:
    """``repr(value)``, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 160 else f"{text[:120]}... ({len(text)} chars)"


def diff(got: Any, want: Any, path: str) -> str | None:
    """Where ``got`` first differs from ``want``, or None if they are equal."""
    if got == want:
        return None
    if type(got) is not type(want):
        return f"{path}: got {type(got).__name__} {short(got)}, expected " \
               f"{type(want).__name__} {short(want)}"
    if attrs.has(type(want)):
        for field in attrs.fields(type(want)):
            found = diff(getattr(got, field.name), getattr(want, field.name),
                         f"{path}.{field.name}")
            if found:
                return found
    elif isinstance(want, dict):
        if got.keys() != want.keys():
            return (f"{path}: keys {sorted(map(str, got))[:10]}, expected "
                    f"{sorted(map(str, want))[:10]}")
        for key in want:
            found = diff(got[key], want[key], f"{path}[{key!r}]")
            if found:
                return found
    elif isinstance(want, list | tuple):
        if len(got) != len(want):
            return f"{path}: {len(got)} items, expected {len(want)}"
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            found = diff(a, b, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(want, str):
        at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                  min(len(got), len(want)))
        return (f"{path}: strings differ at index {at} (lengths {len(got)} and {len(want)}): "
                f"got {short(got[at:at + 20])}, expected {short(want[at:at + 20])}")
    return f"{path}: got {short(got)}, expected {short(want)}"


def same(what: str, got: Any, want: Any) -> None:
    """Fail with the first difference between ``got`` and ``want``."""
    found = diff(got, want, what)
    if found is not None:
        raise AssertionError(found)


async def load_instance(store: Any, instance_id: str, what: str) -> WorkflowInstance:
    """``store.load_workflow(instance_id)``, which must find a WorkflowInstance."""
    loaded = await store.load_workflow(instance_id)
    if loaded is None:
        raise AssertionError(f"{what}: load_workflow({instance_id!r}) returned None")
    assert isinstance(loaded, WorkflowInstance), \
        f"{what}: load_workflow returned {type(loaded).__name__}, not a WorkflowInstance"
    return loaded


async def expect_raises(exc_type: type[BaseException], what: str,
                        call: Awaitable[Any]) -> BaseException:
    """Await ``call``, which must raise ``exc_type``; return what it raised."""
    try:
        result = await call
    except exc_type as exc:
        return exc
    except Exception as exc:
        raise AssertionError(f"{what}: raised {type(exc).__name__} ({exc}), expected "
                             f"{exc_type.__name__}") from exc
    raise AssertionError(f"{what}: returned {short(result)}, expected {exc_type.__name__}")


async def no_events(store: Any, instance_id: str, what: str) -> None:
    """``load_events`` finds nothing: ``[]``, or WorkflowNotFound for an unknown id."""
    try:
        events = await store.load_events(instance_id)
    except WorkflowNotFound:
        return
    assert events == [], f"{what}: load_events returned {len(events)} events, expected none"


def ids_of(instances: Sequence[WorkflowInstance]) -> list[str]:
    """The ids of ``instances``, in order."""
    return [i.id for i in instances]


def checkpoint_ids(checkpoints: Sequence[Checkpoint]) -> list[str]:
    """The ids of ``checkpoints``, in order."""
    return [c.id for c in checkpoints]
