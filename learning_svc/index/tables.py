"""SQLAlchemy Core tables: the index schema (changed only through Alembic migrations)."""

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only makes "INTEGER PRIMARY KEY" an alias of the rowid.
Offset = BigInteger().with_variant(Integer(), "sqlite")

jobs = Table(
    "jobs",
    metadata,
    # Byte offset of the job's line in learning_log_v2.jsonl: unique, stable across
    # rebuilds, and the tie-breaker of every sort.
    Column("id", Offset, primary_key=True, autoincrement=False),
    Column("job_id", String(128), nullable=False, unique=True),
    Column("input_hash", String(64), nullable=False),
    Column("line_length", Integer, nullable=False),  # the listing's summary is made from the line (queries.summary_of)
    Column("status", String(16), nullable=False),
    Column("completed_at", Float, nullable=False),
    Column("duration_key", Float, nullable=False),  # duration_sec in ms, -1 when unknown (project.duration_key)
    Column("rating", SmallInteger),
    Column("rated_at", Float),
    Column("rating_hi", SmallInteger, nullable=False),  # rating, -1 when unrated: "-rating" sort
    Column("rating_lo", SmallInteger, nullable=False),  # rating, 6 when unrated: "rating" sort
    Column("search_text", Text),  # portable text search where FTS5 is not available
    Column("amendments", Integer, nullable=False, server_default="0"),  # amendment lines applied (job_amendments)
    Column("review", Text),  # the current review state as JSON (reviews.py), null when none
)
# completed_at and rating_hi ride along so that a time window or a rating filter is
# checked in the index while walking another sort's order, without reading each job's row.
Index("ix_jobs_completed", jobs.c.completed_at, jobs.c.id, jobs.c.rating_hi)
Index("ix_jobs_rating_hi", jobs.c.rating_hi, jobs.c.id, jobs.c.completed_at)
Index("ix_jobs_rating_lo", jobs.c.rating_lo, jobs.c.id, jobs.c.completed_at)
Index("ix_jobs_duration", jobs.c.duration_key, jobs.c.id, jobs.c.completed_at, jobs.c.rating_hi)

# Every (field, normalised value) of the registry (fields.py) that any job has had, numbered by
# `tag`, with its unfiltered facet counts, kept current by ingest so that the common view needs
# no scan. The number is what job_tags stores: a small integer instead of two strings in the
# table and each of its four indexes. Numbers are given in the order values first appear, so
# a rebuild may number them otherwise than live ingest did (verify compares field and value).
facet_values = Table(
    "facet_values",
    metadata,
    # BIGINT on PostgreSQL: its upsert draws a number from the sequence for every value it is
    # given, new or not (~22 a job), which would run past 2**31 at ~100 million jobs.
    Column("tag", Offset, primary_key=True, autoincrement=True),
    Column("field", String(16), nullable=False),
    Column("value", String(512), nullable=False),
    Column("display", String(512), nullable=False),
    Column("count", Integer, nullable=False),
    Column("rated_count", Integer, nullable=False),
    Column("rating_sum", Integer, nullable=False),
    UniqueConstraint("field", "value", name="uq_facet_values_field_value"),
)
Index("ix_facet_values_count", facet_values.c.field, facet_values.c.count)

# One row per (job, value) for every field of the registry. The job's sort keys are copied so
# that a listing filtered on one value is one range scan of the index for its sort, whatever
# the sort ("rating" ascending too: rating_hi's index read in two ranges, queries.py).
job_tags = Table(
    "job_tags",
    metadata,
    Column("job", Offset, primary_key=True),
    Column("tag", Offset, primary_key=True),  # facet_values.tag
    Column("completed_at", Float, nullable=False),
    Column("duration_key", Float, nullable=False),
    Column("rating_hi", SmallInteger, nullable=False),
    sqlite_with_rowid=False,
)
Index("ix_tags_listing", job_tags.c.tag, job_tags.c.completed_at, job_tags.c.job)
Index("ix_tags_rating_hi", job_tags.c.tag, job_tags.c.rating_hi, job_tags.c.job)
Index("ix_tags_duration", job_tags.c.tag, job_tags.c.duration_key, job_tags.c.job)

# The images each job names as its outputs, by a 64-bit hash of the folder and file name
# (project.output_key): an image found later in a folder (`import`, `serve --watch`) that a
# recorded job already names is that job's output, not a job of its own. The hash keeps the
# table small; a match is confirmed against the job's record (Service.output_owners).
job_outputs = Table(
    "job_outputs",
    metadata,
    Column("key", BigInteger, primary_key=True, autoincrement=False),
    Column("job", Offset, primary_key=True, autoincrement=False),  # jobs.id
    sqlite_with_rowid=False,
)

# The amendment lines of a job (PATCH /api/jobs/<id>): byte offsets in learning_log_v2.jsonl,
# applied in order over the job's line to give its current record.
job_amendments = Table(
    "job_amendments",
    metadata,
    Column("id", Offset, primary_key=True, autoincrement=False),
    Column("job_id", String(128), nullable=False),
    Column("line_length", Integer, nullable=False),
)
Index("ix_job_amendments_job", job_amendments.c.job_id, job_amendments.c.id)

rating_events = Table(
    "rating_events",
    metadata,
    Column("id", Offset, primary_key=True, autoincrement=False),  # byte offset in the ratings file
    Column("rating_id", String(64), nullable=False),
    Column("job_id", String(128), nullable=False),
    Column("rating", SmallInteger),
    Column("timestamp", Float, nullable=False),
    Column("source", String(32), nullable=False),
)
Index("ix_rating_events_job", rating_events.c.job_id, rating_events.c.id)

# Review events (reviews.py: flags, tags, notes, sub-scores, image ratings), from the ratings file.
review_events = Table(
    "review_events",
    metadata,
    Column("id", Offset, primary_key=True, autoincrement=False),  # byte offset in the ratings file
    Column("review_id", String(64), nullable=False),
    Column("job_id", String(128), nullable=False),
    Column("output", Integer),  # null: the job's own keys; else the image's index
    Column("changes", Text, nullable=False),  # the event's `set`, as JSON
    Column("timestamp", Float, nullable=False),
    Column("source", String(32), nullable=False),
)
Index("ix_review_events_job", review_events.c.job_id, review_events.c.id)

# How far each journal file has been indexed; written in the same transaction as the rows.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("offset", BigInteger, nullable=False),
    Column("line_count", BigInteger, nullable=False),
    Column("first_line_hash", String(64)),
    Column("skipped", BigInteger, nullable=False),
)

# "generation": a random token replaced whenever the index starts over (see index/text_search.py);
# "projection": the projection the rows were made with (index/project.py PROJECTION).
index_meta = Table(
    "index_meta",
    metadata,
    Column("key", String(32), primary_key=True),
    Column("value", String(64), nullable=False),
)
