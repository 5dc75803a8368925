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


def test_the_wheel_lists_every_package_and_carries_the_migrations():
    """pyproject.toml names its packages one by one (migrations/ is mapped into the package):
    a new sub-package left out of the list would be missing from the wheel."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(init.parent.relative_to(root).parts) for init in (root / "learning_svc").rglob("__init__.py")}
    assert on_disk - {"learning_svc.migrations"} <= set(config["packages"])
    assert config["package-dir"]["learning_svc.migrations"] == "migrations"
    assert db.migrations_dir() == root / "migrations"
    assert sorted(p.name for p in (root / "migrations" / "versions").glob("0*.py"))[0].startswith("0001")
