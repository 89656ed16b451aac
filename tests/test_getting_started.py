"""docs/getting-started.md is true: its files are written, its commands are run through the
installed ``dagflow`` script in a fresh directory, in order, and what they print matches the
page (ids, times and durations aside).

The Python blocks of the page run in tests/test_docs.py; the install block is what .ci/run
and the README's quickstart do.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGE = DOCS / "getting-started.md"
DAGFLOW = Path(sys.executable).parent / "dagflow"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.M | re.S)
FILE_NAME = re.compile(r"`([\w.-]+\.ya?ml)`")
# what changes from one run to the next; ids are captured so later commands can use them
VARYING = re.compile(
    r"(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|apr_[A-Za-z0-9_-]{10,})"
    r"|(?P<other>\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d|\d+m\d+s|\d+\.\ds)"
)


def blocks() -> list[tuple[str, str, str]]:
    """(language, body, the prose before it) for every fenced block of the page."""
    text = PAGE.read_text(encoding="utf-8")
    out, last = [], 0
    for match in FENCE.finditer(text):
        out.append((match.group(1), match.group(2), text[last:match.start()]))
        last = match.end()
    return out


def pattern(line: str) -> tuple[re.Pattern[str], list[str]]:
    """A regex for one documented output line, and the ids it shows (in order)."""
    parts, ids, last = [], [], 0
    for match in VARYING.finditer(line):
        parts.append(re.sub(r"\\ (\\ )+", " +", re.escape(line[last:match.start()])))
        if match.group("id"):
            ids.append(match.group("id"))
            parts.append(r"(\S+)")
        else:
            parts.append(r"\d[\d:.ms-]*")
        last = match.end()
    parts.append(re.sub(r"\\ (\\ )+", " +", re.escape(line[last:])))
    return re.compile("".join(parts)), ids


class Session:
    """A user's terminal: a directory, the ids seen so far, a run in the background."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.seen: dict[str, str] = {}  # id on the page -> id in this session
        # the page's user is dave (alice approves: nobody may approve their own run)
        self.env = {**{k: v for k, v in os.environ.items() if k != "DAGFLOW_STORE"},
                    "USER": "dave"}
        self.background: subprocess.Popen[str] | None = None
        self.background_lines: list[str] = []

    def argv(self, command: str) -> list[str]:
        for documented, actual in self.seen.items():
            command = command.replace(documented, actual)
        words = shlex.split(command)
        assert words[0] == "dagflow", command
        return [str(DAGFLOW), *words[1:]]

    def expect(self, printed: list[str], documented: list[str], what: str) -> None:
        assert len(printed) == len(documented), (what, printed, documented)
        for got, want in zip(printed, documented, strict=True):
            regex, ids = pattern(want)
            match = regex.fullmatch(got.rstrip())
            assert match, f"{what}: {got!r} does not look like {want!r}"
            for documented_id, actual in zip(ids, match.groups(), strict=True):
                self.seen.setdefault(documented_id, actual)

    def run(self, command: str, documented: list[str]) -> None:
        """Run a command to its end, or, for a run that stops at a gate, until it has
        printed what the page shows (it then waits in the background)."""
        if documented and documented[-1].lstrip().startswith("or reject with:"):
            self.start_in_background(command, len(documented))
            self.expect(self.background_lines, documented, command)
            return
        result = subprocess.run(self.argv(command), cwd=self.where, env=self.env, text=True,
                                capture_output=True, timeout=60, check=False)
        want_code = 2 if "broken" in command else 0
        assert result.returncode == want_code, (command, result.stdout, result.stderr)
        printed = (result.stdout + result.stderr).splitlines()
        self.expect(printed, documented, command)

    def start_in_background(self, command: str, lines: int) -> None:
        self.background = subprocess.Popen(
            self.argv(command), cwd=self.where, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.background.stdout is not None
        for _ in range(lines):
            line = self.background.stdout.readline()
            assert line, f"{command} ended early: {self.background_lines}"
            self.background_lines.append(line.rstrip("\n"))

    def finish_background(self, documented: list[str]) -> None:
        """The rest of the background run's output, once it has ended with exit code 0."""
        assert self.background is not None and self.background.stdout is not None
        timer = threading.Timer(60, self.background.kill)
        timer.start()
        try:
            rest = self.background.stdout.read().splitlines()
            code = self.background.wait()
        finally:
            timer.cancel()
            self.background.stdout.close()
        assert code == 0, rest
        self.expect(rest, documented, "the rest of dagflow run")
        self.background = None


def console_steps(body: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines with the lines printed under each."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def test_the_page_has_the_steps_a_new_user_follows() -> None:
    """The walk below covers writing, validating, running, approving and inspecting."""
    kinds = [lang for lang, _, _ in blocks()]
    assert kinds.count("yaml") >= 2 and kinds.count("console") >= 4
    commands = " ".join(c for lang, body, _ in blocks() if lang == "console"
                        for c, _ in console_steps(body))
    for verb in ("validate", "plan", "run", "approvals", "approve", "list", "status"):
        assert f"dagflow {verb} " in commands or commands.endswith(f"dagflow {verb}")


def test_getting_started_walkthrough(tmp_path: Path) -> None:
    """Every file and console block of the page, in order, as a new user would."""
    session = Session(tmp_path)
    try:
        for lang, body, before in blocks():
            if lang == "yaml":
                names = FILE_NAME.findall(before)
                assert names, f"the page does not say where to save:\n{body}"
                (tmp_path / names[-1]).write_text(body, encoding="utf-8")
            elif lang == "console":
                for command, printed in console_steps(body):
                    session.run(command, printed)
            elif lang == "text" and session.background is not None:
                session.finish_background(body.splitlines())
        assert session.background is None, "the run never finished on the page"
        assert (tmp_path / ".dagflow" / "dagflow.db").is_file()
    finally:
        if session.background is not None:
            session.background.kill()
            session.background.wait()
            if session.background.stdout is not None:
                session.background.stdout.close()
