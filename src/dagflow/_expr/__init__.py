"""``${...}`` interpolation and the sandboxed condition evaluator."""

from ._condition import Condition, parse_condition
from ._refs import TASK_FIELDS, ExprError, Ref, interpolate, iter_refs, parse_ref, parse_template
from ._vars import UnresolvedVariables, resolve_variables

__all__ = [
    "TASK_FIELDS",
    "Condition",
    "ExprError",
    "Ref",
    "UnresolvedVariables",
    "interpolate",
    "iter_refs",
    "parse_condition",
    "parse_ref",
    "parse_template",
    "resolve_variables",
]
