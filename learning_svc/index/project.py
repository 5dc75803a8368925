"""The one projection: stored journal lines -> index rows. Live ingest and reindex both call it."""

from __future__ import annotations

import hashlib
import math
import operator
import uuid
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import orjson
from sqlalchemy import Connection, select, update
from sqlalchemy.exc import DBAPIError

from .. import records, reviews
from ..fields import BY_NAME, FIELDS, RECORD_FIELDS, REVIEW_FIELDS
from . import db
from .tables import index_meta, job_amendments, job_outputs, job_tags, jobs, rating_events, review_events
from .words import cjk_spaced, words

# Changes whenever a stored line projects into other rows (a field added to the registry,
# a summary key): the index is then rebuilt from the journal at the next start (sync.py).
PROJECTION = hashlib.sha256(("10:" + ",".join(field.name for field in FIELDS)).encode()).hexdigest()[:16]


class UnprojectableLine(ValueError):
    """A line that parses as JSON but lacks what every record must have."""


@dataclass
class JobRows:
    job: dict
    tags: list[tuple[str, str, str]]  # (field, key, display)
    search: dict
    outputs: list[int]  # output_hash of each output the job names (job_outputs)


# The index's column widths (tables.py), which PostgreSQL enforces and SQLite does not: a line
# another writer made with longer values is indexed the same on both (cut, or skipped).
JOB_ID_MAX, STATUS_MAX, VALUE_MAX = 128, 16, 512


def project_job(line: dict, offset: int, length: int) -> JobRows | None:
    """Turn one stored learning_log_v2 line (at `offset`, `length` bytes) into index rows;
    None for a line the index passes over (a job id longer than any the API takes)."""
    try:
        job_id, completed_at = line["job_id"], float(line["completed_at"])
    except (KeyError, TypeError, ValueError):
        raise UnprojectableLine("a learning_log_v2 line needs job_id and a numeric completed_at") from None
    if not isinstance(job_id, str) or not job_id:
        raise UnprojectableLine("job_id must be a non-empty string")
    if len(job_id) > JOB_ID_MAX:  # another writer's line: no API call could name it; skipped, and counted
        return None
    status = str(line.get("status") or "completed")[:STATUS_MAX]
    tags, seen = [], set()
    for field in RECORD_FIELDS:
        for raw in field.read(line):
            tag = _tag(field.name, raw)
            if tag is not None and tag[:2] not in seen:  # a value written twice (a pack listed twice) once
                seen.add(tag[:2])
                tags.append(tag)
    duration = line.get("duration_sec")
    job = {
        "id": offset,
        "job_id": job_id,
        "input_hash": str(line.get("input_hash") or "")[:64],
        "line_length": length,
        "status": status,
        "completed_at": completed_at,
        "duration_key": duration_key(duration),
        "rating": None,
        "rated_at": None,
        "rating_hi": -1,
        "rating_lo": 6,
        "search_text": None,
        "amendments": 0,
        "review": None,
    }
    search = {
        "rowid": offset,
        "job_id": job_id,
        "packs": " ".join(p for p in line.get("packs") or () if isinstance(p, str)),
        "prompt": _text(line.get("prompt")),
        "negative_prompt": _text(line.get("negative_prompt")),
        "run_id": _text(line.get("run_id")),
        "outputs": outputs_text(line.get("outputs"), _text(line.get("run_id"))),
    }
    return JobRows(job, tags, search, _output_hashes(line))


def outputs_text(outputs, run_id: str = "") -> str:
    """What the text search knows of a job's images: each folder once, by its last two names (as
    a user knows it: `txt2img-images/2024-05-01`, `ComfyUI/output`; not `/home/ana/...`, which
    every job shares), then each file's name, so that `00012`, `txt2img-images` or `2024-05-01`
    find the images a folder holds. A batch's images share a folder: named once a job, it keeps
    the index small, as does leaving out a folder named as the job's run (StableNew's
    `output/Pipeline/<run id>/`: its words are searched as the run's). Windows and POSIX paths."""
    if not isinstance(outputs, list):
        return ""
    folders, names = {}, []
    for path in outputs:
        if isinstance(path, str):
            parts = [part for part in path.replace("\\", "/").split("/") if part]
            folder = [part for part in parts[-3:-1] if part != run_id] if run_id else parts[-3:-1]
            if folder:
                folders["/".join(folder)] = None
            names.extend(parts[-1:])
    return " ".join([*folders, *names])


def output_key(path: str) -> str:
    """An image's path as a job's outputs and a folder walk can both say it: its folder's name
    and its own, case-folded, `/` between (StableNew records `output\\run\\image.png` from
    Windows; the same file is `.../output/run/image.png` here). A bare file name is itself."""
    return "/".join(part.casefold() for part in path.replace("\\", "/").rstrip("/").split("/")[-2:])


def output_hash(key: str) -> int:
    """output_key as a signed 64-bit number (job_outputs.key): 8 bytes a row instead of ~70."""
    return int.from_bytes(
        hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big", signed=True
    )


def _output_hashes(line: dict) -> list[int]:
    """The hashes of the outputs a job names, except a job made from an image file (the importer's
    `img-<sha256>` id over `extra.image.sha256`): that one is known by its content, and its path
    says nothing of other images (another ComfyUI folder has its own `output/ComfyUI_00001_.png`)."""
    outputs = line.get("outputs")
    if not outputs or not isinstance(outputs, list) or made_from_an_image(line):
        return []
    return list(dict.fromkeys(output_hash(output_key(o)) for o in outputs if isinstance(o, str) and o.strip("/\\")))


def made_from_an_image(line: dict) -> bool:
    """A job the image importer made (a pipeline's own `extra.image` does not make one)."""
    extra = line.get("extra")
    image = extra.get("image") if isinstance(extra, dict) else None
    digest = image.get("sha256") if isinstance(image, dict) else None
    return isinstance(digest, str) and len(digest) == 64 and line.get("job_id") == "img-" + digest[:40]


def placed(rows: JobRows, offset: int, length: int) -> JobRows:
    """Rows projected before their line had a place in the log (by a batch's validation worker),
    given the offset and length it was appended at."""
    rows.job["id"] = rows.search["rowid"] = offset
    rows.job["line_length"] = length
    return rows


def duration_key(duration) -> float:
    """A job's duration sort key: duration_sec in whole milliseconds, -1 when unknown. Durations
    sort to the millisecond (a tie is ordered by job, as every tie): a whole number takes 1-4
    bytes in SQLite's REAL columns and their indexes instead of 8 (jobs, job_tags and their
    duration indexes: 8% of the index)."""
    if not isinstance(duration, (int, float)) or not math.isfinite(duration):
        return -1.0
    return float(round(duration * 1000))


def _tag(field_name: str, raw) -> tuple[str, str, str] | None:
    """(field, facet key, display) of one raw value; strings are cached, as a few hundred repeat endlessly."""
    if isinstance(raw, str):
        return _text_tag(field_name, raw)
    tag = BY_NAME[field_name].tag(raw) if raw is not None else None
    return (field_name, tag[0][:VALUE_MAX], tag[1][:VALUE_MAX]) if tag else None


# A few hundred values repeat endlessly; the rest (70,000 over 300,000 jobs) are seen once, and
# at 65,536 entries they held ~30 MB in each reindex worker and the service for the same hits.
@lru_cache(maxsize=4096)
def _text_tag(field_name: str, raw: str) -> tuple[str, str, str] | None:
    tag = BY_NAME[field_name].tag(raw)
    return (field_name, tag[0][:VALUE_MAX], tag[1][:VALUE_MAX]) if tag else None


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def _rating_cols(rating: int | None, rated_at: float | None) -> dict:
    rated = rating is not None
    return {
        "rating": rating,
        "rated_at": rated_at if rated else None,
        "rating_hi": rating if rated else -1,
        "rating_lo": rating if rated else 6,
    }


class FacetDeltas:
    """Facet count changes gathered over a batch, written with one upsert per value."""

    def __init__(self):
        self.rows: dict[tuple[str, str], list] = {}
        self.by_tag: dict[int, list] = {}  # tag number -> [rated, rating sum]: a job's rows, re-rated

    def add(self, field: str, key: str, display: str, count: int, rated: int, rating_sum: int) -> None:
        row = self.rows.get((field, key))
        if row is None:
            self.rows[(field, key)] = [display, count, rated, rating_sum]
        else:
            row[1] += count
            row[2] += rated
            row[3] += rating_sum

    def add_rating(self, rating: int | None, count: int) -> None:
        value = "none" if rating is None else str(rating)
        self.add("rating", value, value, count, count if rating is not None else 0, count * (rating or 0))

    def add_to_tag(self, tag: int, rated: int, rating_sum: int) -> None:
        row = self.by_tag.setdefault(tag, [0, 0])
        row[0] += rated
        row[1] += rating_sum

    def write(self, conn: Connection) -> dict[tuple[str, str], int]:
        """Apply the changes; returns the tag number of every (field, value) added to (new
        values are numbered here), for the job_tags rows written after it."""
        if self.by_tag:
            changes = [(rated, total, tag) for tag, (rated, total) in self.by_tag.items()]
            db.sql(
                conn,
                "UPDATE facet_values SET rated_count = rated_count + ?, rating_sum = rating_sum + ? WHERE tag = ?",
                changes,
            )
            self.by_tag.clear()
        numbers: dict[tuple[str, str], int] = {}
        for chunk in _chunks(list(self.rows.items())):
            statement = FACET_UPSERT.format(", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk)))
            params = [x for (f, v), (d, c, r, t) in chunk for x in (f, v, d, c, r, t)]
            numbers.update(((field, value), tag) for tag, field, value in db.sql(conn, statement, tuple(params)))
        self.rows.clear()
        return numbers


FACET_UPSERT = (  # the same on SQLite and PostgreSQL: one statement for up to 500 values
    'INSERT INTO facet_values (field, value, display, "count", rated_count, rating_sum) VALUES {} '
    'ON CONFLICT (field, value) DO UPDATE SET "count" = facet_values."count" + excluded."count", '
    "rated_count = facet_values.rated_count + excluded.rated_count, "
    "rating_sum = facet_values.rating_sum + excluded.rating_sum "
    "RETURNING tag, field, value"
)
TAG_COLUMNS = ("job", "tag", "completed_at", "duration_key", "rating_hi")
JOB_COLUMNS = tuple(c.name for c in jobs.columns)
_job_values = operator.itemgetter(*JOB_COLUMNS)  # a job's row in column order (13 µs a job as a generator)


def _chunks(items: list, size: int = 500):
    for i in range(0, len(items), size):
        yield items[i : i + size]


SEARCH_COLUMNS = ("job_id", "packs", "prompt", "negative_prompt", "run_id", "outputs")  # jobs_fts (migration 0012)
FTS_INSERT = f"INSERT INTO jobs_fts(rowid, {', '.join(SEARCH_COLUMNS)}) VALUES (?{', ?' * len(SEARCH_COLUMNS)})"
FTS_DELETE = (
    f"INSERT INTO jobs_fts(jobs_fts, rowid, {', '.join(SEARCH_COLUMNS)}) "
    f"VALUES ('delete', ?{', ?' * len(SEARCH_COLUMNS)})"
)  # a contentless table needs the old values


def _fts_values(search: dict) -> tuple:
    return (search["rowid"], *(cjk_spaced(search[c]) for c in SEARCH_COLUMNS))


def keeps_search_text(conn: Connection) -> bool:
    """Whether jobs.search_text is filled: where there is no FTS5, or when `verify` rebuilds in
    SQLite what it compares with a PostgreSQL index (execution option `search_text`)."""
    return conn.dialect.name != "sqlite" or conn.get_execution_options().get("search_text", False)


def search_text(search: dict) -> str:
    """The text search's words where there is no FTS5 (PostgreSQL: its tsvector is made from
    them), split and folded as FTS5 does."""
    return " ".join(words(" ".join(search[c] for c in SEARCH_COLUMNS)))


def insert_jobs(conn: Connection, batch: list[JobRows], known_new: bool = False) -> list[JobRows]:
    """Index a batch of job lines (in file order). Returns the lines skipped as duplicates.

    The first line of a job id wins; `known_new` skips the look-up when the caller checked.
    """
    if not batch:
        return []
    existing: set[str] = set()
    ids = [rows.job["job_id"] for rows in batch]
    for chunk in [] if known_new else _chunks(ids):
        existing.update(conn.scalars(select(jobs.c.job_id).where(jobs.c.job_id.in_(chunk))))
    fresh, duplicates = [], []
    for rows in batch:
        if rows.job["job_id"] in existing:
            duplicates.append(rows)
        else:
            existing.add(rows.job["job_id"])
            fresh.append(rows)
    if not fresh:
        return duplicates
    latest = latest_ratings(conn, [rows.job["job_id"] for rows in fresh])
    reviewed = replayed_reviews(conn, [rows.job["job_id"] for rows in fresh])
    deltas = FacetDeltas()
    for rows in fresh:
        rating, rated_at = latest.get(rows.job["job_id"], (None, None))
        rows.job.update(_rating_cols(rating, rated_at))
        state = reviewed.get(rows.job["job_id"])
        if state:  # reviewed before its line was indexed (a rebuild indexes the ratings file first)
            rows.job["review"] = orjson.dumps(state).decode()
            rows.tags = rows.tags + review_tags(state)
        rated = int(rating is not None)
        for field, key, display in rows.tags:
            deltas.add(field, key, display, 1, rated, rating or 0)
        deltas.add_rating(rating, 1)
    sqlite = conn.dialect.name == "sqlite"
    if keeps_search_text(conn):
        for rows in fresh:
            rows.job["search_text"] = search_text(rows.search)
    insert_many(conn, jobs, JOB_COLUMNS, [_job_values(rows.job) for rows in fresh])
    numbers = deltas.write(conn)
    insert_many(
        conn,
        job_tags,
        TAG_COLUMNS,
        [
            (job["id"], numbers[f, k], job["completed_at"], job["duration_key"], job["rating_hi"])
            for job, tags in ((rows.job, rows.tags) for rows in fresh)
            for f, k, _ in tags
        ],
    )
    insert_many(conn, job_outputs, ("key", "job"), [(key, rows.job["id"]) for rows in fresh for key in rows.outputs])
    if sqlite:
        conn.exec_driver_sql(FTS_INSERT, [_fts_values(r.search) for r in fresh])
    return duplicates


def insert_many(conn: Connection, table, columns, rows: list[tuple]) -> None:
    """Rows as tuples, straight to the driver: SQLAlchemy's per-row parameter handling costs
    more than the database's own insert work here. SQLite: an executemany; PostgreSQL: COPY,
    its bulk path (one stream for the batch instead of a statement per row)."""
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(columns))
        conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", rows)
        return
    import psycopg

    quoted = ", ".join(f'"{column}"' for column in columns)
    statement = f"COPY {table.name} ({quoted}) FROM STDIN"
    try:
        with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as error:  # as SQLAlchemy's own statements fail: the service answers 503
        raise DBAPIError.instance(statement, None, error, psycopg.Error) from None


def latest_ratings(conn: Connection, job_ids: list[str]) -> dict[str, tuple]:
    latest: dict[str, tuple] = {}
    statement = "SELECT job_id, rating, timestamp FROM rating_events WHERE job_id IN ({}) ORDER BY id"
    for job_id, rating, timestamp in db.rows_in(conn, statement, job_ids):  # a job's events in one chunk
        latest[job_id] = (rating, timestamp)
    return latest


def review_tags(state: dict | None) -> list[tuple[str, str, str]]:
    """The (field, key, display) rows of a review state's values (fields tag, flag, image_rating)."""
    tags, seen = [], set()
    for field in REVIEW_FIELDS:
        for raw in field.read(state or {}):
            tag = _tag(field.name, raw)
            if tag is not None and tag[:2] not in seen:
                seen.add(tag[:2])
                tags.append(tag)
    return tags


def replayed_reviews(conn: Connection, job_ids: list[str]) -> dict[str, dict]:
    """The review state of each job from its indexed review events (most jobs have none)."""
    states: dict[str, dict] = {}
    statement = "SELECT job_id, output, changes FROM review_events WHERE job_id IN ({}) ORDER BY id"
    for job_id, output, changes in db.rows_in(conn, statement, job_ids):
        states[job_id] = reviews.apply(states.get(job_id), output, orjson.loads(changes))
    return {job_id: state for job_id, state in states.items() if state}


def project_review(line: dict, offset: int) -> dict | None:
    """Turn one stored learning_review_v1 line into its review_events row (None: not readable here)."""
    event = reviews.valid_event(line)
    timestamp = line.get("timestamp")
    if event is None or not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        return None
    job_id, output, changes = event
    if len(job_id) > JOB_ID_MAX:  # can name no indexed job
        return None
    return {
        "id": offset,
        "review_id": str(line.get("review_id") or offset)[:64],
        "job_id": job_id,
        "output": output,
        "changes": orjson.dumps(changes).decode(),
        "timestamp": float(timestamp),
        "source": str(line.get("source") or "api")[:32],
    }


def insert_reviews(conn: Connection, events: list[dict]) -> None:
    """Index a batch of review events (in file order): each job's state, its value rows and
    their facet counts move; events of jobs not indexed yet wait in review_events."""
    if not events:
        return
    columns = [c.name for c in review_events.columns]
    insert_many(conn, review_events, columns, [tuple(event[c] for c in columns) for event in events])
    by_job: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_job[event["job_id"]].append(event)
    rows = list(
        db.rows_in(
            conn,
            "SELECT id, job_id, review, rating, completed_at, duration_key, rating_hi FROM jobs WHERE job_id IN ({})",
            by_job,
        )
    )
    deltas = FacetDeltas()
    gone, added, states = [], [], []
    for row in rows:
        old = orjson.loads(row.review) if row.review else None
        new = old
        for event in by_job[row.job_id]:
            new = reviews.apply(new, event["output"], orjson.loads(event["changes"]))
        before = {tag[:2]: tag for tag in review_tags(old)}
        after = {tag[:2]: tag for tag in review_tags(new)}
        rated, total = int(row.rating is not None), row.rating or 0
        for key in before.keys() - after.keys():
            deltas.add(*before[key], -1, -rated, -total)
            gone.append((row.id, key))
        for key in after.keys() - before.keys():
            deltas.add(*after[key], 1, rated, total)
            added.append((row.id, key, row.completed_at, row.duration_key, row.rating_hi))
        states.append((orjson.dumps(new).decode() if new else None, row.id))
    numbers = deltas.write(conn)
    if gone:
        db.sql(conn, "DELETE FROM job_tags WHERE job = ? AND tag = ?", [(job, numbers[key]) for job, key in gone])
    insert_many(conn, job_tags, TAG_COLUMNS, [(job, numbers[key], *keys) for job, key, *keys in added])
    if states:
        db.sql(conn, "UPDATE jobs SET review = ? WHERE id = ?", states)


def project_rating(line: dict, offset: int) -> dict | None:
    """Turn one stored learning_rating_v2 line into its rating_events row."""
    job_id, rating = line.get("job_id"), line.get("rating")
    if not isinstance(job_id, str) or not job_id:
        raise UnprojectableLine("a learning_rating_v2 line needs a job_id")
    if len(job_id) > JOB_ID_MAX:  # can name no indexed job: skipped, and counted
        return None
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int) or not 0 <= rating <= 5):
        raise UnprojectableLine("rating must be null or an integer from 0 to 5")
    timestamp = line.get("timestamp")
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        raise UnprojectableLine("a learning_rating_v2 line needs a numeric timestamp")
    return {
        "id": offset,
        "rating_id": str(line.get("rating_id") or offset)[:64],
        "job_id": job_id,
        "rating": rating,
        "timestamp": float(timestamp),
        "source": str(line.get("source") or "api")[:32],
    }


def insert_ratings(conn: Connection, events: list[dict]) -> None:
    """Index a batch of rating events (in file order) and move each job's current rating."""
    if not events:
        return
    columns = [c.name for c in rating_events.columns]
    insert_many(conn, rating_events, columns, [tuple(event[c] for c in columns) for event in events])
    final = {event["job_id"]: event for event in events}  # the last event per job wins
    current = {
        row.job_id: row for row in db.rows_in(conn, "SELECT id, job_id, rating FROM jobs WHERE job_id IN ({})", final)
    }
    if not current:
        return
    tags_by_job = defaultdict(list)
    ids = [row.id for row in current.values()]
    for job, tag in db.rows_in(conn, "SELECT job, tag FROM job_tags WHERE job IN ({})", ids):
        tags_by_job[job].append(tag)
    deltas = FacetDeltas()
    updates, moved = [], []
    for job_id, row in current.items():
        event = final[job_id]
        old, new = row.rating, event["rating"]
        cols = _rating_cols(new, event["timestamp"])
        updates.append((cols["rating"], cols["rated_at"], cols["rating_hi"], cols["rating_lo"], row.id))
        if old == new:  # only the time moves: the tag rows' copy of the rating stays
            continue
        moved.append((cols["rating_hi"], row.id))
        d_rated = int(new is not None) - int(old is not None)
        d_sum = (new or 0) - (old or 0)
        for tag in tags_by_job[row.id]:
            deltas.add_to_tag(tag, d_rated, d_sum)
        deltas.add_rating(old, -1)
        deltas.add_rating(new, 1)
    db.sql(conn, "UPDATE jobs SET rating = ?, rated_at = ?, rating_hi = ?, rating_lo = ? WHERE id = ?", updates)
    if moved:  # the copies of the sort key in the job's tag rows (~20 a job)
        db.sql(conn, "UPDATE job_tags SET rating_hi = ? WHERE job = ?", moved)
    deltas.write(conn)


def apply_amendment(conn: Connection, line: dict, offset: int, length: int, read_line) -> bool:
    """Index an amendment line (learning_amend_v2): re-project its job from the job's line and
    all its amendments so far, moving tags, facet counts and text. False when there is nothing
    to apply it to (an unknown job, or an amendment that no longer validates): skipped.

    `read_line(offset, length)` returns a stored line of the log. Held text searches hold
    each job's text and sort keys, so the index generation is renewed (index/text_search.py).
    """
    job_id = line.get("job_id")
    row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first() if isinstance(job_id, str) else None
    if row is None:
        return False
    base = read_line(row.id, row.line_length)
    earlier = [
        read_line(a.id, a.line_length)
        for a in conn.execute(
            select(job_amendments.c.id, job_amendments.c.line_length)
            .where(job_amendments.c.job_id == job_id)
            .order_by(job_amendments.c.id)
        )
    ]
    try:
        before = records.effective_line(base, earlier)
        after = records.effective_line(base, [*earlier, line])
    except records.InvalidRecord:
        return False
    old, new = project_job(before, row.id, row.line_length), project_job(after, row.id, row.line_length)
    if old is None or new is None:
        return False
    rating = _rating_cols(row.rating, row.rated_at)
    deltas = FacetDeltas()
    rated, total = int(row.rating is not None), row.rating or 0
    for field, key, display in old.tags:
        deltas.add(field, key, display, -1, -rated, -total)
    for field, key, display in new.tags:
        deltas.add(field, key, display, 1, rated, total)
    numbers = deltas.write(conn)
    # The record's old values go (the review's stay: they do not come from the record).
    if old.tags:
        gone = [(row.id, numbers[f, k]) for f, k, _ in old.tags]
        db.sql(conn, "DELETE FROM job_tags WHERE job = ? AND tag = ?", gone)
    job = {**new.job, **rating}
    insert_many(
        conn,
        job_tags,
        TAG_COLUMNS,
        [(row.id, numbers[f, k], job["completed_at"], job["duration_key"], job["rating_hi"]) for f, k, _ in new.tags],
    )
    conn.execute(  # an amended completed_at or duration moves the review's rows too
        update(job_tags)
        .where(job_tags.c.job == row.id)
        .values(completed_at=job["completed_at"], duration_key=job["duration_key"])
    )
    sqlite = conn.dialect.name == "sqlite"
    conn.execute(
        update(jobs)
        .where(jobs.c.id == row.id)
        .values(
            status=job["status"],
            completed_at=job["completed_at"],
            duration_key=job["duration_key"],
            search_text=search_text(new.search) if keeps_search_text(conn) else None,
            amendments=row.amendments + 1,
        )
    )
    if sqlite:
        conn.exec_driver_sql(FTS_DELETE, [_fts_values(old.search)])
        conn.exec_driver_sql(FTS_INSERT, [_fts_values(new.search)])
    if old.outputs != new.outputs:  # an enrichment line that names the job's images
        gone = [(key, row.id) for key in old.outputs if key not in new.outputs]
        if gone:
            db.sql(conn, "DELETE FROM job_outputs WHERE key = ? AND job = ?", gone)
        insert_many(conn, job_outputs, ("key", "job"), [(key, row.id) for key in new.outputs if key not in old.outputs])
    insert_many(conn, job_amendments, ("id", "job_id", "line_length"), [(offset, job_id, length)])
    conn.execute(update(index_meta).where(index_meta.c.key == "generation").values(value=uuid.uuid4().hex))
    return True
