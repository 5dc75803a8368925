"""An index generation: a random token that changes whenever the index starts over.

A job's text never changes and jobs are only appended, so a text search's matches among
the jobs indexed so far stay valid for as long as this index lives; readers cache them
under the generation, which a wipe (journal replaced) or a fresh file changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
import uuid

from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        'index_meta',
        sa.Column('key', sa.String(length=32), nullable=False),
        sa.Column('value', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    op.bulk_insert(meta, [{"key": "generation", "value": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table('index_meta')
