"""The text search finds a job by its images' folder and file names (`q=00012`,
`q=txt2img-images`): a user with a folder of imported images knows them by those. SQLite's
full-text index gains an `outputs` column (an FTS5 table cannot add one: it is made anew);
PostgreSQL's `jobs.search_text` simply holds the words too.

Both start empty of them, and the index is marked as made by another projection (as it is:
index/project.py PROJECTION changes with this version), so the service rebuilds the index
from the journal at its next start and fills them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

FTS_OPTIONS = "content='', tokenize='unicode61 remove_diacritics 2'"
COLUMNS = "job_id, packs, prompt, negative_prompt, run_id"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE jobs_fts")
        # columnsize=0: no row of column sizes per job (0.6% of the index); only ranking reads them
        op.execute(f"CREATE VIRTUAL TABLE jobs_fts USING fts5({COLUMNS}, outputs, {FTS_OPTIONS}, columnsize=0)")
    op.execute("UPDATE index_meta SET value = 'before migration 0012' WHERE key = 'projection'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE jobs_fts")
        op.execute(f"CREATE VIRTUAL TABLE jobs_fts USING fts5({COLUMNS}, {FTS_OPTIONS})")
    op.execute("UPDATE index_meta SET value = 'before migration 0012 was undone' WHERE key = 'projection'")
