"""The documentation site builds in strict mode (broken links, anchors and docstrings that
mkdocstrings cannot render are errors), so CI, which runs only pytest, catches them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None
    or importlib.util.find_spec("mkdocstrings_handlers") is None,
    reason="mkdocs and mkdocstrings are not installed (pip install -e '.[dev]')",
)


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict`` exits 0 and writes the home page and the API reference."""
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (site / "index.html").is_file()
    api = (site / "api" / "index.html").read_text()
    assert "dagflow.Engine" in api
    assert "register_task_type" in api  # members are rendered, not only the heading
