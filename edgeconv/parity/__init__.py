"""Parity: metrics, the tolerance policy, per-target checks and reports. Metrics and policy are pure numpy."""
