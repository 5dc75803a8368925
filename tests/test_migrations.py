"""The Alembic migrations build exactly the schema that index/tables.py describes."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from learning_svc.index import db
from learning_svc.index.tables import metadata


def test_migrations_give_the_declared_schema(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}", writer=True)
    db.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        generation = conn.exec_driver_sql("SELECT value FROM index_meta WHERE key = 'generation'").scalar_one()
    engine.dispose()
    # jobs_fts (FTS5, with its shadow tables) is made by migration 0001 outside the metadata.
    unexpected = [d for d in diff if not (d[0] == "remove_table" and d[1].name.startswith("jobs_fts"))]
    assert unexpected == []
    assert len(generation) == 32
