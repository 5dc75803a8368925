"""Both checkpoint rows exist from the start (at offset 0), and a wipe keeps them.

Whoever indexes past a checkpoint locks its row first (PostgreSQL: SELECT ... FOR UPDATE), so
two service processes' followers never index the same lines; a row has to be there to lock.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name in ('log', 'ratings'):
        op.execute(
            'INSERT INTO checkpoints (name, "offset", line_count, first_line_hash, skipped) '
            f"SELECT '{name}', 0, 0, NULL, 0 WHERE NOT EXISTS (SELECT 1 FROM checkpoints WHERE name = '{name}')"
        )


def downgrade() -> None:
    op.execute('DELETE FROM checkpoints WHERE "offset" = 0')
