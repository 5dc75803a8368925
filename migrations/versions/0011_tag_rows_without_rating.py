"""The tag rows no longer copy the job's rating (issues 13 and 15): job_tags loses rating_hi and
its index ix_tags_rating_hi.

A rating wrote the ~20 tag rows of its job and as many entries of their rating index: on
PostgreSQL the follower's transactions that did it were the rating PUT's tail, and the copy and
its index were an eighth of the index on disk. A rating-sorted listing of one value now walks
jobs' own rating index checking the value, or fetches the value's jobs and sorts them, as the
planner already did for any other filter; a filtered facet takes each sampled job's rating from
jobs.

The index is emptied here and its projection changed with this version (index/project.py
PROJECTION): the service rebuilds the index from the journal at its next start.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Offset = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _empty_index() -> None:
    """As index/sync.py wipe(): every row goes; the next start indexes the journal from the beginning."""
    for table in ("job_tags", "job_amendments", "rating_events", "review_events", "jobs", "facet_values"):
        op.execute(f"DELETE FROM {table}")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("INSERT INTO jobs_fts(jobs_fts) VALUES('delete-all')")
    op.execute('UPDATE checkpoints SET "offset" = 0, line_count = 0, first_line_hash = NULL, skipped = 0')
    op.execute("UPDATE index_meta SET value = 'emptied by migration 0011' WHERE key = 'projection'")
    op.execute(f"UPDATE index_meta SET value = '{uuid.uuid4().hex}' WHERE key = 'generation'")


def _job_tags(with_rating: bool) -> None:
    op.drop_table("job_tags")
    op.create_table(
        "job_tags",
        sa.Column("job", Offset, primary_key=True),
        sa.Column("tag", Offset, primary_key=True),
        sa.Column("completed_at", sa.Float, nullable=False),
        sa.Column("duration_key", sa.Float, nullable=False),
        *([sa.Column("rating_hi", sa.SmallInteger, nullable=False)] if with_rating else []),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_tags_listing", "job_tags", ["tag", "completed_at", "job"])
    if with_rating:
        op.create_index("ix_tags_rating_hi", "job_tags", ["tag", "rating_hi", "job"])
    op.create_index("ix_tags_duration", "job_tags", ["tag", "duration_key", "job"])


def upgrade() -> None:
    _empty_index()
    _job_tags(with_rating=False)


def downgrade() -> None:
    """0010's shape, empty: the older version's projection differs from the one stored, so it
    rebuilds the index from the journal at its next start."""
    _empty_index()
    _job_tags(with_rating=True)
