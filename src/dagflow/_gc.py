"""Building many long-lived objects at once without the cyclic garbage collector
traversing them over and over.

Loading a 100,000-task file or recovering a 10,000-task instance creates hundreds of
thousands of objects that live as long as the workflow. Left alone, the collector runs
young collections every few hundred allocations and full ones as the heap grows, and
spends as much time as the work itself (or more). Nothing built here has reference
cycles to collect, so collection is paused while building; big results are then moved
straight into the oldest generation (``gc.freeze()`` + ``gc.unfreeze()``, two list
splices), where they wait for the next full collection instead of being traversed by
the next young one. The host's own young objects move with them: see docs/decisions.md.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["PROMOTE_AT", "building"]

#: from this many items (tasks, rows), what was built is promoted to the oldest generation
PROMOTE_AT = 10_000


@contextlib.contextmanager
def building(items: int = 0) -> Iterator[None]:
    """Pause the collector while long-lived objects are built; promote them when
    ``items`` is large. Nested uses are cheap (the outermost one decides)."""
    enabled = gc.isenabled()
    if not enabled:  # nested, or the host paused it: leave everything as it is
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if items >= PROMOTE_AT:
            gc.freeze()
            gc.unfreeze()
        gc.enable()
