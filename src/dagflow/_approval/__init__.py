"""Approval gates: the rules, and the ApprovalSystem implementations."""

from .memory import MemoryApprovalSystem

__all__ = ["MemoryApprovalSystem"]
