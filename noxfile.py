"""Developer sessions: ``nox -s tests lint typing docs bench``.

``tests`` runs the suite on both anyio backends (every async test is parametrized over
asyncio and trio by tests/conftest.py); ``DAGFLOW_TEST_POSTGRES`` is passed through.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (asyncio and trio)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and import order."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "benchmarks", "tools", "examples", "noxfile.py")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict over the package and the protocol conformance checks."""
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src", "tests/typing")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (strict: any warning fails).

    ``nox -s docs -- --site-dir /tmp/site`` builds elsewhere; ``mkdocs serve`` previews.
    """
    session.install("-e", ".[dev]")
    # mkdocs-material prints a banner about its successor on every build; it is not ours
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    session.run("mkdocs", "build", "--strict", *(session.posargs or ["--site-dir", "site"]))


@nox.session
def bench(session: nox.Session) -> None:
    """Load + validate + DAG build for 1k/10k/100k-task workflows."""
    session.install("-e", ".")
    session.run("python", "benchmarks/bench_load.py", *session.posargs)
