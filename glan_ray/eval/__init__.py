"""Evaluation: metrics, statistics, simulated A/B tests, off-policy evaluation, reports."""
