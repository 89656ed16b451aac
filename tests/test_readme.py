"""The README's example is true: its workflow, saved as hello.yaml, runs through its
Python block, and the validate output it shows is what getting started's broken.yaml
gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)


def block(language: str, number: int = 0) -> str:
    return [body for lang, body in FENCE.findall(README) if lang == language][number]


def test_the_readme_workflow_runs_from_its_python_block(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hello.yaml").write_text(block("yaml"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    code = block("python")
    exec(compile(code, "README.md", "exec"), namespace)
    instance = namespace["instance"]
    assert str(instance.state) == "Completed"  # type: ignore[attr-defined]
    shown = re.search(r"\.stdout\s+# (.+)$", code, re.M)
    assert shown is not None
    assert repr(instance.task_states["shout"].output.stdout) == shown.group(1)  # type: ignore[attr-defined]


def test_the_readme_shows_what_validate_prints() -> None:
    shown = block("")
    getting_started = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert shown in getting_started  # the same lines, checked there by running them
