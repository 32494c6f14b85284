"""The common IoT UDP services probed with real, read-only requests: one module per protocol
(CoAP, SSDP/UPnP, SNMP, mDNS, NTP) on a shared transport, and :mod:`.probe`, which picks the
probes for a host's ports."""
