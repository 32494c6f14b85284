"""The control API: a Unix socket speaking JSON lines, with peer credentials and roles."""
