"""The lab: a small IoT network in network namespaces, for the tests and for a first look.

`iotsec lab up | down | status` and the tests' fixture both use :mod:`engine.lab.topology`.
"""
