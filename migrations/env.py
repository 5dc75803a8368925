"""Alembic environment: runs on the connection handed over by learning_svc.index.db.upgrade."""

from alembic import context
from sqlalchemy import create_engine

from learning_svc.index.tables import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # the plain `alembic` command line: use the URL it was given
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()


run_migrations_online()
