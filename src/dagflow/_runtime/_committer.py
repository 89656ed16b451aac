"""One group commit for all the runs of an engine: what their journals queued is written
in one transaction (``InstanceStore.commit_many``), so a thousand small runs cost a few
transactions per step, not a thousand."""

from __future__ import annotations

import functools
import logging
from typing import Protocol

import anyio
import attrs

from .._clock import Clock
from .._execute._retry import commit_with_retries
from .._models import InstanceChanges
from .._protocols import InstanceStore

__all__ = ["Committer", "Journal", "Piece"]


class Piece(Protocol):
    """What one transaction writes for one run (see ``_journal.Piece``)."""

    size: int
    done: anyio.Event

    def changes(self) -> InstanceChanges:
        """The piece as one change."""
        ...


class Journal(Protocol):
    """What the committer needs of a run's journal (``_journal.Journal``)."""

    instance_id: str
    inflight: anyio.Event | None

    def take(self) -> Piece | None:
        """The oldest piece to commit."""
        ...

    def has_more(self) -> bool:
        """Whether pieces are still queued."""
        ...

    def failed(self, exc: BaseException, piece: Piece) -> None:
        """The store refused ``piece``."""
        ...

    def committed(self, piece: Piece) -> None:
        """``piece`` is durable."""
        ...

logger = logging.getLogger("dagflow")

#: most changes in one transaction, all runs together
MAX_CHANGES = 2_000


@attrs.define(eq=False, repr=False)
class Committer:
    """Commits the pieces of every journal that has some, oldest piece of each first, in
    one transaction; runs in the engine's task group while the engine is entered."""

    store: InstanceStore
    clock: Clock
    _dirty: dict[str, Journal] = attrs.Factory(dict)  # in the order they asked
    _wake: anyio.Event = attrs.Factory(anyio.Event)
    running: bool = False

    def __repr__(self) -> str:
        return f"<Committer waiting={len(self._dirty)}>"

    def mark(self, journal: Journal) -> None:
        """``journal`` has a piece to commit."""
        if journal.instance_id not in self._dirty:
            self._dirty[journal.instance_id] = journal
            self._wake.set()

    async def run(self) -> None:
        """Commit what the journals queued, round after round, until cancelled."""
        self.running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self._dirty:
                    await self._round()
        finally:
            self.running = False

    async def _round(self) -> None:
        """Take one piece from each waiting journal (up to MAX_CHANGES in all) and
        commit them together."""
        batch: list[tuple[Journal, Piece]] = []
        size = 0
        for instance_id in list(self._dirty):
            if size >= MAX_CHANGES:
                break
            journal = self._dirty.pop(instance_id)
            piece = journal.take()
            if piece is None:
                continue
            batch.append((journal, piece))
            size += piece.size
            if journal.has_more():  # a burst of several pieces: the rest next round
                self._dirty[instance_id] = journal
        if not batch:
            return
        for journal, piece in batch:
            journal.inflight = piece.done
        # shielded: a piece is either committed and acknowledged, or failed
        with anyio.CancelScope(shield=True), self.clock.busy():
            try:
                await commit_with_retries(lambda: self.store.commit_many(
                    [(journal.instance_id, piece.changes()) for journal, piece in batch]))
                failed: list[tuple[Journal, Piece, BaseException]] = []
            except Exception as exc:
                if len(batch) == 1:
                    failed = [(batch[0][0], batch[0][1], exc)]
                else:  # one instance's refusal (a lost lease) must not fail the others
                    failed = await self._one_by_one(batch)
        for journal, piece, error in failed:
            journal.failed(error, piece)
        refused = {id(piece) for _, piece, _ in failed}
        for journal, piece in batch:
            journal.inflight = None
            if id(piece) not in refused:
                journal.committed(piece)

    async def _one_by_one(self, batch: list[tuple[Journal, Piece]]
                          ) -> list[tuple[Journal, Piece, BaseException]]:
        """Commit each instance's piece alone; the ones that fail."""
        failed: list[tuple[Journal, Piece, BaseException]] = []
        for journal, piece in batch:
            changes = piece.changes()
            try:
                await commit_with_retries(functools.partial(
                    self.store.commit, journal.instance_id, changes))
            except Exception as exc:
                failed.append((journal, piece, exc))
        return failed
