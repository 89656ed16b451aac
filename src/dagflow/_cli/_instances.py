"""What the instance commands of ``dagflow`` share: opening the store and the engine,
formatting times and tables, and running an instance here with progress.

Each command opens the store (``--store``, else ``$DAGFLOW_STORE``, else
``.dagflow/dagflow.db``), asks the :class:`~dagflow.Engine`, and renders the answer;
``--json`` prints the seed's types through the one converter. Exit codes come from the
table in ``_cli/__init__``: an unknown id, or a request the instance's state does not
allow, is bad input (2); a run that ends Failed, Cancelled or RolledBack is 1; Ctrl-C
is 130.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import IO, Any, NoReturn

import click

from .._models import WorkflowInstance, WorkflowState
from ._common import Store, exit_code_for, fail, instance_json
from ._progress import _seconds

__all__: list[str] = []  # private helpers of _inspect and _control

S = WorkflowState

# --------------------------------------------------------------------------- plumbing


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "-"


def _took(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None:
        return ""
    if end is None:
        return _seconds((dt.datetime.now(dt.UTC) - start).total_seconds()) + "+"
    return _seconds((end - start).total_seconds())


def _short(text: str | None, width: int = 60) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[:width - 3] + "..."


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _json_list(values: Sequence[Any]) -> str:
    return json.dumps(list(values), indent=2, default=str)


def _parse_state(ctx: click.Context, param: click.Parameter, value: str | None
                 ) -> WorkflowState | None:
    """``running``, ``Running``, ``waiting_approval``, ``rolled-back``... -> the state."""
    if value is None:
        return None

    def squash(text: str) -> str:
        return re.sub(r"[\s_-]", "", text).lower()
    for state in WorkflowState:
        if squash(value) in (squash(state.value), squash(state.name)):
            return state
    fail(f"--state {value!r} is not a state; use one of: "
          f"{', '.join(s.value for s in WorkflowState)}")


_UNITS = {"w": 604_800, "d": 86_400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])", re.IGNORECASE)


def _parse_age(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``1d12h``, plain seconds or ISO 8601 (``P30D``).

    Raises:
        ValueError: None of those.
    """
    compact = text.strip()
    if compact and _PART.sub("", compact).strip() == "":
        return dt.timedelta(seconds=sum(float(n) * _UNITS[u.lower()]
                                        for n, u in _PART.findall(compact)))
    from .._serde import parse_duration

    try:
        return parse_duration(float(compact) if re.fullmatch(r"\d+(\.\d+)?", compact)
                              else compact)
    except (TypeError, ValueError):
        raise ValueError(f"--older-than {text!r}: write a duration like 30d, 12h, 90m, 45s, "
                         "1d12h or ISO 8601 (P30D, PT12H)") from None


# --------------------------------------------------------------------------- following runs


def _report(final: WorkflowInstance, progress: Any, store: Store, as_json: bool,
            out: IO[str]) -> int:
    """The summary (and the instance on stdout with --json); the exit code of its state."""
    progress.close(final)
    if final.state == S.PAUSED:
        click.echo(f"instance {final.id} is paused; continue it with:  dagflow resume "
                   f"{final.id}{store.flag}", file=out)
    elif final.state in (S.FAILED, S.CANCELLED):
        click.echo(f"run it again with:  dagflow retry {final.id}{store.flag}", file=out)
    if as_json:
        click.echo(instance_json(final))
    return exit_code_for(final)


def _ended(instance: WorkflowInstance, doing: str) -> NoReturn:
    fail(f"instance {instance.id} already ended ({instance.state}): nothing to {doing}")


# --------------------------------------------------------------------------- status, list
