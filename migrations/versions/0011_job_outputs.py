"""The images each job names as its outputs, by path (issue 11): an image that `import` or
`serve --watch` finds in a folder, and that a job already recorded names as its output (a
StableNew history imported earlier, a pipeline's POSTed job), is that job's, not a job of its
own. Until now only the history files read in the same import run were consulted.

The table starts empty and the index is marked as made by another projection (as it is: the
projection changes with this version, index/project.py PROJECTION), so the service rebuilds the
index from the journal at its next start and fills it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Offset = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "job_outputs",
        sa.Column("key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("job", Offset, primary_key=True, autoincrement=False),
        sqlite_with_rowid=False,
    )
    op.execute("UPDATE index_meta SET value = 'before migration 0011' WHERE key = 'projection'")


def downgrade() -> None:
    op.drop_table("job_outputs")
