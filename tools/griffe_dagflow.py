"""A griffe extension that makes dagflow's docstrings read well in the API docs.

- attrs classes get their ``__init__`` signature. griffe reads source code, and attrs
  writes ``__init__`` at import time, so without this the docs would show
  ``TaskDefinition()`` and mkdocstrings would warn that the parameters in ``Args:``
  sections do not exist. The signature is the one attrs generated (names, order, kinds),
  with the annotations and defaults as written in the source where there are some.
- Sphinx roles (``:class:`~dagflow.Engine```), which Markdown does not know, become links
  to the documented public names and code spans otherwise; a paragraph ending in ``::``
  (reStructuredText's "a code block follows") ends in ``:``.

Only the ``dagflow`` package is changed, never a dependency griffe happens to load.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import attrs
import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|exc|data|mod|obj):`(~?)([^`]+)`")
_LITERAL_BLOCK = re.compile(r"(\S)( ?)::$", re.M)


def _public() -> frozenset[str]:
    import dagflow
    import dagflow.testing

    return frozenset([*(f"dagflow.{n}" for n in dagflow.__all__),
                      *(f"dagflow.testing.{n}" for n in dagflow.testing.__all__)])


def _markdown(text: str, public: frozenset[str]) -> str:
    """``text`` with Sphinx roles and ``::`` turned into Markdown."""

    def role(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2)
        shown = target.rsplit(".", 1)[-1] if short else target
        if target in public:
            return f"[`{shown}`][{target}]"
        return f"`{shown}`"

    def literal_block(match: re.Match[str]) -> str:
        # reStructuredText: "text::" shows "text:", and "text. ::" shows "text."
        return match.group(1) if match.group(2) else match.group(1) + ":"

    return _LITERAL_BLOCK.sub(literal_block, _ROLE.sub(role, text))


def _default(field: attrs.Attribute[Any] | None, member: object, runtime: object) -> str:
    """The default as a reader should see it: the source text, else a readable stand-in."""
    value: Any = field.default if field is not None else runtime
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]  # attrs types it loosely
        factory = value.factory
        empty = {dict: "{}", list: "[]", set: "set()", tuple: "()"}
        if factory in empty:
            return empty[factory]
        name = getattr(factory, "__name__", "")
        return f"{name}()" if name and not name.startswith(("_", "<")) else "<computed>"
    text = str(getattr(member, "value", "") or "")
    if text and not text.startswith(("attrs.", "attr.")):
        return text
    return repr(value)


def _attrs_init(cls: griffe.Class) -> None:
    try:
        runtime = griffe.dynamic_import(cls.path)
    except ImportError:
        return
    if not (inspect.isclass(runtime) and attrs.has(runtime)):
        return
    fields = {getattr(f, "alias", f.name): f for f in attrs.fields(runtime)}
    parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
    for param in list(inspect.signature(runtime.__init__).parameters.values())[1:]:
        field = fields.get(param.name)
        member = cls.all_members.get(field.name if field else param.name)
        annotation = getattr(member, "annotation", None)
        if annotation is None and param.annotation is not inspect.Parameter.empty:
            annotation = str(param.annotation)
        default = None
        if param.default is not inspect.Parameter.empty:
            default = _default(field, member, param.default)
        parameters.append(griffe.Parameter(
            param.name, annotation=annotation, default=default,
            kind=griffe.ParameterKind(param.kind.description)))
    cls.set_member("__init__", griffe.Function(
        "__init__", lineno=0, endlineno=0, parent=cls,
        parameters=griffe.Parameters(*parameters), returns="None"))


def _walk(obj: griffe.Object, seen: set[str], public: frozenset[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    if obj.docstring is not None:
        obj.docstring.value = _markdown(obj.docstring.value, public)
    if isinstance(obj, griffe.Class) and "__init__" not in obj.members and any(
            str(d.value).startswith(("attrs.", "attr.")) for d in obj.decorators):
        _attrs_init(obj)
    for member in list(obj.members.values()):
        if isinstance(member, griffe.Object):  # aliases are walked where they point
            _walk(member, seen, public)


class DagflowDocstrings(griffe.Extension):
    """Applies the changes above to every object of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Walk the package once it is loaded."""
        if pkg.name == "dagflow":
            _walk(pkg, set(), _public())
