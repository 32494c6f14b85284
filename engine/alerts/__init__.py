"""Alerts: folding, silences and the operator workflow."""
