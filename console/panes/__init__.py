"""The four panes of the main screen, one per area an operator works in."""
