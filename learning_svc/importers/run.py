"""`learning-svc import PATH...`: find what each path holds, and write it through the service.

Writes go through a Service of this process on the same data directory: the same
validation, journal lock, group commit (one fsync per batch) and projection as the API,
so it works whether a server runs on the directory or not (a running server sees the jobs
at once: they share the index). A second import writes nothing: jobs are identical
retries, ratings carry ids of their own, and a job that came back with more (StableNew's
enrichment lines) is amended with what it lacked. One bad entry never stops the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from .. import records, reviews
from ..config import Settings
from ..index.project import made_from_an_image
from ..service import (
    BadReview,
    Conflict,
    IndexBehind,
    NotFound,
    Service,
    Unavailable,
    amend_op,
    job_op,
    keep_outputs,
    owners_among,
    rating_op,
    stored_op,
)
from . import (
    DATA_FOLDER_CACHES,
    Item,
    Job,
    Problem,
    Rating,
    Review,
    Where,
    images,
    is_data_folder,
    own_export,
    records_file,
    stablenew,
)

BATCH = 500  # entries written together (one group commit, one fsync)
OWNERS_ASKED = 200  # images whose paths are looked up in the index together (_owned)
# Reads' waits (5 s each) in a row in which the index may index nothing before an import stops:
# one follower transaction of a slow disk or a busy PostgreSQL server can take longer than one.
STALLED_WAITS = 6
OUTCOMES = ("imported", "already present", "amended", "refused", "skipped")


# ---------------------------------------------------------------- finding the sources


HISTORY, IMAGES = "history", "images"  # the two walks over the paths (_write)


def sources(paths: Iterable[Path], output_root: Path | None, walk: str) -> Iterator[Item]:
    """The entries under the paths, each file's kind told by its content: on the HISTORY walk
    every file but images (and the problems of paths and folders), on the IMAGES walk images."""
    for path in paths:
        if not path.exists():
            if walk == HISTORY:
                yield Problem(Where(str(path)), "no such file or folder", "skipped")
        elif path.is_dir():
            yield from _folder(path, output_root, walk)
        elif images.is_image(path) == (walk == IMAGES):
            yield from _file(path, output_root)


def _folder(folder: Path, output_root: Path | None, walk: str) -> Iterator[Item]:
    if stablenew.is_discovered_group(folder):
        if walk == HISTORY:  # StableNew's paths: its folder's
            yield from stablenew.discovered_group(folder, output_root or Path.cwd())
        return
    try:
        children = sorted(folder.iterdir())
    except OSError as error:
        if walk == HISTORY:
            yield Problem(Where(str(folder)), f"cannot list the folder: {error.strerror or error}", "skipped")
        return
    data_folder = is_data_folder(folder)
    for child in children:
        try:
            if child.is_symlink() and child.is_dir():
                continue  # never follow a folder link (loops, other disks): import what it points to by its own path
            if data_folder and child.name in DATA_FOLDER_CACHES:
                continue  # learning_svc's own thumbnails and reports: they were imported as jobs
            if child.is_dir():
                yield from _folder(child, output_root, walk)
            elif images.is_image(child) if walk == IMAGES else child.suffix.lower() == ".jsonl":
                yield from _file(child, output_root)
        except OSError as error:  # vanished, no permission, a name the file system refuses
            if walk == HISTORY:
                yield Problem(Where(str(child)), f"cannot read it: {error.strerror or error}", "skipped")


def _file(path: Path, output_root: Path | None) -> Iterator[Item]:
    if images.is_image(path):
        yield images.image_job(path, output_root)
        return
    kind = detect(path)
    if kind is None and path.name == "learning_ratings_v2.jsonl" and is_data_folder(path.parent):
        reason = (
            "a learning_svc data folder's ratings journal: to bring its ratings and reviews, import that "
            "folder's export (`learning-svc export --data-dir …`) instead of the folder"
        )
        yield Problem(Where(str(path)), reason, "skipped")
    elif kind is None:
        yield Problem(Where(str(path)), "not a history file this importer knows", "skipped")
    elif kind == "job_history":
        yield from stablenew.job_history(path)
    elif kind == "learning_records":
        yield from stablenew.learning_records(path)
    elif kind == "export":
        yield from own_export.export_lines(path)
    elif kind == "records":
        yield from records_file.record_lines(path)


def detect(path: Path) -> str | None:
    """What a JSONL file holds, from its first object."""
    try:
        with open(path, "rb") as f:
            for raw in f:
                if raw.strip():
                    first = json.loads(raw)
                    break
            else:
                return None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(first, dict):
        return None
    if own_export.looks_like(first):
        return "export"
    if "base_config" in first or isinstance(first.get("metadata"), dict) and "user_rating" in first["metadata"]:
        return "learning_records"
    if "job_id" in first and "status" in first and ("created_at" in first or "payload_summary" in first):
        return "job_history"
    if records_file.looks_like(first):
        return "records"
    return None


# ---------------------------------------------------------------- writing


def _row(path: str) -> str:
    """The table's row of an entry: its file, or for an image its folder (a row per image made
    a table of 20,000 lines; the report file names each image that was refused or skipped)."""
    if images.is_image(Path(path)):
        return os.path.join(os.path.dirname(path) or os.curdir, "")  # ./ for images given by name alone
    return path


@dataclass
class Tally:
    # source file (or folder of images) -> outcome -> n
    counts: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    # refused and skipped entries, and entries imported or amended with something left out: why
    problems: list[dict] = field(default_factory=list)
    imported: Counter = field(default_factory=Counter)  # "jobs" / "ratings" imported (an entry is either)
    outputs_of_jobs: int = 0  # images counted "already present" as the outputs of recorded jobs
    moved: int = 0  # image jobs counted "amended" to where their image is now (moved, renamed)

    def add(self, where: Where, outcome: str, reason: str = "", kind: str = "jobs") -> None:
        row = self.counts[_row(where.path)]
        row["read"] += 1
        row[outcome] += 1
        if outcome == "imported":
            self.imported[kind] += 1
        if outcome in ("refused", "skipped") or reason:  # an amended entry may say what it left out
            self.problems.append({"file": where.path, "line": where.line, "outcome": outcome, "reason": reason})

    def total(self) -> Counter:
        return sum(self.counts.values(), Counter())


class Writer:
    """Writes entries in batches through a started Service (or, dry, only decides)."""

    def __init__(self, service: Service, tally: Tally, dry_run: bool = False):
        self.service, self.tally, self.dry_run = service, tally, dry_run
        self.pending: list[Item] = []
        self.known: set[str] = set()  # job ids recorded or found in this run (a dry run's ratings refer to them)
        self.dry_records: dict[str, dict] = {}  # a dry run's idea of the jobs it would record or amend
        self.outputs: dict[str, list[tuple[str, str]]] = {}  # the outputs of this run's jobs (owners_among)
        self.claimed: dict[tuple[str, str], str] = {}  # (job, output) -> the image it was taken to name
        self.dry_ratings: dict[str, int] = {}  # a dry run's idea of each job's rating so far

    def add(self, item: Item) -> None:
        if isinstance(item, Problem):
            self.tally.add(item.where, item.outcome, item.reason)
            return
        self.pending.append(item)
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        items, self.pending = self.pending, []
        jobs = [item for item in items if isinstance(item, Job)]
        self._jobs(jobs)
        self._ratings([item for item in items if isinstance(item, Rating)])
        for item in items:
            if isinstance(item, Review):
                self._review(item)

    # -- jobs
    def _jobs(self, jobs: list[Job]) -> None:
        ops, owners = [], []
        for job in jobs:
            try:
                op = write_op(job, self.service.settings.max_body_bytes)
            except records.InvalidRecord as error:
                self.tally.add(job.where, "refused", str(error))
                continue
            ops.append(op)
            owners.append(job)
        if self.dry_run:
            for job, op in zip(owners, ops):
                self._dry_job(job, op.payload)
            return
        self.service.submit_many(ops)
        enrich = []
        for job, op in zip(owners, ops):
            if isinstance(op.error, Conflict):
                enrich.append((job, op.payload))
            elif op.error is not None:
                self.tally.add(job.where, "refused", str(op.error))
            else:
                self.known.add(job.body["job_id"])
                self._keep_outputs(job)
                created, _ = op.result
                outcome = "imported" if created else "already present"
                if job.amendments and self._replay(job, created) and not created:
                    outcome = "amended"
                self.tally.add(job.where, outcome, job.note if created else "")
        for job, line in enrich:
            self.known.add(job.body["job_id"])
            self._keep_outputs(job)  # the job is recorded, whatever this entry adds to it
            self.tally.add(job.where, *self._enrich(job, line))

    def _keep_outputs(self, job: Job) -> None:
        """The images this history job names as its outputs, not jobs of their own (_owned)."""
        if images.is_image(Path(job.where.path)) or made_from_an_image(job.body):
            return  # an image's job (found here, or in an export): known by its content, as in the index
        keep_outputs(self.outputs, job.body["job_id"], job.body)

    def _replay(self, job: Job, created: bool) -> bool:
        """Our export's amendments: in order onto a job recorded now (its history as it was); onto a
        job already here, only what its current record lacks of the export's, as one amendment (a
        second import of the same export, or an export brought back home, writes nothing). True
        when the job here changed."""
        if (
            not created
            and (patch := _amended_since(job, self.service.get_job(job.body["job_id"])["record"])) is not None
        ):
            if not patch:
                return False
            op = self.service.submit_many([amend_op(job.body["job_id"], patch, replace=True)])[0]
            return op.error is None and bool(op.result[0])
        changed = False
        for changes in job.amendments:
            op = self.service.submit_many([amend_op(job.body["job_id"], changes, replace=True)])[0]
            changed |= op.error is None and bool(op.result[0])
        return changed

    def _enrich(self, job: Job, line: dict) -> tuple[str, str]:
        """The same job with other content: set what the recorded job lacks (never change what it
        has). What the entry says otherwise than the recorded job is left out, and said: refused
        when nothing of the entry was taken (the API's 409), else amended with the reason."""
        job_id = line["job_id"]
        if images.is_image(Path(job.where.path)) and self.service.follow_moved_image(job_id, line["outputs"][0]):
            self.tally.moved += 1  # the image moved or was renamed: its job's output is where it is now
            return "amended", ""
        patch, differing = _against(self.service.get_job(job_id)["record"], job, line)
        if not patch:
            return ("refused", differing) if differing else ("already present", "")
        op = self.service.submit_many([amend_op(job_id, patch)])[0]
        if op.error is not None:
            return "refused", f"could not amend job {job_id}: {op.error}"
        if not op.result[0]:
            return ("refused", differing) if differing else ("already present", "")
        return "amended", differing

    def _dry_job(self, job: Job, line: dict) -> None:
        """What the real run would do, the jobs this run would record or amend included (three
        lines of one job were three imports)."""
        job_id = line["job_id"]
        self.known.add(job_id)
        self._keep_outputs(job)
        current = self.dry_records.get(job_id)
        if current is None:
            try:
                current = self.service.get_job(job_id)["record"]
            except NotFound:
                self.dry_records[job_id] = line
                self.tally.add(job.where, "imported", job.note)
                return
            if images.is_image(Path(job.where.path)) and self.service.image_moved(job_id, line["outputs"][0]):
                self.dry_records[job_id] = {**current, "outputs": line["outputs"]}
                self.tally.add(job.where, "amended")  # as the real run follows a moved image
                self.tally.moved += 1
                return
        if current.get("input_hash") == line["input_hash"]:
            patch = _amended_since(job, current) if job.amendments else {}
            if patch:
                self.dry_records[job_id] = {**current, **patch}
            self.tally.add(job.where, "amended" if patch else "already present")
            return
        patch, differing = _against(current, job, line)
        if patch:
            self.dry_records[job_id] = {**current, **patch}
            self.tally.add(job.where, "amended", differing)
        else:
            self.tally.add(job.where, *(("refused", differing) if differing else ("already present", "")))

    # -- ratings
    def _ratings(self, ratings: list[Rating]) -> None:
        if not ratings:
            return
        latest = self.service.latest_rating_times(sorted({r.job_id for r in ratings}))
        if self.dry_run:  # what the rating ops would find, as the real run's commit does
            known, current = self.service.rating_state(
                sorted({r.job_id for r in ratings}), [r.rating_id for r in ratings]
            )
        ops, owners = [], []
        for rating in ratings:
            if latest.get(rating.job_id, float("-inf")) > rating.timestamp:
                self.tally.add(
                    rating.where, "already present", kind="ratings"
                )  # rated again since: the newer rating stays
                continue
            if self.dry_run:
                now = self.dry_ratings.get(rating.job_id, current.get(rating.job_id))
                if rating.job_id not in self.known and rating.job_id not in latest and rating.job_id not in current:
                    self.tally.add(rating.where, "refused", f"no job {rating.job_id!r}", kind="ratings")
                elif rating.rating_id in known or now == rating.rating:
                    self.tally.add(rating.where, "already present", kind="ratings")
                else:
                    self.dry_ratings[rating.job_id] = rating.rating
                    self.tally.add(rating.where, "imported", kind="ratings")
                continue
            ops.append(rating_op(rating.job_id, rating.rating, rating.source, rating.timestamp, rating.rating_id))
            owners.append(rating)
        if ops:
            self.service.submit_many(ops)
        for rating, op in zip(owners, ops):
            if op.error is not None:
                self.tally.add(rating.where, "refused", str(op.error), kind="ratings")
            else:
                self.tally.add(rating.where, "imported" if op.result[0] else "already present", kind="ratings")

    # -- reviews
    def _review(self, item: Review) -> None:
        """The review the job had there, where the job here lacks it: a flag, a note, a sub-score
        or an image's rating it has none of, and the tags it does not have. What the job here
        has is never changed, so a second import (or a review given here since) stays."""
        try:
            current = self.service.get_job(item.job_id)["summary"]
        except NotFound:
            if not (self.dry_run and item.job_id in self.known):
                self.tally.add(item.where, "refused", f"no job {item.job_id!r} for its review", kind="reviews")
                return
            current = {}
        changes, left_out = _lacking_review(item.job_id, item.review, current)
        for reason in left_out:
            self.tally.problems.append(
                {"file": item.where.path, "line": item.where.line, "outcome": "skipped", "reason": reason}
            )
        outputs = current.get("num_outputs")
        beyond = sorted(
            output for _, output, _ in changes if output is not None and outputs is not None and output >= outputs
        )
        if beyond:  # rated there after an amendment (of an older version) took the image away
            changes = [change for change in changes if change[1] not in beyond]
            shown = ", ".join(map(str, beyond))
            self.tally.problems.append(
                {
                    "file": item.where.path,
                    "line": item.where.line,
                    "outcome": "skipped",
                    "reason": f"its rating of output {shown}: job {item.job_id!r} has {outputs} output"
                    f"{'s' if outputs != 1 else ''} (the rest of its review is imported)",
                }
            )
        if not changes:
            self.tally.add(item.where, "already present", kind="reviews")
            return
        if self.dry_run:
            self.tally.add(item.where, "imported", kind="reviews")
            return
        try:
            result = self.service.review_many(changes, SOURCE_OF_REVIEWS)
        except (NotFound, BadReview, ValueError) as error:
            self.tally.add(item.where, "refused", f"its review: {error}", kind="reviews")
            return
        self.tally.add(item.where, "imported" if result["changed"] else "already present", kind="reviews")


SOURCE_OF_REVIEWS = "import"


def _lacking_review(job_id: str, review: dict, current: dict) -> tuple[list[tuple[str, int | None, dict]], list[str]]:
    """(job_id, output, set) items of what `review` (an export's) gives and `current` (the job's
    summary here) lacks, each part validated as the API would; and what was left out, and why
    (a part the API refuses; the tags past a job's MAX_TAGS, which older versions let in)."""
    wanted: dict = {}
    if review.get("flag") in reviews.FLAGS and not current.get("flag"):
        wanted["flag"] = review["flag"]
    if isinstance(review.get("note"), str) and review["note"] and not current.get("note"):
        wanted["note"] = review["note"]
    held = [tag for tag in current.get("tags") or () if isinstance(tag, str)]
    have = {tag.casefold() for tag in held}
    tags = reviews.clean_tags([t for t in review.get("tags") or () if isinstance(t, str) and t.strip()])
    tags = [tag for tag in tags if tag.casefold() not in have]
    left_out = []
    room = max(0, reviews.MAX_TAGS - len(held))
    if len(tags) > room:
        left_out.append(
            f"{len(tags) - room} of its tags: a job has at most {reviews.MAX_TAGS} (left out: {', '.join(tags[room:])})"
        )
        tags = tags[:room]
    if tags:
        wanted["tags_add"] = tags
    scores = review.get("scores") if isinstance(review.get("scores"), dict) else {}
    lacking = {name: v for name, v in scores.items() if name not in (current.get("scores") or {})}
    if lacking:
        wanted["scores"] = lacking
    for key in list(wanted):  # each part on its own: one the API refuses does not take the others with it
        try:
            records.parse(reviews.ReviewSet, {key: wanted[key]})
        except records.InvalidRecord as error:
            left_out.append(f"its review's {key.removesuffix('_add')}: {error}")
            del wanted[key]
    items = [(job_id, None, wanted)] if wanted else []
    rated = current.get("image_ratings") or {}
    given = review.get("image_ratings") if isinstance(review.get("image_ratings"), dict) else {}
    for output, rating in given.items():
        valid = isinstance(rating, int) and not isinstance(rating, bool) and 0 <= rating <= 5
        if valid and str(output).isdigit() and str(int(output)) not in rated:
            items.append((job_id, int(output), {"rating": rating}))
    return items, left_out


# Our export's line is the stored line with its `learning_svc` block: a POST of up to
# max_body_bytes grows by what the service adds (times, hashes, the LoRAs and embeddings its
# prompts name), so that a job the API took comes back through an export whatever its size.
STORED_LINE_ROOM = 4


def write_op(job: Job, max_bytes: int):
    """The write of one job: validated like a POST (and no larger than one); our own export's
    lines kept as stored."""
    try:
        raw = orjson.dumps(job.body)
    except (TypeError, orjson.JSONEncodeError) as error:
        raise records.InvalidRecord(
            f"cannot be written as JSON ({error})", [{"loc": "body", "msg": str(error)}]
        ) from None
    limit = max_bytes * (STORED_LINE_ROOM if job.stored else 1)
    if len(raw) > limit:
        msg = f"the record is {len(raw) / 2**20:.1f} MiB; the service takes up to {limit / 2**20:g} MiB"
        raise records.InvalidRecord(msg, [{"loc": "body", "msg": msg}])
    if not job.stored:  # as the API reads a body: the raw bytes screened for shape problems, not every value walked
        return job_op(records.parse_json(records.JobIn, raw))
    line = dict(job.body)
    given = {k: v for k, v in line.items() if k not in records.SERVICE_KEYS}
    records.parse(records.JobIn, given)  # a line this version can index
    if not isinstance(line.get("input_hash"), str) or not isinstance(line.get("logged_at"), (int, float)):
        raise records.InvalidRecord(
            "an exported record without its input_hash or logged_at", [{"loc": "input_hash", "msg": "missing"}]
        )
    return stored_op(line)


def _amended_since(job: Job, current: dict) -> dict | None:
    """What the current record of a job already here lacks of our export's amended record (the
    fields its amendments set), or None when that record cannot be resolved."""
    try:
        final = records.effective_line(job.body, [{"set": changes} for changes in job.amendments])
    except records.InvalidRecord:
        return None  # replayed one by one: each amendment's error is its own
    amended = sorted({key for changes in job.amendments for key in changes})
    return {key: final.get(key) for key in amended if current.get(key) != final.get(key)}


def _against(current: dict, job: Job, line: dict) -> tuple[dict, str]:
    """(what the entry sets that the recorded job lacks, the reason for what it says otherwise)."""
    fields = _input_fields(job, line)
    patch = {k: v for k, v in fields.items() if not records.is_set(current.get(k)) and records.is_set(v)}
    if not job.strict:
        return patch, ""
    differing = [
        _difference(k, current[k], v)
        for k, v in sorted(fields.items())
        if records.is_set(current.get(k)) and records.is_set(v) and current.get(k) != v
    ]
    if not differing:
        return patch, ""
    shown = ", ".join(
        f"{path} ({_short_value(was)} recorded, {_short_value(now)} here)" for path, was, now in differing[:5]
    )
    more = f" and {len(differing) - 5} more" if len(differing) > 5 else ""
    return patch, f"job {line['job_id']} is recorded with other values, kept: {shown}{more}"


def _difference(path: str, was, now) -> tuple[str, object, object]:
    """Where two values first differ: `run_config.steps`, 30, 31 (not two dicts cut alike)."""
    while isinstance(was, dict) and isinstance(now, dict):
        key = next((k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k)), None)
        if key is None:
            break
        path, was, now = f"{path}.{key}", was.get(key), now.get(key)
    return path, was, now


def _short_value(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def _input_fields(job: Job, line: dict) -> dict:
    """The record fields the entry gives (as resolved in its stored line)."""
    given = set(job.body) - {"job_id", *records.SERVICE_KEYS}
    return {k: line[k] for k in given if k in line}


# ---------------------------------------------------------------- the command


@dataclass
class Result:
    tally: Tally
    report: Path | None
    seconds: float


def run_import(
    settings: Settings, paths: list[Path], dry_run: bool = False, progress: Callable[[int], None] | None = None
) -> Result:
    began = time.monotonic()
    tally = Tally()
    with contextlib.ExitStack() as stack:
        if dry_run and not settings.data_dir.exists():  # a dry run makes nothing: an empty history, elsewhere
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="learning-svc-dry-run-")))
            service = Service(dataclasses.replace(settings, data_dir=scratch, database_url=None)).start()
        else:
            service = Service(settings).start()
        _write(service, tally, paths, settings, dry_run, progress)
    # A dry run writes nothing, not even its report (it wrote one into imports/): the CLI shows the problems.
    report = write_report(settings, tally) if tally.problems and settings.data_dir.exists() and not dry_run else None
    return Result(tally, report, time.monotonic() - began)


def _write(service: Service, tally: Tally, paths, settings: Settings, dry_run: bool, progress) -> None:
    try:
        writer = Writer(service, tally, dry_run)
        # History files first, then images: an image that is the output of a job those files
        # hold (a StableNew installation's output folder) is that job's, not a job of its own.
        for item in sources(paths, settings.output_root, HISTORY):
            writer.add(item)
            if progress:
                progress(1)
        writer.flush()
        found = sources(paths, settings.output_root, IMAGES)
        while chunk := list(itertools.islice(found, OWNERS_ASKED)):
            owned = _owned(service, writer, chunk)
            for item in chunk:
                if isinstance(item, Job) and item.where.path in owned:
                    tally.add(item.where, "already present")  # the output of a job recorded
                    tally.outputs_of_jobs += 1
                else:
                    writer.add(item)
                if progress:
                    progress(1)
        writer.flush()
    except Unavailable as error:
        tally.problems.append({"file": None, "line": None, "outcome": "stopped", "reason": str(error)})
        raise
    finally:
        service.close(index_everything=True)  # the next start finds the index complete


def _owned(service: Service, writer: Writer, items) -> set[str]:
    """The paths of these images that a recorded job names as its output (Service.output_owners):
    a history read above in this run, one imported before, a pipeline's POSTed job."""
    paths = [item.where.path for item in items if isinstance(item, Job)]
    # This run's own jobs first: a dry run's are in no index, and a real run's may not be yet
    # (the index is waited for: _index_owners).
    owned = owners_among(paths, writer.outputs, service.settings.output_root, writer.claimed, service.watched_folders)
    rest = [path for path in paths if path not in owned]
    return set(owned) | set(_index_owners(service, rest, writer.claimed))


def _index_owners(service: Service, paths: list[str], claimed: dict) -> dict[str, str]:
    """service.output_owners, waited for while the index catches up with what this run wrote (a
    history of 100,000 jobs keeps the follower busy for a while); IndexBehind once it makes no
    progress in STALLED_WAITS reads' waits, or cannot be written (the import stops with that line)."""
    indexed, stalled = None, 0
    while True:
        try:
            return service.output_owners(paths, claimed)
        except IndexBehind as behind:
            if service.index_trouble is not None:
                raise
            stalled = stalled + 1 if behind.indexed == indexed else 0
            if stalled >= STALLED_WAITS:
                raise
            indexed = behind.indexed


def write_report(settings: Settings, tally: Tally) -> Path:
    folder = settings.data_dir / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    base = f"import-{time.strftime('%Y%m%dT%H%M%S')}"
    for n in itertools.count(1):  # two imports in one second each keep their own report
        path = folder / (f"{base}.jsonl" if n == 1 else f"{base}-{n}.jsonl")
        try:
            with open(path, "x", encoding="utf-8") as f:
                for problem in tally.problems:
                    f.write(json.dumps(problem, ensure_ascii=False) + "\n")
        except FileExistsError:
            continue
        return path


def table(tally: Tally) -> str:
    """The final table: one row per source file (per folder for images), then the total."""
    rows = [(path, counts) for path, counts in sorted(tally.counts.items())] + [("total", tally.total())]
    width = max(_columns(_short(path)) for path, _ in rows)
    head = f"{'source':<{width}}  {'read':>7}  " + "  ".join(f"{name:>15}" for name in OUTCOMES)
    lines = [head, "-" * len(head)]
    for path, counts in rows:
        shown = _short(path)
        lines.append(
            shown
            + " " * (width - _columns(shown))
            + f"  {counts['read']:>7}  "
            + "  ".join(f"{counts[n]:>15}" for n in OUTCOMES)
        )
    return "\n".join(lines)


def _columns(text: str) -> int:
    """How many terminal columns a text takes: East Asian wide characters and emoji take two,
    combining marks none (padding by len() shifted the rows of such file names)."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text
    )


def _short(path: str, limit: int = 60) -> str:
    return path if len(path) <= limit else "…" + path[-(limit - 1) :]
