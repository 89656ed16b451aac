"""Where definitions come from (files, the engine's registry) and how an instance of one
is created: validated, its variables resolved, its references checked, stored Pending."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .._errors import Problem, ValidationError, WorkflowError
from .._execute.plugin import PluginFunction, find_plugin
from .._expr import ExprError, UnresolvedVariables, resolve_variables
from .._interp import definition_refs
from .._models import (
    ExecutionContext,
    Loop,
    Plugin,
    Subworkflow,
    WorkflowDefinition,
    WorkflowInstance,
    WorkflowState,
)
from .._parse import read_file, with_source
from .._protocols import WorkflowParser
from .._serde import definition_hash, suggest
from ._services import Services

__all__ = ["Catalog", "create_instance"]

S = WorkflowState


@attrs.define(eq=False, repr=False)
class Catalog:
    """The definitions and plugins an engine knows, and the parser it reads files with.

    Args:
        parser: Parses files and validates definitions built in Python.
        trusted: Whether definitions the default parser already validated may skip a
            second check (true unless the host brought its own parser).
        workflows: Definitions Subworkflow tasks may name, by id.
        workflow_dirs: Where ``<workflow_id>.yaml|.yml|.json`` files are looked for.
        plugins: Plugin functions by name (then the ``dagflow.plugins`` entry points).
    """

    parser: WorkflowParser
    trusted: bool
    workflows: dict[str, WorkflowDefinition]
    workflow_dirs: list[str]
    plugins: dict[str, PluginFunction]

    def __repr__(self) -> str:
        return f"<Catalog workflows={len(self.workflows)} plugins={len(self.plugins)}>"

    def load(self, path: str | os.PathLike[str]) -> WorkflowDefinition:
        """Parse the file at ``path`` (``.json`` as JSON, anything else as YAML)."""
        limits = getattr(self.parser, "limits", None)
        data = read_file(path, limits) if limits is not None else read_file(path)
        name = str(path)
        if name.lower().endswith(".json"):
            wf = self.parser.parse_json(data, filename=name)
        else:
            wf = self.parser.parse_yaml(data, filename=name)
        return with_source(wf, os.path.abspath(path))

    def loads(self, text: str | bytes, *, format: Literal["yaml", "json"] = "yaml",
              filename: str | None = None) -> WorkflowDefinition:
        """Parse workflow text."""
        if format == "json":
            return self.parser.parse_json(text, filename=filename)
        return self.parser.parse_yaml(text, filename=filename)

    def validate(self, definition: WorkflowDefinition) -> None:
        """Validate with the parser, unless the default parser already did."""
        if self.trusted and definition._derived.get("valid"):
            return
        self.parser.validate(definition)

    def find_workflow(self, workflow_id: str, base: str) -> WorkflowDefinition | None:
        """A subworkflow definition: registered, else a file in ``base`` or the workflow
        directories."""
        found = self.workflows.get(workflow_id)
        if found is not None:
            return found
        for directory in (base, *self.workflow_dirs):
            for ext in (".yaml", ".yml", ".json"):
                path = os.path.join(directory, workflow_id + ext)
                if os.path.isfile(path):
                    return self.load(path)
        return None

    def check_plugins(self, definition: WorkflowDefinition) -> list[Problem]:
        """A problem for every Plugin task whose plugin cannot be found."""
        out: list[Problem] = []
        # the plugins a definition names, and by which tasks: kept on the definition
        named: dict[str, list[int]] | None = definition._derived.get("plugins")
        if named is None:
            named = {}
            for i, task in enumerate(definition.tasks):
                kind = (task.type.task_template.type if isinstance(task.type, Loop)
                        else task.type)
                if isinstance(kind, Plugin):
                    named.setdefault(kind.plugin_name, []).append(i)
            definition._derived["plugins"] = named
        for name, where in named.items():
            if find_plugin(name, self.plugins) is not None:
                continue
            known = ", ".join(sorted(self.plugins)) or "none"
            out.extend(Problem(
                f"task {definition.tasks[i].id!r}: unknown plugin {name!r} (registered: "
                f"{known}; also searched the 'dagflow.plugins' entry points)",
                path=("tasks", i, "type", "plugin_name")) for i in where)
        return out

    def check_subworkflows(self, definition: WorkflowDefinition, base: str,
                           chain: tuple[str, ...]) -> list[Problem]:
        """A problem for every Subworkflow that cannot be found, is invalid or recurses."""
        out = []
        for i, task in enumerate(definition.tasks):
            kind = task.type.task_template.type if isinstance(task.type, Loop) else task.type
            if not isinstance(kind, Subworkflow) or "${" in kind.workflow_id:
                continue
            where = ("tasks", i, "type", "workflow_id")
            if kind.workflow_id in chain:
                loop = " -> ".join([*chain[chain.index(kind.workflow_id):], kind.workflow_id])
                out.append(Problem(f"subworkflow recursion: {loop}", path=where))
                continue
            try:
                child = self.find_workflow(kind.workflow_id, base)
            except WorkflowError as exc:
                out.append(Problem(f"subworkflow {kind.workflow_id!r} is invalid: {exc}",
                                   path=where))
                continue
            if child is None:
                dirs = ", ".join([base, *self.workflow_dirs])
                out.append(Problem(
                    f"task {task.id!r}: no workflow {kind.workflow_id!r} (registered with "
                    f"Engine(workflows=...) or as {kind.workflow_id}.yaml in {dirs})",
                    path=where))
                continue
            child_base = os.path.dirname(child.source_path or "") or base
            out.extend(self.check_subworkflows(child, child_base, (*chain, child.id)))
        return out


async def create_instance(
    services: Services,
    catalog: Catalog,
    definition: WorkflowDefinition,
    user_id: str = "",
    variables: Mapping[str, Any] | None = None,
    *,
    workdir: str | os.PathLike[str] | None = None,
    instance_id: str | None = None,
    parent_id: str | None = None,
) -> WorkflowInstance:
    """Validate ``definition``, resolve its variables, and store a Pending instance (see
    :meth:`Engine.create_workflow`).

    Raises:
        ValidationError: Listing every problem found.
        InvalidStateTransition: The state machine refuses Draft -> Validated -> Pending.
    """
    catalog.validate(definition)
    instance_id = instance_id or str(uuid.uuid4())
    environ = services.environ
    names = {"id": definition.id, "name": definition.name, "instance_id": instance_id}
    problems: list[Problem] = []
    try:
        resolved = resolve_variables(definition.variables, variables or {}, environ, names)
    except (UnresolvedVariables, ExprError) as exc:
        problems.append(Problem(exc.message, path=("variables",)))
        resolved = {}
    environment: dict[str, str] = {}
    for ref in definition_refs(definition):
        if ref.kind == "var":
            head = ref.parts[0]
            if head in resolved:
                continue
            if len(ref.parts) == 1 and head in environ:
                environment[head] = environ[head]
            elif not problems:
                problems.append(Problem(
                    f"'${{{ref.text}}}' is not a variable of this workflow nor an "
                    "environment variable (set it with --var NAME=VALUE)"
                    + suggest(head, resolved)))
        elif ref.kind == "env":
            name = ref.parts[0]
            if name in environ:
                environment[name] = environ[name]
            else:
                problems.append(Problem(
                    f"'${{{ref.text}}}': environment variable {name} is not set"))
        elif ref.kind == "secrets" and await services.secrets.get_secret(ref.parts[0]) is None:
            problems.append(Problem(f"'${{{ref.text}}}': no secret named "
                                    f"{ref.parts[0]!r} (set the environment variable "
                                    f"{ref.parts[0]} or pass Engine(secrets=...))"))
    if workdir is not None:
        base = os.fspath(workdir)
    else:
        source = definition.source_path
        base = os.path.dirname(source) if source else os.getcwd()
    problems.extend(catalog.check_plugins(definition))
    problems.extend(catalog.check_subworkflows(definition, base, (definition.id,)))
    if problems:
        raise ValidationError(problems)
    # the seed's first steps, Draft -> Validated -> Pending, happen in this call
    machine = services.state_machine
    created = (machine.transition(instance_id, S.DRAFT, S.VALIDATED, "validated"),
               machine.transition(instance_id, S.VALIDATED, S.PENDING,
                                  f"submitted by {user_id}" if user_id else "submitted"))
    instance = WorkflowInstance(
        id=instance_id, workflow_id=definition.id, definition=definition,
        state=S.PENDING, created_at=services.clock.now(), created_by=user_id,
        execution_context=ExecutionContext(resolved, {}, environment),
        workdir=base, definition_hash=definition_hash(definition), parent_id=parent_id,
        state_history=created,
    )
    with services.clock.busy():
        await services.instances.store_workflow(instance)
    return instance
