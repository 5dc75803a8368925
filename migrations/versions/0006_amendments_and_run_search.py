"""Amendments of recorded jobs (PATCH /api/jobs/<id>), and run ids in the text search.

`job_amendments` lists the amendment lines of each job (byte offset in the log, like
jobs.id); `jobs.amendments` counts them so that reads know when to apply any. The
full-text index gains a `run_id` column. The index is rebuilt at the next start anyway
(its projection changed: new fields), which fills both.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

Offset = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
FTS_OPTIONS = "content='', tokenize='unicode61 remove_diacritics 2'"


def upgrade() -> None:
    op.create_table(
        'job_amendments',
        sa.Column('id', Offset, autoincrement=False, nullable=False),
        sa.Column('job_id', sa.String(length=128), nullable=False),
        sa.Column('line_length', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('job_amendments', schema=None) as batch_op:
        batch_op.create_index('ix_job_amendments_job', ['job_id', 'id'], unique=False)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('amendments', sa.Integer(), nullable=False, server_default='0'))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE jobs_fts")
        op.execute(f"CREATE VIRTUAL TABLE jobs_fts USING fts5(job_id, packs, prompt, negative_prompt, run_id, {FTS_OPTIONS})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE jobs_fts")
        op.execute(f"CREATE VIRTUAL TABLE jobs_fts USING fts5(job_id, packs, prompt, negative_prompt, {FTS_OPTIONS})")
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('amendments')
    with op.batch_alter_table('job_amendments', schema=None) as batch_op:
        batch_op.drop_index('ix_job_amendments_job')
    op.drop_table('job_amendments')
