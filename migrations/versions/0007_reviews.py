"""Reviews: flags, reason tags, notes, sub-scores and per-image ratings (learning_review_v1
events in the ratings file).

`review_events` holds the events (byte offset in the ratings file, like rating_events);
`jobs.review` each job's current state as JSON. Their values are job_tags rows of the
fields tag, flag and image_rating. The projection changed (new fields), so the index is
rebuilt at the next start, which fills all three.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

Offset = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'review_events',
        sa.Column('id', Offset, autoincrement=False, nullable=False),
        sa.Column('review_id', sa.String(length=64), nullable=False),
        sa.Column('job_id', sa.String(length=128), nullable=False),
        sa.Column('output', sa.Integer(), nullable=True),
        sa.Column('changes', sa.Text(), nullable=False),
        sa.Column('timestamp', sa.Float(), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('review_events', schema=None) as batch_op:
        batch_op.create_index('ix_review_events_job', ['job_id', 'id'], unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('review')
    with op.batch_alter_table('review_events', schema=None) as batch_op:
        batch_op.drop_index('ix_review_events_job')
    op.drop_table('review_events')
