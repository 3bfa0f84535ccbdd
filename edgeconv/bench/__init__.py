"""Latency per target (median, p90), int8 vs float."""
