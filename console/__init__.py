"""iotsec console: everything an operator touches, the Textual app and the one-shot CLI."""
