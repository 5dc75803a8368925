"""The SQLite (or other SQLAlchemy) index: a projection of the journal files."""
