"""iotsec engine: the headless core (store, control API, alerts).

It runs as a daemon or embedded in one-shot commands, and never imports the console.
"""
