"""The store: SQLite schema, migrations, the batching writer and retention."""
