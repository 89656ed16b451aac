"""Every Python block in the docs runs, and the generated reference is up to date."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _blocks() -> list[tuple[str, str]]:
    out = []
    for page in sorted(DOCS.glob("*.md")):
        for number, match in enumerate(BLOCK.finditer(page.read_text()), 1):
            out.append((f"{page.name}#{number}", match.group(1)))
    return out


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[w for w, _ in _blocks()])
def test_python_blocks_in_docs_run(where: str, code: str) -> None:
    """Each ```python block of docs/*.md runs without error."""
    exec(compile(code, where, "exec"), {"__name__": "__docs__"})


def test_getting_started_has_code() -> None:
    """The getting-started page has runnable examples (so the test above covers it)."""
    assert any(w.startswith("getting-started.md") for w, _ in _blocks())


def test_reference_is_generated_from_the_model() -> None:
    """docs/reference.md equals what the model generates (regenerate it if this fails:
    ``python -m dagflow._schema > docs/reference.md``)."""
    from dagflow._schema import markdown_reference

    assert (DOCS / "reference.md").read_text() == markdown_reference()
