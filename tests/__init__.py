"""iotsec tests: unit, functional (real engine, real app) and end-to-end."""
