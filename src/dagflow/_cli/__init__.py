"""The ``dagflow`` command: the group, its entry point, and the commands' registration.

Each module adds its commands here (``_workflow``: validate, plan, schema; ``_run``: run;
``_inspect``, ``_control``, ``_approvals``, ``_graph``); they share ``_common``, which
holds the exit-code table. Errors go to stderr, one line each, without a traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from .._errors import WorkflowError
from ._common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, exit_code_for_error, fail

__all__ = ["main"]


#: the order of ``dagflow --help``: the contract's, from writing a file to archiving
ORDER = ("validate", "plan", "run", "status", "list", "events", "approvals", "approve",
         "reject", "resume", "pause", "cancel", "rollback", "retry", "recover", "archive",
         "checkpoints", "restore", "graph", "schema")


#: which module defines each command: it is imported when its command runs (or for
#: --help), so that ``dagflow run`` does not load the code of every other command
WHERE = {
    "validate": "_workflow", "plan": "_workflow", "schema": "_workflow", "run": "_run",
    "status": "_inspect", "list": "_inspect", "events": "_inspect", "checkpoints": "_inspect",
    "resume": "_rerun", "retry": "_rerun", "restore": "_rerun", "recover": "_rerun",
    "pause": "_control", "cancel": "_control", "rollback": "_control", "archive": "_control",
    "approvals": "_approvals", "approve": "_approvals", "reject": "_approvals",
    "graph": "_graph",
}


class _Group(click.Group):
    """Lists commands in the contract's order (others after them), loading each one's
    module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(ORDER)}
        names = {*self.commands, *WHERE}
        return sorted(names, key=lambda name: (rank.get(name, len(ORDER)), name))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = WHERE.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            importlib.import_module(f".{module}", __package__).register(self)
        return self.commands.get(cmd_name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(package_name="dagflow", prog_name="dagflow")
def cli() -> None:
    """dagflow: run multi-step workflows described in YAML or JSON.

    \b
    Quick start:
      dagflow validate deploy.yaml        check a file: every problem, with file:line:col
      dagflow plan deploy.yaml            levels, critical path, parallelism
      dagflow run deploy.yaml             run it, with live progress
      dagflow schema > workflow.schema.json   JSON Schema for editor completion

    Exit codes: 0 ok, 1 workflow failed/cancelled, 2 bad input, 130 interrupted.
    """


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``dagflow`` command (``python -m dagflow`` too)."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="dagflow",
                 standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except WorkflowError as exc:
        fail(str(exc), exit_code_for_error(exc))
    sys.exit(EXIT_OK)
