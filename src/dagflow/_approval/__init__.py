"""Approval gates: the rules, and the ApprovalSystem implementations."""

from .memory import MemoryApprovalSystem
from .store import StoreApprovalSystem

__all__ = ["MemoryApprovalSystem", "StoreApprovalSystem"]
