"""Copy each job's rating and duration sort keys into job_tags, with an index per sort.

A listing filtered on one value is then one range scan whatever its sort, instead of a
walk of the sort index probing every job (slow when the value sits at the far end of
the order, e.g. fast SD 1.5 jobs sorted by longest duration).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

COPIES = ("duration_key", "rating_hi", "rating_lo")


def upgrade() -> None:
    with op.batch_alter_table('job_tags', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duration_key', sa.Float(), nullable=False, server_default='-1'))
        batch_op.add_column(sa.Column('rating_hi', sa.SmallInteger(), nullable=False, server_default='-1'))
        batch_op.add_column(sa.Column('rating_lo', sa.SmallInteger(), nullable=False, server_default='6'))
    for column in COPIES:
        op.execute(f"UPDATE job_tags SET {column} = (SELECT jobs.{column} FROM jobs WHERE jobs.id = job_tags.job)")
    with op.batch_alter_table('job_tags', schema=None) as batch_op:
        batch_op.create_index('ix_tags_rating_hi', ['field', 'value', 'rating_hi', 'job'], unique=False)
        batch_op.create_index('ix_tags_rating_lo', ['field', 'value', 'rating_lo', 'job'], unique=False)
        batch_op.create_index('ix_tags_duration', ['field', 'value', 'duration_key', 'job'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('job_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_tags_duration')
        batch_op.drop_index('ix_tags_rating_lo')
        batch_op.drop_index('ix_tags_rating_hi')
        for column in reversed(COPIES):
            batch_op.drop_column(column)
