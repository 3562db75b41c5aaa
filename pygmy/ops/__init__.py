"""Operator tools: the status table, the cross-replica check, and consistent backup and restore."""
