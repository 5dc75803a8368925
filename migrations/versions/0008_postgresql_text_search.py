"""PostgreSQL full-text search: a tsvector of each job's search words, with a GIN index.

On PostgreSQL `jobs.search_text` holds a job's words split and folded the way SQLite's FTS5
table sees them (index/words.py); `search_tsv` is generated from it and `q` is answered by
`search_tsv @@ to_tsquery('simple', …)`. SQLite keeps its FTS5 table: nothing changes there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(
        "ALTER TABLE jobs ADD COLUMN search_tsv tsvector "
        "GENERATED ALWAYS AS (to_tsvector('simple', coalesce(search_text, ''))) STORED"
    )
    op.execute("CREATE INDEX ix_jobs_search_tsv ON jobs USING gin (search_tsv)")


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("DROP INDEX ix_jobs_search_tsv")
    op.execute("ALTER TABLE jobs DROP COLUMN search_tsv")
