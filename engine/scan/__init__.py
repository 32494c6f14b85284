"""Scanning: discovery, port scans, service identification, TLS audits and IoT checks of the
devices inside the configured scope, turned into findings on the device inventory."""
