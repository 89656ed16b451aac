"""Approval gates: the rules, and the ApprovalSystem implementations."""

from .memory import MemoryApprovalSystem
from .store import DefaultApprovalSystem

__all__ = ["DefaultApprovalSystem", "MemoryApprovalSystem"]
