"""A smaller index (issue 15): job_tags stores a number per (field, value) instead of the two
strings, and jobs no longer copies the listing's summary (it is made from the job's line).

facet_values numbers every value (`tag`, its primary key; field and value stay unique) and
job_tags refers to it: its table and four sort indexes each lose the field and value strings,
about 20 bytes a row on ~22 rows a job; its rating_lo copy and index go (the "rating" order of a
tag is read from its rating_hi index in two ranges). jobs.summary (~1 KB a job) goes: the listing reads the
job's line from the journal at jobs.id (queries.summary_of).

The index is emptied here (every row, the text search, the checkpoints back to 0) and its
projection changed with this version (index/project.py PROJECTION): the service rebuilds the
index from the journal at its next start, as for any change of what a line projects into.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Offset = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _empty_index() -> None:
    """Every row goes (dropping a column of a full table would rewrite all of it); the next start
    indexes the journal from the beginning."""
    for table in ("job_tags", "job_amendments", "rating_events", "review_events", "jobs"):
        op.execute(f"DELETE FROM {table}")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("INSERT INTO jobs_fts(jobs_fts) VALUES('delete-all')")
    op.execute('UPDATE checkpoints SET "offset" = 0, line_count = 0, first_line_hash = NULL, skipped = 0')
    op.execute("UPDATE index_meta SET value = 'emptied by migration 0010' WHERE key = 'projection'")
    op.execute(f"UPDATE index_meta SET value = '{uuid.uuid4().hex}' WHERE key = 'generation'")


def upgrade() -> None:
    _empty_index()
    op.execute("ALTER TABLE jobs DROP COLUMN summary")
    op.drop_table("job_tags")
    op.drop_table("facet_values")
    op.create_table(
        "facet_values",
        sa.Column("tag", Offset, primary_key=True, autoincrement=True),  # BIGINT on PostgreSQL (tables.py)
        sa.Column("field", sa.String(16), nullable=False),
        sa.Column("value", sa.String(512), nullable=False),
        sa.Column("display", sa.String(512), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("rated_count", sa.Integer, nullable=False),
        sa.Column("rating_sum", sa.Integer, nullable=False),
        sa.UniqueConstraint("field", "value", name="uq_facet_values_field_value"),
    )
    op.create_index("ix_facet_values_count", "facet_values", ["field", "count"])
    op.create_table(
        "job_tags",
        sa.Column("job", Offset, primary_key=True),
        sa.Column("tag", Offset, primary_key=True),
        sa.Column("completed_at", sa.Float, nullable=False),
        sa.Column("duration_key", sa.Float, nullable=False),
        sa.Column("rating_hi", sa.SmallInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_tags_listing", "job_tags", ["tag", "completed_at", "job"])
    op.create_index("ix_tags_rating_hi", "job_tags", ["tag", "rating_hi", "job"])
    op.create_index("ix_tags_duration", "job_tags", ["tag", "duration_key", "job"])


def downgrade() -> None:
    """The older shapes, empty: the older version's projection differs from the one stored, so
    it rebuilds the index from the journal at its next start."""
    _empty_index()
    op.add_column("jobs", sa.Column("summary", sa.Text, nullable=False, server_default="{}"))
    op.drop_table("job_tags")
    op.drop_table("facet_values")
    op.create_table(
        "facet_values",
        sa.Column("field", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(512), primary_key=True),
        sa.Column("display", sa.String(512), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("rated_count", sa.Integer, nullable=False),
        sa.Column("rating_sum", sa.Integer, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_facet_values_count", "facet_values", ["field", "count"])
    op.create_table(
        "job_tags",
        sa.Column("job", Offset, primary_key=True),
        sa.Column("field", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(512), primary_key=True),
        sa.Column("completed_at", sa.Float, nullable=False),
        sa.Column("duration_key", sa.Float, nullable=False),
        sa.Column("rating_hi", sa.SmallInteger, nullable=False),
        sa.Column("rating_lo", sa.SmallInteger, nullable=False),
        sqlite_with_rowid=False,
    )
    for name, key in (
        ("listing", "completed_at"),
        ("rating_hi", "rating_hi"),
        ("rating_lo", "rating_lo"),
        ("duration", "duration_key"),
    ):
        op.create_index(f"ix_tags_{name}", "job_tags", ["field", "value", key, "job"])
