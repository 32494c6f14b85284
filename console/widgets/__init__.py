"""Widgets the main screen is built from, other than the panes."""
