"""The pipeline's side: record a job and rate it without ever stopping or failing the pipeline.

HTTP uses only the standard library. When the service cannot be reached and its data directory
is known, a job is validated and appended straight to the JSONL under the journal lock; the
service indexes it when it starts (or writes) next. So a job is never lost because the service
was down.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import http.client
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from urllib import error, request
from urllib.parse import quote, urlsplit

from . import timezones

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({500, 502, 503, 504})  # the service is busy, locked or briefly unable to write
NDJSON = "application/x-ndjson"
BATCH = 10_000  # records per batch POST (the service's limit)
MAX_ANSWER_BYTES = 64 * 2**20  # an answer larger is no answer of this service (10,000 summaries: ~20 MB)
BATCH_SECONDS_PER_RECORD = 0.005  # a batch's time to answer beyond `timeout` (the service: ~0.3 ms a record, idle)
BATCH_BYTES = 32 * 2**20  # and bytes: half the service's default body limit (64 MiB); a larger body was cut
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class LearningClientError(RuntimeError):
    """A job or rating was not delivered (raised only with raise_errors=True). From record_jobs,
    `results` is the list it would have returned: what was recorded, None for what was not."""

    def __init__(self, message: str, status: int | None = None, results: list[dict | None] | None = None):
        super().__init__(message)
        self.status = status
        self.results = results


class LearningClient:
    """`LearningClient("http://127.0.0.1:8765", data_dir="logs/learning").record_job(record)`.

    Short timeouts; connection errors and 5xx answers are retried with exponential backoff,
    except a refused connection when `data_dir` is given: nothing listens, so the job goes
    to the JSONL at once. Errors are logged and the call returns None, unless raise_errors=True.

    `naive_timezone`: what a `datetime` without a zone means. "UTC" (the default, and what
    the service assumes for a time string without a zone; StableNew's `datetime.utcnow()`),
    "local" for `datetime.now()`, or an IANA name ("America/Chicago").
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8765",
        token: str | None = None,
        data_dir: str | os.PathLike | None = None,
        timeout: float = 2.0,
        retries: int = 3,
        backoff: float = 0.25,
        raise_errors: bool = False,
        lock_timeout: float = 10.0,
        naive_timezone: str = "UTC",
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.timeout, self.retries, self.backoff = timeout, max(0, retries), backoff
        self.raise_errors = raise_errors
        self.lock_timeout = lock_timeout
        self.naive_timezone = timezones.naive_timezone(naive_timezone)
        # A proxy set in the environment must not carry requests meant for this machine.
        local = (urlsplit(self.base_url).hostname or "") in LOOPBACK
        handlers = [_HTTPWithDeadline(), _HTTPSWithDeadline(), _NoRedirects()]
        self._opener = request.build_opener(*([request.ProxyHandler({})] if local else []), *handlers)

    # ------------------------------------------------------------ the two calls
    def record_job(self, record: dict) -> dict | None:
        """POST /api/jobs; returns the stored summary (with "offline": True if it went straight to the JSONL)."""
        job_id = record.get("job_id") if isinstance(record, dict) else None
        try:
            return self._record_job(record, job_id)
        except LearningClientError:
            raise
        except Exception as exc:  # a bug here must never stop the pipeline
            return self._fail(f"job {job_id!r} was not recorded: {type(exc).__name__}: {exc}")

    def record_jobs(self, records: list[dict]) -> list[dict | None]:
        """Record many jobs in NDJSON batches (POST /api/jobs, application/x-ndjson, one fsync per
        batch of up to BATCH records and BATCH_BYTES). Returns one item per record, in order: its
        stored summary, or None when it was not recorded (the reason is logged). Offline, as
        record_job does, one by one.

        Every batch is sent, whatever was refused before. With raise_errors=True, when any record
        was not recorded, LearningClientError is raised once at the end, its `results` the list
        that would have been returned (the others of a batch are stored all the same)."""
        results: list[dict | None] = [None] * len(records)
        failures: list[tuple[str, int | None]] = []  # (message, status): raised once, at the end
        for bodies in self._batches(records, failures):
            try:
                self._record_batch(records, bodies, results, failures)
            except Exception as exc:  # a bug here must never stop the pipeline
                self._fail(
                    f"jobs {bodies[0][0] + 1}..{bodies[-1][0] + 1} were not recorded: {type(exc).__name__}: {exc}",
                    into=failures,
                )
        if failures and self.raise_errors:
            message, status = failures[0]
            missing = sum(result is None for result in results)
            raise LearningClientError(
                f"{missing} of {len(records)} jobs were not recorded (see .results); the first: {message}",
                status,
                results,
            )
        return results

    def _batches(self, records: list[dict], failures: list):
        """(index, body) lists of at most BATCH records and BATCH_BYTES (10,000 records of 7 KB
        were one 70 MB body, past the service's limit: cut off, retried, and all lost)."""
        batch: list[tuple[int, bytes]] = []
        size = 0
        for n, record in enumerate(records):
            try:
                body = encode(record, self.naive_timezone)
            except (TypeError, ValueError, RecursionError) as exc:
                self._fail(f"record {n + 1} was not recorded: it cannot be sent as JSON ({exc})", into=failures)
                continue
            if batch and (len(batch) == BATCH or size + len(body) + 1 > BATCH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append((n, body))
            size += len(body) + 1
        if batch:
            yield batch

    def _record_batch(
        self, records: list[dict], bodies: list[tuple[int, bytes]], results: list, failures: list
    ) -> None:
        """One batch; its lines answered 5xx (the index database away, the journal locked) are
        sent again as record_job's are, then written to the journal with data_dir. They were
        taken for refused: a batch sent while PostgreSQL restarted was lost."""
        pending = bodies
        for attempt in range(self.retries + 1):
            status, payload, reason = self._send(
                "POST",
                "/api/jobs",
                b"\n".join(body for _, body in pending) + b"\n",
                fall_back=self.data_dir is not None,
                content_type=NDJSON,
                # the service takes ~0.3 ms a record: 10,000 never came back within the 2 s of one job
                timeout=self.timeout + BATCH_SECONDS_PER_RECORD * len(pending),
            )
            if not (status == 200 and isinstance(payload, list) and len(payload) == len(pending)):
                break  # the request itself failed, after _send's retries
            again = []
            for (n, body), answer in zip(pending, payload):
                line = answer.get("status") if isinstance(answer, dict) else None
                message = (answer.get("error") or {}).get("message") if isinstance(answer, dict) else answer
                if line in (200, 201):
                    results[n] = answer.get("summary")
                elif line in RETRY_STATUSES:
                    again.append((n, body))
                    status, reason = line, f"answered {line} for it: {message}"
                else:
                    job_id = answer.get("job_id") if isinstance(answer, dict) else None
                    self._fail(f"the service refused record {n + 1} ({job_id!r}): {message}", line, into=failures)
            if not again:
                return
            pending = again
            if attempt < self.retries:
                delay = self.backoff * 2**attempt
                log.warning(
                    "learning_svc at %s %s (%d jobs); retrying in %.2f s", self.base_url, reason, len(again), delay
                )
                time.sleep(delay)
        if (status is None or status in RETRY_STATUSES) and self.data_dir is not None:
            for n, body in pending:
                job_id = records[n].get("job_id") if isinstance(records[n], dict) else None
                results[n] = self._append_to_journal(body, job_id, reason, failures)
            return
        self._fail(
            f"{len(pending)} jobs were not recorded: the service at {self.base_url} {reason}", status, into=failures
        )

    def rate(self, job_id: str, rating: int | None, source: str = "api") -> dict | None:
        """PUT (or, for None, DELETE) /api/jobs/<job_id>/rating; returns {job_id, rating, rated_at}."""
        try:
            return self._rate(job_id, rating, source)
        except LearningClientError:
            raise
        except Exception as exc:
            return self._fail(f"rating of job {job_id!r} was not stored: {type(exc).__name__}: {exc}")

    def _record_job(self, record, job_id) -> dict | None:
        try:
            body = encode(record, self.naive_timezone)
        except (TypeError, ValueError, RecursionError) as exc:
            return self._fail(f"job {job_id!r} was not recorded: it cannot be sent as JSON ({exc})")
        status, payload, reason = self._send("POST", "/api/jobs", body, fall_back=self.data_dir is not None)
        if status in (200, 201):
            return payload
        if status is None or status in RETRY_STATUSES:
            if self.data_dir is not None:
                return self._append_to_journal(body, job_id, reason)
            return self._fail(
                f"job {job_id!r} was not recorded: the service at {self.base_url} {reason} "
                "(pass data_dir to write to the JSONL directly when it is down)",
                status,
            )
        return self._fail(f"the service refused job {job_id!r}: {reason}", status)

    def _rate(self, job_id, rating, source) -> dict | None:
        path = f"/api/jobs/{quote(str(job_id), safe='')}/rating"
        try:
            body = encode(
                {"source": source} if rating is None else {"rating": rating, "source": source}, self.naive_timezone
            )
        except (TypeError, ValueError) as exc:
            return self._fail(f"rating of job {job_id!r} was not stored: it cannot be sent as JSON ({exc})")
        status, payload, reason = self._send("DELETE" if rating is None else "PUT", path, body)
        if status == 200:
            return payload
        # No journal fallback: only the service can tell whether the job exists (404 otherwise).
        return self._fail(f"rating of job {job_id!r} was not stored: the service at {self.base_url} {reason}", status)

    # ------------------------------------------------------------ HTTP
    def _send(
        self,
        method: str,
        path: str,
        body: bytes,
        fall_back: bool = False,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> tuple[int | None, object, str]:
        """(status or None if unreachable, decoded JSON body, reason) after the retries.
        `timeout`: this request's, when not the client's (a batch's grows with its records).

        `fall_back`: the caller has somewhere else to go, so a refused connection (nothing
        listens) is not retried.
        """
        headers = {
            "Content-Type": content_type,
            "Accept": "application/json",
            "User-Agent": "learning-svc-client/1",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        status, payload, reason = None, None, "did not answer"
        for attempt in range(self.retries + 1):
            req = request.Request(self.base_url + path, data=body, headers=headers, method=method)
            # `timeout` bounds the whole request, not each read: a server sending a byte every
            # half second kept a 2 s client 20 s (the socket's timeout restarts at every byte).
            limit = self.timeout if timeout is None else timeout
            deadline = threading.Timer(limit, _cut, (req,))
            deadline.daemon = True
            deadline.start()
            try:
                with self._opener.open(req, timeout=limit) as response:
                    data = response.read(MAX_ANSWER_BYTES + 1)  # a 2 GB answer took 3.8 GB of the pipeline's memory
                    if getattr(req, "cut", False):  # the answer ended when the deadline cut it
                        raise TimeoutError(f"no whole answer within {limit:g} s")
                    if len(data) > MAX_ANSWER_BYTES:
                        raise http.client.HTTPException(f"answered more than {MAX_ANSWER_BYTES // 2**20} MiB")
                    if response.headers.get_content_type() == NDJSON:  # a batch: one answer per line
                        return response.status, [_decode(line) for line in data.splitlines() if line.strip()], "ok"
                    return response.status, _decode(data), "ok"
            except error.HTTPError as exc:  # an answer, with an error status
                if 300 <= exc.code < 400:  # a redirect (http -> https, a proxy): not this service's answer
                    status, payload = None, None
                    reason = f"answered {exc.code} (a redirect to {exc.headers.get('Location')!r}: give its address)"
                    break  # asking again gets the same; with data_dir the job goes to the journal
                try:
                    status, payload = exc.code, _decode(exc.read(MAX_ANSWER_BYTES))
                    reason = f"answered {exc.code}: {_message(payload) or exc.reason}"
                except (OSError, http.client.HTTPException):  # its body cut off by the deadline
                    status, payload, reason = None, None, f"did not answer within {limit:g} s"
                if exc.code not in RETRY_STATUSES and status is not None:
                    return status, payload, reason
            except (error.URLError, OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
                status, payload = None, None
                cause = getattr(exc, "reason", exc)
                reason = f"did not answer within {limit:g} s" if getattr(req, "cut", False) else None
                reason = reason or f"is unreachable ({cause})"
                if fall_back and isinstance(cause, ConnectionRefusedError):
                    return status, payload, reason
            finally:
                deadline.cancel()
            if attempt < self.retries:
                delay = self.backoff * 2**attempt
                log.warning("learning_svc at %s %s; retrying in %.2f s", self.base_url, reason, delay)
                time.sleep(delay)
        return status, payload, reason

    # ------------------------------------------------------------ the service is down
    def _append_to_journal(self, body: bytes, job_id, reason: str, failures: list | None = None) -> dict | None:
        """Validate like the service does and append the line under the journal lock, unless it is
        recorded already (an identical retry writes nothing; other content is refused). `failures`:
        as for _fail."""
        try:
            from . import offline
        except ImportError as exc:
            return self._fail(f"job {job_id!r} was not recorded: the service {reason} and {exc}", into=failures)
        if not (self.data_dir / offline.LOG_NAME).exists():  # a relative data_dir resolved elsewhere, say
            log.warning(
                "%s holds no journal yet: no service has recorded a job there. The job is kept there; "
                "if the service serves another folder, give the client that one (data_dir=)",
                self.data_dir.resolve(),
            )
        try:
            outcome = offline.record_offline(self.data_dir, body, None, self.lock_timeout)
        except Exception as exc:  # a full disk, a lock held for too long: the pipeline goes on
            return self._fail(
                f"job {job_id!r} was not recorded: the service {reason} and "
                f"{self.data_dir / offline.LOG_NAME} could not be written ({exc})",
                into=failures,
            )
        if outcome.status == "invalid":
            return self._fail(f"job {job_id!r} was not recorded: {outcome.message}", 400, into=failures)
        if outcome.status == "conflict":
            return self._fail(f"job {job_id!r} was not recorded: {outcome.message}", 409, into=failures)
        if outcome.status == "created":
            log.warning(
                "learning_svc at %s %s: job %r appended to %s; the service indexes it (within seconds if it runs, else when it starts)",
                self.base_url,
                reason,
                outcome.summary["job_id"],
                (self.data_dir / offline.LOG_NAME).resolve(),
            )
        return outcome.summary

    def _fail(self, message: str, status: int | None = None, into: list | None = None) -> None:
        """Log a failure; raise it with raise_errors=True, unless `into` is given: then it is kept
        there (record_jobs raises once, at its end)."""
        log.error("%s", message)
        if into is not None:
            into.append((message, status))
        elif self.raise_errors:
            raise LearningClientError(message, status)
        return None


class _NoRedirects(request.HTTPRedirectHandler):
    """A redirect is not followed: urllib turned a POST answered 302 into a GET of the listing,
    whose 200 looked like the job recorded. It is an error status (_send says what to do)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _HTTPWithDeadline(request.HTTPHandler):
    """urllib's handler, keeping each request's connection on it so that _cut can reach its socket."""

    def http_open(self, req):
        return self.do_open(_kept(http.client.HTTPConnection, req), req)


class _HTTPSWithDeadline(request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_kept(http.client.HTTPSConnection, req), req, context=self._context)


def _kept(connection_class, req):
    """The connection's socket kept on the request: urllib lets go of it (h.sock = None) once the
    headers are in, and a body sent a byte at a time then had no deadline."""

    def make(*args, **kwargs):
        connection = connection_class(*args, **kwargs)
        connect = connection.connect

        def connect_and_keep():
            connect()
            req.sock = connection.sock

        connection.connect = connect_and_keep
        return connection

    return make


def _cut(req) -> None:
    """The request's time is up: shut its socket, which wakes the read waiting on it."""
    req.cut = True
    sock = getattr(req, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.shutdown(socket.SHUT_RDWR)


def encode(value, naive: dt.tzinfo = dt.UTC) -> bytes:
    """Strict JSON (no NaN); paths, datetimes, enums, sets and numpy scalars become plain JSON.

    A datetime without a zone is taken to be in `naive` (UTC unless the client says otherwise)
    and sent with its offset, so the service stores the same instant whatever form it came in.
    """
    return json.dumps(
        value, allow_nan=False, ensure_ascii=False, separators=(",", ":"), default=lambda item: _plain(item, naive)
    ).encode()


def _plain(value, naive: dt.tzinfo):
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=naive)).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    for method in ("item", "tolist"):  # numpy scalars and arrays, without importing numpy
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _decode(data: bytes):
    try:
        return json.loads(data) if data else None
    except ValueError:
        return {"error": {"message": data[:200].decode("utf-8", "replace").strip()}}


def _message(payload) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return payload["error"].get("message")
    return None
