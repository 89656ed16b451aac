"""mypy --strict checks that each default implementation fits its Protocol."""

from __future__ import annotations

import dagflow

parser: dagflow.WorkflowParser = dagflow.DefaultWorkflowParser()
builder: dagflow.DagBuilder = dagflow.DefaultDagBuilder()
machine: dagflow.StateMachine = dagflow.DefaultStateMachine()
