"""Write the type checkers' imports at the end of ``src/dagflow/__init__.py`` from its
``_EXPORTS``, the one list of public names (mypy and pyright cannot evaluate a dict).

    python tools/public_api.py           # rewrite the block after editing _EXPORTS
    python tools/public_api.py --check   # exit 1 if the block is stale

``tests/test_public_api.py`` runs the same check. The lines come out in the order
``ruff check`` (isort) wants, so the generated file passes the linter as it is.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from pathlib import Path

INIT = Path(__file__).resolve().parent.parent / "src" / "dagflow" / "__init__.py"
MARKER = "# Generated from _EXPORTS by `python tools/public_api.py`; do not edit below.\n"


def exports(source: str) -> dict[str, str]:
    """``_EXPORTS`` as written in ``source``.

    Read from the syntax tree, not imported, so that a half-edited package (or another
    installed copy of dagflow) does not change what is generated.

    Raises:
        LookupError: ``source`` does not assign ``_EXPORTS`` at the top level.
    """
    for node in ast.parse(source).body:
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.target.id == "_EXPORTS" and node.value is not None):
            found: dict[str, str] = ast.literal_eval(node.value)
            return found
    raise LookupError("no top-level `_EXPORTS: dict[str, str] = {...}`")


def _member_order(name: str) -> tuple[int, str, str]:
    """isort's order within one module: CONSTANTS, then Classes, then functions, each
    case-insensitively (ruff's defaults: order-by-type, case-sensitive = false)."""
    if len(name) > 1 and name.isupper():
        kind = 0
    elif name[:1].isupper():
        kind = 1
    else:
        kind = 2
    return kind, name.lower(), name


def render(names: Mapping[str, str]) -> str:
    """The generated block: one redundant-alias import per name (``import X as X``
    marks a re-export for type checkers)."""
    lines = [MARKER, "if TYPE_CHECKING:\n"]
    for name, module in sorted(names.items(),
                               key=lambda item: (item[1].lower(), _member_order(item[0]))):
        lines.append(f"    from {module} import {name} as {name}\n")
    return "".join(lines)


def split(source: str) -> tuple[str, str]:
    """``source`` as (hand-written part, generated block).

    Raises:
        LookupError: the marker line is missing.
    """
    head, marker, block = source.partition(MARKER)
    if not marker:
        raise LookupError(f"marker line missing: {MARKER.strip()}")
    return head, marker + block


def main(argv: list[str]) -> int:
    """Rewrite the block, or with ``--check`` report whether it is stale."""
    source = INIT.read_text(encoding="utf-8")
    head, block = split(source)
    wanted = render(exports(source))
    if block == wanted:
        return 0
    if "--check" in argv:
        sys.stderr.write(f"{INIT}: the TYPE_CHECKING imports do not match _EXPORTS; "
                         "run python tools/public_api.py\n")
        return 1
    INIT.write_text(head + wanted, encoding="utf-8")
    sys.stdout.write(f"rewrote the TYPE_CHECKING imports of {INIT}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
