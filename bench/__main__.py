"""`make bench`: measures SPEC §5 on data built with the project's generator; prints one table.

    .venv/bin/python -m bench [--jobs N] [--seed S] [--only ingest,rating,...] [--db postgresql] [--keep]

Scenarios (all against the real `learning-svc` command, run as subprocesses):

  ingest   durable POST /api/jobs, 8 keep-alive clients driven by `wrk` on an empty data dir; the
           same POSTs against waitress and Flask doing nothing else (bench/floor.py: the floor)
  rating   PUT /api/jobs/<id>/rating latency, 1 and 8 connections (`wrk`), on the N-job index;
           8 connections again on `serve --workers 2`
  reindex  `learning-svc reindex` of N jobs vs. merely parsing the same JSONL with orjson; peak RSS
  listing  GET /api/jobs p95 for every single filter × sort × (page 1, deep page); GET /api/facets p95
  startup  time until /api/health answers with N indexed jobs; server RSS after the listing
  scaling  `serve --workers 1, 2, 4`: ingest (8 clients POST) and listing (8 clients GET) throughput,
           on SQLite and on PostgreSQL whichever --db is
  page     Debian's Chromium at 1366x768 on the N-job index: time to the first 50 rendered cards,
           and the bytes the first view transfers (HTML, JS, CSS, JSON, thumbnails), cold and warm

With --db postgresql (`make bench DB=postgresql`) every index of the run lives in a throwaway,
durable PostgreSQL server (Debian's binaries, as the tests start it), one database per data
dir; the results go to their own section of BENCHMARKS.md, beside SQLite's.

The N-job journal (stored learning_log_v2 lines, plus rating events for ~40% of the jobs) is
cached in bench-data/ keyed by N, seed and a fingerprint of the generator and record code.
Progress goes to stderr, the table to stdout, and BENCHMARKS.md is refreshed at the end.
The machine may be shared: rerun before trusting a FAIL that is close to its target.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.client
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import orjson

from learning_svc import gen, records
from learning_svc.index.plan import SORTS as PLAN_SORTS
from learning_svc.index.queries import encode_cursor
from learning_svc.osutil import pid_alive

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CLI = VENV_BIN / "learning-svc"
CACHE = ROOT / "bench-data"
SCENARIOS = ("ingest", "rating", "import", "images", "scaling", "reindex", "listing", "startup", "page")
LOG_NAME, RATINGS_NAME = "learning_log_v2.jsonl", "learning_ratings_v2.jsonl"

INGEST_CONNECTIONS = 8
INGEST_BODIES = 30_000  # more than 1,500 jobs/s × 15 s; a wrap-around is reported
DEEP_OFFSET = 10_000  # "page 201" at limit 50
WALK_LIMIT = 500  # page size used to walk down to the deep cursor
LISTING_REPS, LISTING_WARMUP, LISTING_BUDGET_S = 30, 3, 10.0
TEXT_SHARES = (0.5, 0.1, 0.02, 0.005)  # text cases: words in about these shares of the jobs
HELD_WAIT_S = 120  # per text case, for its matches to be held in memory
FACET_REPS, FACET_BUDGET_S = 30, 30.0
MIN_SAMPLES = 3  # when a request is so slow that the time budget runs out
SLOW_MS = 150  # page 1 slower than this (10× the target): its deep page is not walked to
WALK_BUDGET_S = 15.0  # per walk down to a deep cursor
LISTING_DEADLINE_S = 30 * 60  # all listing combinations together; the rest is reported as skipped
SORTS = ("-completed_at", "completed_at", "-rating", "rating", "-duration_sec", "duration_sec")


def say(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- results


@dataclass
class Row:
    scenario: str
    figure: str
    target: str
    verdict: str  # PASS | FAIL | INFO


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, scenario: str, figure: str, target: str, ok: bool | None) -> None:
        verdict = "INFO" if ok is None else "PASS" if ok else "FAIL"
        self.rows.append(Row(scenario, figure, target, verdict))
        say(f"{verdict}: {scenario}: {figure} (target {target})")

    def note(self, line: str) -> None:
        self.details.append(line)
        say(line)


def text_table(rows: list[Row]) -> str:
    """The result rows as an aligned plain-text table."""
    cells = [("scenario", "figure", "target", "verdict")] + [(r.scenario, r.figure, r.target, r.verdict) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = [" | ".join(c[i].ljust(widths[i]) for i in range(4)).rstrip() for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    lines = ["| scenario | figure | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {r.scenario} | {r.figure} | {r.target} | **{r.verdict}** |" for r in rows]
    return "\n".join(lines)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# ---------------------------------------------------------------- subprocesses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(data_dir: Path | None = None, index: SQLiteIndex | PostgresIndex | None = None, **extra: str) -> dict:
    """The environment without LEARNING_SVC_* settings of the caller (token, database...); with
    a data dir, the URL of its index when it is on PostgreSQL (`index`, else the run's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNING_SVC_")}
    env.update((index or INDEX).env(data_dir) if data_dir is not None else {}, **extra)
    return env


class SQLiteIndex:
    """Each data dir's own index.sqlite3 (the default)."""

    name, heading = "sqlite", "SQLite index (`make bench`)"

    def env(self, data_dir: Path) -> dict[str, str]:
        return {}

    def rows(self, data_dir: Path, sql: str) -> list[tuple]:
        with sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True) as db:
            return db.execute(sql).fetchall()

    def size(self, data_dir: Path) -> int:
        return sum(p.stat().st_size for p in data_dir.glob("index.sqlite3*"))

    def vocabulary(self, data_dir: Path) -> list[tuple[str, int]]:
        """(word, jobs holding it) from the FTS5 vocabulary."""
        with sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True) as db:
            db.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, jobs_fts, row)")
            return db.execute("SELECT term, doc FROM temp.vocab WHERE doc >= 50 AND length(term) > 1").fetchall()

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    def stop(self) -> None:
        pass


class PostgresIndex:
    """A throwaway PostgreSQL server (tests/pgserver.py: Debian's binaries, initdb into a temp
    dir, durable: fsync and synchronous commit on) with one database per data dir."""

    name, heading = "postgresql", "PostgreSQL index (`make bench DB=postgresql`)"

    def __init__(self):
        sys.path.insert(0, str(ROOT / "tests"))
        from pgserver import PostgresServer, postgres_bin

        bin_dir = postgres_bin()
        if bin_dir is None:
            raise SystemExit("PostgreSQL's binaries are missing: `make postgres` installs Debian's postgresql")
        say(f"starting a throwaway PostgreSQL server from {bin_dir}")
        self.server = PostgresServer(bin_dir, free_port(), durable=True).start()
        self.urls: dict[Path, str] = {}

    def env(self, data_dir: Path) -> dict[str, str]:
        key = data_dir.resolve()
        if key not in self.urls:
            self.urls[key] = self.server.new_database()
        return {"LEARNING_SVC_DATABASE_URL": self.urls[key]}

    def rows(self, data_dir: Path | None, sql: str) -> list[tuple]:
        """Rows of one statement in the data dir's database (None: the server's own)."""
        import psycopg

        url = self.env(data_dir)["LEARNING_SVC_DATABASE_URL"] if data_dir else self.server.url()
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    def size(self, data_dir: Path) -> int:
        """The index's tables with their indexes and TOAST (not the catalog an empty database has)."""
        return self.rows(
            data_dir,
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'",
        )[0][0]

    def vocabulary(self, data_dir: Path) -> list[tuple[str, int]]:
        """(word, jobs holding it) from the tsvectors (ts_stat reads them all: once per run)."""
        return self.rows(
            data_dir,
            "SELECT word, ndoc FROM ts_stat('SELECT search_tsv FROM jobs') WHERE ndoc >= 50 AND length(word) > 1",
        )

    def version(self) -> str:
        return "PostgreSQL " + self.rows(None, "SHOW server_version")[0][0].split()[0]

    def stop(self) -> None:
        self.server.stop()


INDEX: SQLiteIndex | PostgresIndex = SQLiteIndex()  # main() sets it from --db


def proc_status_mb(pid: int, key: str) -> float | None:
    """VmRSS / VmHWM of a live process in MB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Server:
    """`learning-svc serve` on a free port as a subprocess; always stopped on exit."""

    def __init__(
        self,
        data_dir: Path,
        log_file: Path,
        threads: int = 8,
        args: tuple[str, ...] = (),
        cwd: Path = ROOT,
        index: SQLiteIndex | PostgresIndex | None = None,
    ):
        self.data_dir, self.log_file, self.threads = data_dir, log_file, threads
        self.args, self.cwd, self.index = args, cwd, index
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> float:
        """Launch and wait for /api/health; returns the seconds it took."""
        cmd = [str(CLI), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]
        began = time.perf_counter()
        logged = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=clean_env(self.data_dir, self.index, LEARNING_SVC_THREADS=str(self.threads)),
            )
        deadline = began + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._healthy() and self._all_workers_up(logged):
                return time.perf_counter() - began
            time.sleep(0.01)
        raise RuntimeError(f"the server did not answer /api/health within {timeout:.0f} s:\n{self.log_tail()}")

    def _all_workers_up(self, logged: int) -> bool:
        """`serve --workers N` answers once its first worker does; the others start after it.
        Clients that connect before would all be taken by the first (the scaling rows measured
        one process of two that way): wait for the parent's line saying all N answer."""
        count = self.args[self.args.index("--workers") + 1] if "--workers" in self.args else "1"
        if count == "1":
            return True
        with open(self.log_file, "rb") as log:
            log.seek(logged)
            return f"with {count} worker processes".encode() in log.read()

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/api/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGINT (waitress stops cleanly), then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def memory_mb(self) -> dict[str, float]:
        """Current RSS, its peak, and the anonymous / file-backed (mmap) parts, in MB."""
        keys = {"rss": "VmRSS", "peak": "VmHWM", "anon": "RssAnon", "file": "RssFile"}
        return {name: proc_status_mb(self.proc.pid, key) or 0.0 for name, key in keys.items()}

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def process_tree(pid: int) -> list[int]:
    """pid and all its live descendants (worker processes), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def run_measured(cmd: list[str], log_file: Path, timeout: float) -> tuple[float, dict, int]:
    """Run a command; returns (wall seconds, memory MB, exit code). Killed at timeout.

    Memory, polled from /proc every 20 ms: "anon" / "file" are the peaks of the command's
    own RssAnon / RssFile; "tree" is the peak of the RSS summed over the command and its
    worker processes, "tree_anon" of their RssAnon. "ru_maxrss" (wait4) is the largest
    single process' peak, file-backed pages included.
    """
    began = time.perf_counter()
    memory = {"anon": 0.0, "file": 0.0, "tree": 0.0, "tree_anon": 0.0}
    with open(log_file, "ab") as log:
        data_dir = Path(cmd[cmd.index("--data-dir") + 1]) if "--data-dir" in cmd else None
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=ROOT, env=clean_env(data_dir))
    try:
        while True:
            for key in ("anon", "file"):
                memory[key] = max(memory[key], proc_status_mb(proc.pid, "Rss" + key.title()) or 0.0)
            tree = process_tree(proc.pid)
            memory["tree"] = max(memory["tree"], sum(proc_status_mb(p, "VmRSS") or 0.0 for p in tree))
            memory["tree_anon"] = max(memory["tree_anon"], sum(proc_status_mb(p, "RssAnon") or 0.0 for p in tree))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                memory["ru_maxrss"] = usage.ru_maxrss / 1024
                return time.perf_counter() - began, memory, proc.returncode
            if time.perf_counter() - began > timeout:
                raise TimeoutError(f"{cmd[1]} took more than {timeout:.0f} s")
            time.sleep(0.02)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- wrk

WRK_SCRIPT = r"""
-- learning_svc bench: every request a different pre-generated one (no repeats until wrap-around).
-- args: <file prefix> <mode: post|put>; thread i reads <prefix><i>.txt
local threads, next_tid = {}, 0

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
   table.insert(threads, thread)
end

function init(args)
   local headers = {["Content-Type"] = "application/json"}
   reqs, pos, wrapped, s201, s2xx, non2xx = {}, 0, 0, 0, 0, 0
   local n = 0
   for line in io.lines(args[1] .. tid .. ".txt") do
      n = n + 1
      if args[2] == "put" then
         reqs[n] = wrk.format("PUT", "/api/jobs/" .. line .. "/rating", headers, '{"rating":' .. (n % 6) .. '}')
      elseif args[2] == "get" then
         reqs[n] = wrk.format("GET", line)
      else
         reqs[n] = wrk.format("POST", "/api/jobs", headers, line)
      end
   end
end

function request()
   pos = pos + 1
   if pos > #reqs then
      pos, wrapped = 1, wrapped + 1
   end
   return reqs[pos]
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      s2xx = s2xx + 1
      if status == 201 then s201 = s201 + 1 end
   else
      non2xx = non2xx + 1
      if non2xx <= 3 then io.stderr:write("non-2xx " .. status .. ": " .. string.sub(body, 1, 300) .. "\n") end
   end
end

function done(summary, latency, requests)
   local t = {s201 = 0, s2xx = 0, non2xx = 0, wrapped = 0}
   for _, thread in ipairs(threads) do
      for k, _ in pairs(t) do t[k] = t[k] + thread:get(k) end
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d s201=%d s2xx=%d non2xx=%d wrapped=%d errors=%d timeouts=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, t.s201, t.s2xx, t.non2xx, t.wrapped,
      e.connect + e.read + e.write, e.timeout))
end
"""


def write_request_files(prefix: Path, items: list[str], threads: int) -> None:
    """Deal the request lines round-robin into one file per wrk thread."""
    for tid in range(threads):
        with open(f"{prefix}{tid}.txt", "w", encoding="utf-8") as out:
            out.writelines(item + "\n" for item in items[tid::threads])


def run_wrk(url: str, prefix: Path, mode: str, connections: int, threads: int, seconds: int) -> dict:
    """Run wrk with WRK_SCRIPT; returns the numbers of its BENCH line."""
    script = prefix.parent / "bench.lua"
    script.write_text(WRK_SCRIPT)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        str(prefix),
        mode,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    match = re.search(r"^BENCH (.*)$", done.stdout, re.M)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    if done.stderr.strip():
        say("wrk: " + done.stderr.strip().replace("\n", " | ")[:600])
    return {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def wrk_threads(connections: int) -> int:
    return max(1, min(connections, os.cpu_count() or 1, 4))


# ---------------------------------------------------------------- data


def fingerprint(seed: int) -> str:
    """Digest of the first 500 stored lines and rating events: changes whenever the generator
    or the stored-line format changes (which invalidates the cache), not on unrelated edits."""
    bodies = list(gen.generate_records(500, seed))
    ratings = (orjson.dumps(e) for e in rating_events([b["job_id"] for b in bodies], seed, gen.DEFAULT_START))
    return hashlib.sha256(stored_lines(bodies) + b"".join(ratings)).hexdigest()[:10]


def stored_lines(bodies: list[dict]) -> bytes:
    """POST bodies -> the journal lines the server would append (validated, resolved, hashed)."""
    out = []
    for body in bodies:
        job = records.parse(records.JobIn, body)
        out.append(records.dumps(records.stored_job(job, logged_at=job.completed_at + 0.5)))
    return b"".join(out)


def chunked(items, size: int):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_log(path: Path, n: int, seed: int) -> tuple[list[str], float]:
    """Write n stored job lines in parallel (bounded in flight); returns (job ids, last completed_at)."""
    workers = max(1, os.cpu_count() or 1)
    ids, last, pending = [], gen.DEFAULT_START, collections.deque()
    with open(path, "wb", buffering=1 << 20) as out, ProcessPoolExecutor(workers) as pool:
        for chunk in chunked(gen.generate_records(n, seed), 2000):
            ids.extend(body["job_id"] for body in chunk)
            last = max(last, chunk[-1]["completed_at"])
            pending.append(pool.submit(stored_lines, chunk))
            while len(pending) > 2 * workers:
                out.write(pending.popleft().result())
            if len(ids) % 100_000 == 0:
                say(f"  generated {len(ids):,} / {n:,} jobs")
        while pending:
            out.write(pending.popleft().result())
    return ids, last


def rating_events(ids: list[str], seed: int, start: float):
    """Rating events (journal lines) for ~40% of the jobs, deterministic ids and times."""
    rng = random.Random(seed)
    for i, (job_id, rating) in enumerate(gen.generate_ratings(ids, seed)):
        event = records.rating_event(job_id, rating, "bench", timestamp=start + i * 0.5)
        event["rating_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        yield event


def ensure_dataset(n: int, seed: int) -> Path:
    """The cached N-job journal pair for (n, seed); built once (atomically) when missing."""
    prefix = f"jobs-{n}-seed-{seed}-"
    final = CACHE / (prefix + fingerprint(seed))
    if (final / "meta.json").exists():
        say(f"using cached data {final.relative_to(ROOT)}")
        return final
    CACHE.mkdir(exist_ok=True)
    for stale in [*CACHE.glob(prefix + "*"), *CACHE.glob(".building-*")]:
        if not stale.name.startswith(".building-") or not pid_alive(int(stale.name.rsplit("-", 1)[1])):
            shutil.rmtree(stale, ignore_errors=True)
    building = CACHE / f".building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    began = time.perf_counter()
    say(f"generating {n:,} stored job lines into {final.relative_to(ROOT)} (cached for later runs)")
    ids, last = write_log(building / LOG_NAME, n, seed)
    ratings = gen.write_jsonl(building / RATINGS_NAME, rating_events(ids, seed, last + 60))
    meta = {"jobs": n, "rating_events": ratings, "seed": seed, "seconds": round(time.perf_counter() - began, 1)}
    (building / "meta.json").write_text(json.dumps(meta))
    os.replace(building, final)
    say(f"generated {n:,} jobs and {ratings:,} rating events in {meta['seconds']} s")
    return final


def prepare_data_dir(target: Path, dataset: Path) -> Path:
    """A data dir reading the cached job log through a symlink (never written: no POSTs go
    there) and a private copy of the ratings file (the rating scenario appends to it)."""
    target.mkdir(parents=True)
    (target / LOG_NAME).symlink_to(dataset / LOG_NAME)
    shutil.copyfile(dataset / RATINGS_NAME, target / RATINGS_NAME)
    return target


def count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            count += chunk.count(b"\n")
    return count


# ---------------------------------------------------------------- scenario: ingest


def bench_ingest(results: Results, work: Path, seed: int, seconds: int) -> None:
    """Durable POST /api/jobs from wrk (8 connections) into an empty data dir."""
    data_dir = work / "ingest"
    data_dir.mkdir()
    threads = wrk_threads(INGEST_CONNECTIONS)
    say(f"ingest: generating {2 * INGEST_BODIES:,} distinct POST bodies (two runs)")
    bodies = [orjson.dumps(b).decode() for b in gen.generate_records(2 * INGEST_BODIES, seed + 1)]
    prefix, second = work / "post-", work / "post-again-"
    write_request_files(prefix, bodies[:INGEST_BODIES], threads)
    write_request_files(second, bodies[INGEST_BODIES:], threads)
    del bodies
    with Server(data_dir, work / "server-ingest.log", threads=max(8, INGEST_CONNECTIONS)) as server:
        server.start()
        say(f"ingest: wrk -t{threads} -c{INGEST_CONNECTIONS} -d{seconds}s POST /api/jobs")
        cpu_before = process_cpu_seconds(server.proc.pid)
        stats = run_wrk(server.url, prefix, "post", INGEST_CONNECTIONS, threads, seconds)
        server_cpu = process_cpu_seconds(server.proc.pid) - cpu_before
        time.sleep(0.5)  # let requests cut off by wrk's stop finish
        ingest_under_load, readers = ingest_with_readers(server, second, threads, seconds)
    lines = count_lines(data_dir / LOG_NAME) if (data_dir / LOG_NAME).exists() else 0
    rate = stats["s201"] / (stats["duration_us"] / 1e6)
    p50, p99 = stats["p50_us"] / 1000, stats["p99_us"] / 1000
    results.add(
        f"ingest POST, durable, {INGEST_CONNECTIONS} clients (wrk)",
        f"{rate:,.0f} jobs/s; p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        "≥ 1,500 jobs/s, p99 < 25 ms",
        rate >= 1500 and p99 < 25,
    )
    acknowledged = stats["s201"] + ingest_under_load["s201"]
    in_flight = lines - acknowledged
    ok = (
        stats["non2xx"] == 0
        and stats["errors"] == 0
        and stats["timeouts"] == 0
        and stats["wrapped"] == 0
        and 0 <= in_flight <= 2 * INGEST_CONNECTIONS
    )
    results.add(
        "ingest: responses vs. JSONL",
        f"{stats['non2xx']} non-2xx, {stats['errors'] + stats['timeouts']} socket errors; "
        f"{lines:,} lines for {acknowledged:,} × 201 over both runs (+{in_flight} cut off by wrk's stops)",
        f"0 non-2xx; lines = 201s (+ ≤ {INGEST_CONNECTIONS} in flight per run)",
        ok,
    )
    r_p99 = ingest_under_load["p99_us"] / 1000
    results.add(
        f"ingest p99 with {READERS} readers on the page's default view",
        f"{ingest_under_load['s201'] / (ingest_under_load['duration_us'] / 1e6):,.0f} jobs/s, p99 {r_p99:.1f} ms; "
        f"readers {readers['requests'] / (readers['duration_us'] / 1e6):,.0f} req/s, "
        f"p99 {readers['p99_us'] / 1000:.1f} ms; without the readers (the first row) p99 {p99:.1f} ms, so the "
        f"readers add {r_p99 - p99:.1f} ms",
        "ingest p99 < 25 ms",
        r_p99 < 25 and ingest_under_load["non2xx"] == 0 and readers["non2xx"] == 0,
    )
    floor_us = http_floor(results, prefix, threads, seconds)
    ingest_ceiling(results, work, seed, 1000 * server_cpu / max(1, stats["s201"]), floor_us)
    if stats["wrapped"]:
        results.note(f"ingest: wrk ran out of distinct bodies ({stats['wrapped']} wrap-arounds): raise INGEST_BODIES")
    results.note(f"ingest detail: {stats}")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """process_cpu_seconds of a process and its live descendants (e.g. batch validation workers)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += process_cpu_seconds(member)
        except OSError:  # ended meanwhile
            continue
    return total


def validated_ops(count: int, seed: int) -> tuple[list, float]:
    """`count` generated POST bodies validated into write ops, and the CPU that took per job."""
    from learning_svc.service import job_op

    bodies = [orjson.dumps(b) for b in gen.generate_records(count, seed)]
    began = time.process_time()
    ops = [job_op(records.parse_json(records.JobIn, body)) for body in bodies]
    return ops, 1e6 * (time.process_time() - began) / len(ops)


def in_process_service(data_dir: Path):
    """A started Service in this process on an empty data dir, its index on the run's backend."""
    from learning_svc.config import Settings
    from learning_svc.service import Service

    database_url = INDEX.env(data_dir).get("LEARNING_SVC_DATABASE_URL")
    return Service(Settings(data_dir=data_dir, database_url=database_url)).start()


def floor_run(kind: str, prefix: Path, mode: str, connections: int, threads: int, seconds: int) -> dict:
    """wrk's requests against bench/floor.py (the service's waitress server doing nothing else):
    req/s, p99 ms, and the server's CPU µs a request."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", kind, str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        if proc.stdout.readline().strip() != "serving":
            raise RuntimeError(f"bench.floor {kind} did not start")
        before = process_cpu_seconds(proc.pid)
        stats = run_wrk(f"http://127.0.0.1:{port}", prefix, mode, connections, threads, seconds)
        cpu = process_cpu_seconds(proc.pid) - before
    finally:
        proc.kill()
        proc.wait()
    done = max(1, stats["s2xx"])
    return {"rate": done / (stats["duration_us"] / 1e6), "p99": stats["p99_us"] / 1000, "cpu_us": 1e6 * cpu / done}


def http_floor(results: Results, prefix: Path, threads: int, seconds: int) -> float:
    """The same POSTs, the same clients, against the service's waitress server answering 201 and
    doing nothing else: bare, and with a Flask route. Returns Flask's CPU µs a request: what any
    job costs before the service's own work."""
    say("ingest: the HTTP floor (bench/floor.py), waitress and Flask")
    bare, flask = (
        floor_run(kind, prefix, "post", INGEST_CONNECTIONS, threads, seconds) for kind in ("waitress", "flask")
    )
    results.add(
        f"HTTP floor: the same POSTs answered 201 doing nothing else, {INGEST_CONNECTIONS} clients",
        f"waitress (the service's server, a bare WSGI app) {bare['rate']:,.0f} req/s, p99 {bare['p99']:.1f} ms, "
        f"{bare['cpu_us']:,.0f} µs of CPU a request; with a Flask route {flask['rate']:,.0f} req/s, "
        f"p99 {flask['p99']:.1f} ms, {flask['cpu_us']:,.0f} µs",
        "report (the ceiling of any single-record POST on this server)",
        None,
    )
    return flask["cpu_us"]


def ingest_ceiling(results: Results, work: Path, seed: int, server_ms: float, floor_us: float) -> None:
    """What one core does per job, step by step, in this process (no HTTP): validating a body
    into its stored line, and committing it (append + fsync + index) one job and 8 jobs a
    commit; with the HTTP floor measured, what is left of the server's CPU per job in the run
    is the hand-offs between its threads."""
    ops, validate_us = validated_ops(4200, seed + 7)
    service = in_process_service(work / "ceiling")
    try:
        service.submit_many(ops[:200])  # a warm index
        commit_us = {}
        for per_commit, chunk in ((1, ops[200:1200]), (8, ops[1200:4200])):
            began = time.process_time()  # the committer thread's CPU is this process' too
            for i in range(0, len(chunk), per_commit):
                service.submit_many(chunk[i : i + per_commit])
            commit_us[per_commit] = 1e6 * (time.process_time() - began) / len(chunk)
    finally:
        service.close()
    per_job = validate_us + commit_us[8]
    steps = floor_us + per_job
    rest_us = server_ms * 1000 - steps
    results.add(
        "ingest ceiling: one core's CPU per job, step by step",
        f"HTTP floor (waitress + Flask, above) {floor_us:,.0f} µs; validate + stored line {validate_us:,.0f} µs; "
        f"commit (append, fsync, index) {commit_us[1]:,.0f} µs alone, {commit_us[8]:,.0f} µs at 8 a commit. "
        f"Their sum, {steps:,.0f} µs, lets one core do ≤ {1e6 / steps:,.0f} jobs/s (≤ {1e6 / per_job:,.0f} without HTTP). "
        f"The server spent {server_ms * 1000:,.0f} µs per job in the run: {rest_us:,.0f} µs more than the steps "
        "(hand-offs between waitress, the writers, the committer and the follower)",
        "report (1,500 jobs/s needs ≤ 667 µs per job on one core)",
        None,
    )


READERS = 10
READER_SCRIPT = (
    r"""
-- what an open page asks for, in turn: the first 50 cards, the count, the facets, the change feed
local paths = {"/api/jobs?limit=50", "/api/count", "/api/facets?facet_size=50", "/api/changes"}
local i = 0
function request()
   i = i % #paths + 1
   return wrk.format("GET", paths[i])
end
"""
    + WRK_SCRIPT.split("function request()")[0].split("function init(args)")[0]
    + r"""
non2xx = 0
function response(status, headers, body)
   if status ~= 200 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
   local bad = 0
   for _, thread in ipairs(threads) do bad = bad + thread:get("non2xx") end
   io.write(string.format("BENCH requests=%d duration_us=%d p99_us=%d non2xx=%d\n",
      summary.requests, summary.duration, latency:percentile(99), bad))
end
"""
)


def ingest_with_readers(server: Server, prefix: Path, threads: int, seconds: int) -> tuple[dict, dict]:
    """The ingest run again (fresh bodies) while READERS connections GET what an open page does."""
    script = prefix.parent / "readers.lua"
    script.write_text(READER_SCRIPT)
    cmd = ["wrk", "-t1", f"-c{READERS}", f"-d{seconds + 2}s", "--timeout", "10s", "--latency", "-s", str(script)]
    say(f"ingest: again, with {READERS} readers (wrk -c{READERS}) on the page's default view")
    readers = subprocess.Popen([*cmd, server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    try:
        ingest = run_wrk(server.url, prefix, "post", INGEST_CONNECTIONS, threads, seconds)
        out, err = readers.communicate(timeout=seconds + 60)
    finally:
        if readers.poll() is None:
            readers.kill()
    match = re.search(r"^BENCH (.*)$", out, re.M)
    if readers.returncode != 0 or not match:
        raise RuntimeError(f"wrk (readers) failed ({readers.returncode}):\n{out}\n{err}")
    return ingest, {k: int(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


# ---------------------------------------------------------------- scenario: scaling

SCALING_PROCESSES = (1, 2, 4)
SCALING_BODIES = INGEST_BODIES  # per ingest run: more than 1,500 jobs/s × 15 s; a wrap-around is reported


def bench_scaling(results: Results, work: Path, seed: int, seconds: int) -> None:
    """`serve --workers N` for N = 1, 2, 4 on one data dir, on SQLite and on PostgreSQL:
    durable ingest (8 clients POST) into an empty index, then the page's first view
    (GET /api/jobs?limit=50, 8 clients) over what was ingested, then ingest again while
    READERS connections ask what an open page does (readers in other processes than the
    writes they share the machine with, when N > 1)."""
    backends = [INDEX, PostgresIndex() if INDEX.name == "sqlite" else SQLiteIndex()]
    threads = wrk_threads(INGEST_CONNECTIONS)
    # The same two sets of bodies for every data dir (each starts empty): distinct within a run.
    bodies = [orjson.dumps(b).decode() for b in gen.generate_records(SCALING_BODIES * 2, seed + 11)]
    reads = work / "scaling-get-"
    write_request_files(reads, ["/api/jobs?limit=50"] * 64, threads)
    try:
        for index in sorted(backends, key=lambda b: b.name != "sqlite"):
            base = None
            for n in SCALING_PROCESSES:
                data_dir = work / f"scaling-{index.name}-{n}"
                posts, again = work / f"scaling-post-{index.name}-{n}-", work / f"scaling-again-{index.name}-{n}-"
                write_request_files(posts, bodies[:SCALING_BODIES], threads)
                write_request_files(again, bodies[SCALING_BODIES:], threads)
                server = Server(
                    data_dir, work / f"scaling-{index.name}-{n}.log", args=("--workers", str(n)), index=index
                )
                with server:
                    server.start()
                    say(f"scaling: {index.name}, {n} process(es): ingest, then listing")
                    ingest = run_wrk(server.url, posts, "post", INGEST_CONNECTIONS, threads, seconds)
                    listing = run_wrk(server.url, reads, "get", INGEST_CONNECTIONS, threads, seconds)
                    mixed, readers = ingest_with_readers(server, again, threads, seconds)
                rates = (
                    ingest["s201"] / (ingest["duration_us"] / 1e6),
                    listing["s2xx"] / (listing["duration_us"] / 1e6),
                )
                base = base or rates
                bad = ingest["non2xx"] + listing["non2xx"] + mixed["non2xx"] + readers["non2xx"]
                if ingest["wrapped"] or mixed["wrapped"]:  # then the rate only counts the first pass's 201s
                    results.note(f"scaling {index.name} {n}: wrk ran out of distinct bodies: raise SCALING_BODIES")
                results.add(
                    f"scaling: {n} process{'es' if n > 1 else ''} (serve --workers {n}), {index.version()}",
                    f"ingest {rates[0]:,.0f} jobs/s (×{rates[0] / base[0]:.2f}), p99 {ingest['p99_us'] / 1000:.1f} ms; "
                    f"listing {rates[1]:,.0f} req/s (×{rates[1] / base[1]:.2f}), p99 {listing['p99_us'] / 1000:.1f} ms; "
                    f"ingest with {READERS} readers {mixed['s201'] / (mixed['duration_us'] / 1e6):,.0f} jobs/s, "
                    f"p99 {mixed['p99_us'] / 1000:.1f} ms (readers {readers['requests'] / (readers['duration_us'] / 1e6):,.0f} req/s); "
                    f"{bad} non-2xx",
                    "report (0 non-2xx)",
                    None if bad == 0 else False,
                )
    finally:
        backends[1].stop()


# ---------------------------------------------------------------- scenario: reindex


def parse_baseline(paths: list[Path]) -> float:
    """Seconds to merely read (8 MiB chunks) and orjson-parse every line of the files."""
    loads, sink = orjson.loads, collections.deque(maxlen=0)
    began = time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            tail = b""
            while chunk := f.read(8 << 20):
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                sink.extend(map(loads, lines))
            if tail.strip():
                loads(tail)
    return time.perf_counter() - began


def reindex(data_dir: Path, work: Path) -> tuple[float, dict]:
    """`learning-svc reindex` as a subprocess; returns (wall seconds, memory MB as in run_measured)."""
    seconds, memory, code = run_measured(
        [str(CLI), "reindex", "--data-dir", str(data_dir)], work / "reindex.log", timeout=4 * 3600
    )
    if code != 0:
        raise RuntimeError(f"reindex exited with {code}; see {work / 'reindex.log'}")
    return seconds, memory


def bench_reindex(results: Results, data_dir: Path, work: Path, jobs: int) -> None:
    """Reindex rate as a share of the parse-only rate (same files, same run), beside a generic
    loader (sqlite-utils) on the same job file; peak RSS; the index's size beside the JSONL's."""
    paths = [data_dir / LOG_NAME, data_dir / RATINGS_NAME]
    say("reindex: parse-only baseline (orjson, 8 MiB reads), also warms the page cache")
    baseline = parse_baseline(paths)
    say(f"reindex: learning-svc reindex of {jobs:,} jobs")
    seconds, memory = reindex(data_dir, work)
    baseline = min(baseline, parse_baseline(paths))
    rate, base_rate = jobs / seconds, jobs / baseline
    share = 100 * baseline / seconds
    results.add(
        f"reindex {jobs:,} jobs (+ ratings)",
        f"{seconds:.1f} s = {rate:,.0f} jobs/s = {share:.1f}% of parse-only {base_rate:,.0f} jobs/s",
        "≥ 40% of parse-only",
        share >= 40,
    )
    results.add(
        "reindex peak RSS (the command and its workers)",
        f"{memory['tree']:,.0f} MB summed over the processes (anon {memory['tree_anon']:,.0f}); "
        f"the command alone: anon ≤ {memory['anon']:,.0f}, file-backed ≤ {memory['file']:,.0f}",
        "< 250 MB",
        memory["tree"] < 250,
    )
    indexed = (work / "reindex.log").read_text(errors="replace").strip().splitlines()
    results.note(f"reindex said: {indexed[-1] if indexed else '?'}")
    size = INDEX.size(data_dir)
    jsonl = sum(p.stat().st_size for p in paths)
    results.add(
        "index on disk vs. the JSONL it indexes",
        f"{size / 2**20:,.0f} MB for {jsonl / 2**20:,.0f} MB = {100 * size / jsonl:.0f}%",
        "≤ 50%",
        size <= jsonl / 2,
    )
    if INDEX.name == "sqlite":  # a SQLite loader, and SQLite's write path: beside the SQLite index only
        bench_peer_loader(results, data_dir, work, jobs, seconds, baseline)
        reindex_ceiling(results, data_dir, work, 1e6 * seconds / jobs, base_rate)


CEILING_LINES = 20_000


def reindex_ceiling(results: Results, data_dir: Path, work: Path, run_us: float, base_rate: float) -> None:
    """What one core does per job of a reindex, step by step, on the first CEILING_LINES job lines
    (in this process, one step at a time, through the rebuild's own functions): parse, project,
    write the rows into a scratch SQLite file as the rebuild does (its FTS5 rows alone besides),
    and build the sort indexes after the load. One writer does the writes and the index builds;
    parsing and projecting can go to other cores."""
    from learning_svc.index import db as index_db
    from learning_svc.index import project, sync

    with open(data_dir / LOG_NAME, "rb") as f:
        raw = [line for _, line in zip(range(CEILING_LINES), f)]
    offsets = list(itertools.accumulate((len(line) for line in raw), initial=0))[:-1]
    began = time.process_time()
    for line in raw:
        orjson.loads(line)
    parse_us = 1e6 * (time.process_time() - began) / len(raw)
    began = time.process_time()
    prepared = [sync.prepare_log_line(o, line.rstrip(b"\n"), len(line)) for o, line in zip(offsets, raw)]
    project_us = 1e6 * (time.process_time() - began) / len(raw) - parse_us
    rows = [p.rows for p in prepared if p.rows is not None]

    def scratch(name: str):
        engine = index_db.make_engine(f"sqlite:///{(work / name).as_posix()}", writer=True, scratch=True)
        index_db.upgrade(engine)
        with engine.begin() as conn:
            for index in sync.DEFERRED_INDEXES:
                index.drop(conn)
        return engine

    engine = scratch("ceiling-rows.sqlite3")
    try:
        began = time.process_time()
        for i in range(0, len(rows), sync.BATCH_LINES):
            with engine.begin() as conn:
                project.insert_jobs(conn, rows[i : i + sync.BATCH_LINES])
        write_us = 1e6 * (time.process_time() - began) / len(rows)
        began = time.process_time()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"PRAGMA cache_size=-{sync.INDEX_BUILD_CACHE_KIB}")
            for index in sync.DEFERRED_INDEXES:
                index.create(conn)
        build_us = 1e6 * (time.process_time() - began) / len(rows)
    finally:
        engine.dispose()
    engine = scratch("ceiling-fts.sqlite3")
    try:
        values = [project._fts_values(r.search) for r in rows]
        began = time.process_time()
        for i in range(0, len(values), sync.BATCH_LINES):
            with engine.begin() as conn:
                conn.exec_driver_sql(project.FTS_INSERT, values[i : i + sync.BATCH_LINES])
        fts_us = 1e6 * (time.process_time() - began) / len(values)
    finally:
        engine.dispose()
    budget_us = 1e6 / (0.4 * base_rate)
    writer_us = write_us + build_us
    both_us = (parse_us + project_us + writer_us) / 2
    results.add(
        "reindex ceiling: one core's CPU per job, step by step",
        f"parse {parse_us:,.0f} µs, project {project_us:,.0f} µs, write the rows {write_us:,.0f} µs "
        f"(of which FTS5 {fts_us:,.0f}), build the sort indexes {build_us:,.0f} µs (first {len(rows):,} jobs). "
        f"The one writer needs ≥ {writer_us:,.0f} µs a job (≤ {100 * 1e6 / writer_us / base_rate:.0f}% of parse-only), "
        f"every step spread over 2 cores ≥ {both_us:,.0f} µs (≤ {100 * 1e6 / both_us / base_rate:.0f}%); "
        f"the run took {run_us:,.0f} µs a job (the ratings file's lines too)",
        f"report (40% of parse-only needs ≤ {budget_us:,.0f} µs a job)",
        None,
    )


def bench_peer_loader(results: Results, data_dir: Path, work: Path, jobs: int, ours: float, baseline: float) -> None:
    """`sqlite-utils insert --nl`: the same job lines into one table, no indexes, no ratings."""
    peer = VENV_BIN / "sqlite-utils"
    if not peer.exists():
        results.add("peer: sqlite-utils insert --nl", "sqlite-utils is not installed", "installed (bench extra)", False)
        return
    target = work / "peer.sqlite3"
    say(f"reindex: the peer, sqlite-utils insert --nl of the same {jobs:,} job lines")
    seconds, _, code = run_measured(
        [str(peer), "insert", str(target), "jobs", str(data_dir / LOG_NAME), "--nl"], work / "peer.log", 4 * 3600
    )
    target.unlink(missing_ok=True)
    if code != 0:
        results.add("peer: sqlite-utils insert --nl", f"exited with {code}; see {work / 'peer.log'}", "exit 0", False)
        return
    results.add(
        "peer: sqlite-utils insert --nl, same job lines",
        f"{seconds:.1f} s = {jobs / seconds:,.0f} jobs/s = {100 * baseline / seconds:.1f}% of parse-only; "
        f"reindex (tags, facets, FTS, sort indexes, ratings) is {seconds / ours:.2f}× its speed",
        "reindex faster than the peer",
        ours < seconds,
    )


# ---------------------------------------------------------------- scenario: import


def bench_import(results: Results, work: Path, jobs: int, seed: int) -> None:
    """`learning-svc import` of a generated StableNew installation into an empty data dir, then again."""
    from learning_svc import gen_stablenew

    folder = work / "stablenew"
    say(f"import: generating a StableNew installation with {jobs:,} jobs")
    gen_stablenew.write_installation(folder, jobs=jobs, images=jobs // 50, groups=max(1, jobs // 2000), seed=seed)
    lines = count_lines(folder / "data" / "job_history.jsonl")
    target = work / "imported"
    for attempt in ("first", "again"):
        say(f"import: learning-svc import ({attempt})")
        seconds, memory, code = run_measured(
            [str(CLI), "import", "--data-dir", str(target), str(folder)], work / f"import-{attempt}.log", timeout=3600
        )
        if code != 0:
            raise RuntimeError(f"import exited with {code}; see {work / f'import-{attempt}.log'}")
        summary = (work / f"import-{attempt}.log").read_text(errors="replace")
        found = re.search(r"([\d,]+) entries read in [\d.]+ s; ([\d,]+) were imported", summary)
        entries, imported = (int(found[1].replace(",", "")), int(found[2].replace(",", ""))) if found else (0, 0)
        label = "import of a StableNew history" if attempt == "first" else "the same import again (writes nothing)"
        results.add(
            f"{label}: {jobs:,} jobs ({lines:,} history lines, {entries:,} entries)",
            f"{seconds:.1f} s = {entries / seconds:,.0f} entries/s, {imported:,} imported; peak RSS {memory['tree']:,.0f} MB",
            "report",
            None,
        )


# ---------------------------------------------------------------- scenario: images (import, batch, watch)

IMAGE_COUNT = 10_000
IMAGE_SIZE = (160, 208)  # small noise images: the import reads metadata, and hashes every byte


def write_a1111_pngs(folder: Path, count: int, seed: int) -> int:
    """`count` PNGs as A1111 writes them (a `parameters` text chunk), each a different image."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    noise = Image.effect_noise(IMAGE_SIZE, 64).convert("RGB")
    total = 0
    for n in range(count):
        info = PngInfo()
        prompt = f"a lighthouse at dusk, masterpiece, <lora:add-detail-xl:0.{rng.randrange(1, 9)}> n{n}"
        info.add_text(
            "parameters",
            f"{prompt}\nNegative prompt: blurry\nSteps: {rng.choice((20, 30))}, "
            f"Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: {rng.getrandbits(32)}, "
            f"Size: 832x1216, Model hash: 31e35c80fc, Model: juggernautXL_v9, VAE: sdxl_vae.safetensors, "
            f'Lora hashes: "add-detail-xl: 7c6bad76eb54", Version: v1.10.1',
        )
        image = noise.copy()
        image.putpixel((n % IMAGE_SIZE[0], n // IMAGE_SIZE[0] % IMAGE_SIZE[1]), (n % 256, 0, 0))  # unique content
        path = folder / f"{n // 1000:02d}" / f"{n:05d}-{seed}.png"
        path.parent.mkdir(exist_ok=True)
        image.save(path, "PNG", pnginfo=info, compress_level=1)
        total += path.stat().st_size
    return total


def bench_images(results: Results, work: Path, seed: int) -> None:
    """Import of 10,000 A1111 PNGs (service stopped, then running), NDJSON batches, serve --watch."""
    folder = work / "pngs"
    say(f"images: writing {IMAGE_COUNT:,} A1111 PNGs ({IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} noise)")
    size = write_a1111_pngs(folder, IMAGE_COUNT, seed)
    for running in (False, True):
        target = work / ("images-running" if running else "images-stopped")
        server = Server(target, work / "images-server.log") if running else None
        if server:
            server.start()
        try:
            seconds, memory, code = run_measured(
                [str(CLI), "import", "--data-dir", str(target), str(folder)], work / "import-images.log", timeout=3600
            )
        finally:
            if server:
                server.stop()
        if code != 0:
            raise RuntimeError(f"import exited with {code}; see {work / 'import-images.log'}")
        rate = IMAGE_COUNT / seconds
        results.add(
            f"import of {IMAGE_COUNT:,} A1111 PNGs ({size / 2**20:,.0f} MB), service {'running' if running else 'stopped'}",
            f"{seconds:.1f} s = {rate:,.0f} images/s; peak RSS {memory['tree']:,.0f} MB",
            "≥ 1,000 images/s",
            rate >= 1000,
        )
    bench_batches(results, work, seed)
    bench_watch(results, work, folder)


def bench_batches(results: Results, work: Path, seed: int) -> None:
    """NDJSON batch ingest over HTTP, durable: 2 clients, batches of 100 and of 1,000 (and of
    1,000 to two service processes). The rate is of acknowledgements (each line fsynced in the
    JSONL); the index follows, and the row also says when the last job was listed."""
    for batch, processes in ((100, 1), (1000, 1), (1000, 2)):
        data_dir = work / f"batch-{batch}-{processes}"
        bodies = [orjson.dumps(body) for body in gen.generate_records(40_000, seed=seed + batch)]
        chunks = [b"\n".join(bodies[i : i + batch]) + b"\n" for i in range(0, len(bodies), batch)]
        args = ("--workers", str(processes)) if processes > 1 else ()
        with Server(data_dir, work / f"batch-{batch}-{processes}.log", args=args) as server:
            server.start()
            cpu_before = tree_cpu_seconds(server.proc.pid)
            said: collections.Counter = collections.Counter()

            def client(mine: list[bytes], said=said) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                for chunk in mine:
                    conn.request("POST", "/api/jobs", body=chunk, headers={"Content-Type": "application/x-ndjson"})
                    answer = conn.getresponse().read()
                    said.update(orjson.loads(line)["status"] for line in answer.splitlines())
                conn.close()

            began = time.perf_counter()
            threads = [threading.Thread(target=client, args=(chunks[k::2],)) for k in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - began
            Client(server.port).json("/api/jobs?limit=1")  # waits until the follower has indexed them all
            listed = time.perf_counter() - began
            if processes == 1:
                server_us = 1e6 * (tree_cpu_seconds(server.proc.pid) - cpu_before) / len(bodies)
        rate = len(bodies) / seconds
        results.add(
            f"NDJSON batch ingest, batches of {batch:,}, 2 clients, durable ({len(bodies):,} jobs)"
            + (f", {processes} processes (serve --workers {processes})" if processes > 1 else ""),
            f"{rate:,.0f} jobs/s acknowledged ({dict(said)}); all listed after {listed:.1f} s "
            f"= {len(bodies) / listed:,.0f} jobs/s",
            "≥ 10,000 jobs/s" if processes == 1 else "report",
            rate >= 10_000 if processes == 1 else None,
        )
    batch_ceiling(results, work, seed, server_us)


def batch_ceiling(results: Results, work: Path, seed: int, server_us: float) -> None:
    """What one core does per job of an NDJSON batch, step by step, in this process (no HTTP):
    validating each line into its stored line, then committing 1,000 at a time (one append, one
    fsync) and indexing them (the follower, waited for). Against the server's CPU per job in
    the last run (batches of 1,000, indexing included), the rest is HTTP and the answer lines."""
    ops, validate_us = validated_ops(6000, seed + 11)
    service = in_process_service(work / "batch-ceiling")
    try:
        service.submit_many(ops[:1000], together=True)
        with service.reader():
            pass
        began = time.process_time()  # the committer's and the follower's threads are this process' too
        for i in range(1000, len(ops), 1000):
            service.submit_many(ops[i : i + 1000], together=True)
        with service.reader():  # until the follower has indexed them
            pass
        commit_us = 1e6 * (time.process_time() - began) / (len(ops) - 1000)
    finally:
        service.close()
    per_job = validate_us + commit_us
    results.add(
        "NDJSON ceiling: one core's CPU per job, step by step",
        f"validate + stored line {validate_us:,.0f} µs; commit 1,000 a time and index them {commit_us:,.0f} µs; "
        f"the server spent {server_us:,.0f} µs per job in the run (batches of 1,000; its process and "
        f"the validation workers), so HTTP, the answer and sending lines to the workers "
        f"≈ {_rest(server_us - per_job)}. Without HTTP one core does ≤ {1e6 / per_job:,.0f} jobs/s, "
        f"both cores ≤ {2e6 / per_job:,.0f} if the work split evenly; with the validation in workers the "
        f"service's own process (one GIL) still commits and indexes: ≤ {1e6 / commit_us:,.0f} jobs/s",
        "report (10,000 jobs/s needs ≤ 100 µs per job on one core, ≤ 200 on two)",
        None,
    )


def _rest(us: float) -> str:
    """What is left of a run's CPU per job once the measured steps are taken off: below zero when
    the steps, timed alone on a machine that varies run to run, took more than the run's share."""
    return f"{us:,.0f} µs" if us >= 0 else f"0 µs (the steps alone took {-us:,.0f} µs more than the run: noise)"


def bench_watch(results: Results, work: Path, source: Path, files: int = 150) -> None:
    """serve --watch: time from the end of a file's write to the job being listed."""
    watched = work / "watched"
    watched.mkdir()
    pngs = sorted(source.rglob("*.png"))[:files]
    with Server(work / "watch-data", work / "watch.log", args=("--watch", str(watched)), cwd=work) as server:
        server.start()
        seen: dict[str, float] = {}
        stop = threading.Event()

        def watch_listing() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            while not stop.is_set():
                conn.request("GET", "/api/jobs?limit=500")
                for job in json.loads(conn.getresponse().read())["jobs"]:
                    name = Path(job["outputs"][0]).name if job["outputs"] else None
                    if name and name not in seen:
                        seen[name] = time.perf_counter()
                time.sleep(0.02)
            conn.close()

        lister = threading.Thread(target=watch_listing)
        lister.start()
        written = {}
        for png in pngs:
            target = watched / png.name
            target.write_bytes(png.read_bytes())
            written[png.name] = time.perf_counter()
            time.sleep(0.1)
        deadline = time.perf_counter() + 30
        while len(seen) < len(pngs) and time.perf_counter() < deadline:
            time.sleep(0.05)
        stop.set()
        lister.join()
    delays = [seen[name] - at for name, at in written.items() if name in seen]
    p95 = percentile(delays, 95) if delays else float("inf")
    results.add(
        f"serve --watch: last write to listed, {len(pngs)} images 0.1 s apart",
        f"p50 {percentile(delays, 50):.2f} s, p95 {p95:.2f} s, {len(delays)}/{len(pngs)} seen",
        "< 2 s (p95)",
        p95 < 2 and len(delays) == len(pngs),
    )


# ---------------------------------------------------------------- scenario: listing + facets


class Client:
    """One persistent keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str) -> tuple[int, bytes, float]:
        """(status, body, milliseconds) of one GET."""
        began = time.perf_counter()
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            body = response.read()
        except (http.client.HTTPException, ConnectionError):
            self.conn.close()  # reconnect once; the failed attempt is not timed
            began = time.perf_counter()
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            body = response.read()
        return response.status, body, (time.perf_counter() - began) * 1000

    def json(self, path: str) -> dict:
        status, body, _ = self.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {body[:300]!r}")
        return orjson.loads(body)

    def close(self) -> None:
        self.conn.close()


def timed(client: Client, path: str, reps: int, budget_s: float, warmup: int = LISTING_WARMUP) -> list[float]:
    """Milliseconds of up to `reps` GETs after a warm-up; fewer (≥ MIN_SAMPLES) once `budget_s` is spent."""
    for _ in range(warmup):
        if client.get(path)[2] > 1000 * budget_s / (MIN_SAMPLES + 1):
            break  # a slow request needs no more warming
    times, began = [], time.perf_counter()
    for _ in range(reps):
        status, body, ms = client.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {body[:300]!r}")
        times.append(ms)
        if len(times) >= MIN_SAMPLES and time.perf_counter() - began > budget_s:
            break
    return times


def facet_extremes(facets: dict, name: str) -> list[str]:
    """The commonest and the rarest value of a facet (one if it has a single value)."""
    values = [entry["value"] for entry in facets[name] if entry["value"] not in (None, "")]
    return values[:1] + values[-1:] if len(values) > 1 else values


def switch_cases(facets: dict) -> list[tuple[str, dict]]:
    """The values nearest the planner's switch (Settings.probe_above jobs), on either side. Alone
    a value drives its own tag range; beside another filter, or if that range ever goes, the
    first is checked job by job along a sort index (the most entries read a page) and the second
    fetched and sorted (the most jobs sorted): the two worst cases of either plan."""
    from learning_svc.config import Settings

    switch = Settings().probe_above
    values = [
        (entry["count"], name, entry["value"])
        for name in ("pack", "lora", "embedding", "model")
        for entry in facets[name]
        if entry["value"] not in (None, "")
    ]
    cases = []
    above = [v for v in values if v[0] > switch]
    below = [v for v in values if v[0] <= switch]
    if above:
        count, name, value = min(above)
        cases.append((f"{name}={value} ({count:,} jobs, above the switch)", {name: value}))
    if below:
        count, name, value = max(below)
        cases.append((f"{name}={value} ({count:,} jobs, below the switch)", {name: value}))
    return cases


def filter_cases(client: Client, data_dir: Path) -> list[tuple[str, dict]]:
    """(label, query params) for every single filter with a common and a rare value."""
    facets = client.json("/api/facets?facet_size=1000")["facets"]
    cases = [("no filter", {})]
    for name in ("pack", "model", "sampler", "scheduler", "lora", "embedding", "status"):
        cases += [(f"{name}={value}", {name: value}) for value in facet_extremes(facets, name)]
    cases += switch_cases(facets)
    cases += [
        ("rating_min=0", {"rating_min": "0"}),
        ("rating_min=5", {"rating_min": "5"}),
        ("rated=false", {"rated": "false"}),
        ("rated=true", {"rated": "true"}),
    ]
    newest = client.json("/api/jobs?limit=50")["jobs"]
    oldest = client.json("/api/jobs?limit=1&sort=completed_at")["jobs"][0]["completed_at"]
    last = newest[0]["completed_at"]
    span = last - oldest
    middle = oldest + span / 2
    cases += [
        ("since/until: middle half", {"since": f"{oldest + span / 4:.3f}", "until": f"{last - span / 4:.3f}"}),
        ("since/until: 60 s", {"since": f"{middle:.3f}", "until": f"{middle + 60:.3f}"}),
    ]
    hex_ids = [j["job_id"] for j in newest if re.fullmatch(r"[0-9a-f]{32}", j["job_id"])]
    cases += [
        ("q=masterpiece", {"q": "masterpiece"}),
        ("q=<one job id>", {"q": (hex_ids or [newest[-1]["job_id"]])[0]}),
    ]
    return cases + text_cases(data_dir, sum(entry["count"] for entry in facets["status"]))


def text_cases(data_dir: Path, jobs: int) -> list[tuple[str, dict]]:
    """Words by how many prompts they are in (from the index's text search), and the commonest
    day stamp of the job ids: a word whose jobs all sit together in the time order."""
    vocab = INDEX.vocabulary(data_dir)
    cases = []
    for share in TEXT_SHARES:
        term, doc = min(vocab, key=lambda row: abs(row[1] - share * jobs))
        cases.append((f"q={term} (in {doc / jobs:.1%} of jobs)", {"q": term}))
    days = [row for row in vocab if re.fullmatch(r"20\d{6}", row[0])]
    if days:
        term, doc = max(days, key=lambda row: row[1])
        cases.append((f"q={term} (a day in job ids, {doc:,} jobs together)", {"q": term}))
    return cases


def deep_cursor(client: Client, params: dict, sort: str) -> tuple[str | None, int]:
    """Walk down (pages of WALK_LIMIT) towards DEEP_OFFSET, within WALK_BUDGET_S; returns (cursor, rows skipped)."""
    cursor, depth, began = None, 0, time.perf_counter()
    while depth + WALK_LIMIT <= DEEP_OFFSET and time.perf_counter() - began < WALK_BUDGET_S:
        query = {**params, "sort": sort, "limit": WALK_LIMIT, **({"cursor": cursor} if cursor else {})}
        page = client.json("/api/jobs?" + urlencode(query))
        if not page["next_cursor"]:
            break
        cursor, depth = page["next_cursor"], depth + WALK_LIMIT
    return cursor, depth


def bench_listing(results: Results, server: Server) -> None:
    """p95 of GET /api/jobs for every filter case × sort × (page 1, deep page), and of facets."""
    client = Client(server.port)
    try:
        cases = filter_cases(client, server.data_dir)
        bench_first_searches(results, client, [case for case in cases if "q" in case[1]])
        say(
            f"listing: {len(cases)} filter cases × {len(SORTS)} sorts × 2 depths, "
            f"{LISTING_REPS} timed GETs each after {LISTING_WARMUP} warm-up"
        )
        measured, skipped = measure_all(client, cases)
        measured += measure_far_pages(client, server.data_dir)
        measured.sort(reverse=True)
        worst = measured[0]
        incomplete = f"; {skipped} combos not measured (time budget)" if skipped else ""
        results.add(
            f"GET /api/jobs p95, worst of {len(measured)} (filter × sort × depth)",
            f"{worst[0]:.1f} ms ({worst[3]}){incomplete}",
            "p95 < 15 ms",
            worst[0] < 15 and not skipped,
        )
        results.note("listing: slowest combinations (p95 / p50 ms, n):")
        for p95, p50, n, label in measured[:8]:
            results.note(f"  {p95:7.1f} / {p50:6.1f}  n={n:<3} {label}")
        bench_facets(results, client, cases)
    finally:
        client.close()


def bench_first_searches(results: Results, client: Client, cases: list[tuple[str, dict]]) -> None:
    """The first request of each text search, and how long until its matches are held in memory
    (index/text_search.py: built in the background; until then a search fetches and sorts)."""
    firsts, began = [], {}
    for label, params in cases:
        began[label] = time.perf_counter()
        status, _, ms = client.get("/api/jobs?" + urlencode(params))
        if status != 200:
            raise RuntimeError(f"GET {label} -> {status}")
        firsts.append((ms, label))
        results.note(f"first search {label}: {ms:.1f} ms")
    ms, label = max(firsts)
    results.add("GET /api/jobs?q=… first request of a word, worst", f"{ms:.0f} ms ({label})", "report", None)
    held = []
    for label, params in cases:  # held once three requests in a row answer under the target
        fast = 0
        while fast < 3 and time.perf_counter() - began[label] < HELD_WAIT_S:
            fast = fast + 1 if client.get("/api/jobs?" + urlencode(params))[2] < 15 else 0
        held.append((time.perf_counter() - began[label], label))
        results.note(f"held after {held[-1][0]:.1f} s: {label}")
    seconds, label = max(held)
    results.add("text search: fast (held in memory) after, worst", f"{seconds:.1f} s ({label})", "report", None)


def measure_all(client: Client, cases: list[tuple[str, dict]]) -> tuple[list[tuple], int]:
    """(p95, p50, n, label) for every combination measured before LISTING_DEADLINE_S, and the count skipped."""
    measured, skipped, began = [], 0, time.perf_counter()
    for label, params in cases:
        case = []
        for sort in SORTS:
            if time.perf_counter() - began > LISTING_DEADLINE_S:
                skipped += 2
                continue
            case += measure_case(client, label, params, sort)
        if case:
            worst = max(case)
            say(f"  {label}: worst p95 {worst[0]:.1f} ms ({worst[3]})")
        measured += case
    return measured, skipped


def measure_case(client: Client, label: str, params: dict, sort: str) -> list[tuple[float, float, int, str]]:
    """Page 1 and the deep page of one filter case in one sort (no deep page if page 1 is very slow)."""
    first = "/api/jobs?" + urlencode({**params, "sort": sort})
    times = timed(client, first, LISTING_REPS, LISTING_BUDGET_S)
    p50 = percentile(times, 50)
    out = [(percentile(times, 95), p50, len(times), f"{label}, sort {sort}, page 1")]
    if p50 > SLOW_MS:
        return out
    cursor, depth = deep_cursor(client, params, sort)
    if cursor:
        deep = "/api/jobs?" + urlencode({**params, "sort": sort, "cursor": cursor})
        times = timed(client, deep, LISTING_REPS, LISTING_BUDGET_S)
        out.append(
            (percentile(times, 95), percentile(times, 50), len(times), f"{label}, sort {sort}, after {depth:,} rows")
        )
    return out


FAR_DEPTH = 500_000  # "page 10,000" at limit 50
FAR_CASES = {"no filter": ({}, ""), "rated=false": ({"rated": "false"}, "WHERE rating_hi = -1")}


def measure_far_pages(client: Client, data_dir: Path) -> list[tuple[float, float, int, str]]:
    """Page 10,000 of the whole history and of the unrated jobs (one tie group in rating
    order), in every sort: the cursor of row FAR_DEPTH is made from the index with OFFSET
    (too far to walk to), then the page after it is timed like any other."""
    out = []
    for label, (params, where) in FAR_CASES.items():
        for sort, (column, descending) in PLAN_SORTS.items():
            order = f"{column.name} {'DESC' if descending else 'ASC'}, id {'DESC' if descending else 'ASC'}"
            found = INDEX.rows(
                data_dir, f"SELECT {column.name}, id FROM jobs {where} ORDER BY {order} LIMIT 1 OFFSET {FAR_DEPTH - 1}"
            )
            if not found:
                continue
            path = "/api/jobs?" + urlencode({**params, "sort": sort, "cursor": encode_cursor(sort, *found[0])})
            times = timed(client, path, LISTING_REPS, LISTING_BUDGET_S)
            out.append(
                (
                    percentile(times, 95),
                    percentile(times, 50),
                    len(times),
                    f"{label}, sort {sort}, after {FAR_DEPTH:,} rows",
                )
            )
    worst = max(out, default=None)
    if worst:
        say(f"  page 10,000: worst p95 {worst[0]:.1f} ms ({worst[3]})")
    return out


def bench_facets(results: Results, client: Client, cases: list[tuple[str, dict]]) -> None:
    """Facets p95 unfiltered and under a common pack, a rare LoRA, a rating filter, a wide time window and a common word."""
    by_label = dict(cases)
    common = next(label for label, _ in cases if label.startswith("pack="))
    rare = [label for label, _ in cases if label.startswith("lora=")][-1]
    more = ("rating_min=5", "since/until: middle half", "q=masterpiece")
    figures, worst = [], 0.0
    for name, params in (
        ("unfiltered", {}),
        (common, by_label[common]),
        (rare, by_label[rare]),
        *((label, by_label[label]) for label in more),
    ):
        path = "/api/facets" + ("?" + urlencode(params) if params else "")
        times = timed(client, path, FACET_REPS, FACET_BUDGET_S, warmup=1)
        p95 = percentile(times, 95)
        worst = max(worst, p95)
        figures.append(f"{name.split('=')[0] if '=' in name else name} {p95:.0f}")
        results.note(f"facets {name}: p95 {p95:.1f} ms, p50 {percentile(times, 50):.1f} ms, n={len(times)}")
    results.add(
        "GET /api/facets p95 (unfiltered / common pack / rare lora / rating_min=5 / middle half / q)",
        f"{worst:.0f} ms worst ({' / '.join(f.split()[-1] for f in figures)} ms)",
        "p95 < 150 ms",
        worst < 150,
    )


# ---------------------------------------------------------------- scenario: rating


def bench_rating(
    results: Results,
    server: Server,
    data_dir: Path,
    work: Path,
    seconds: int,
    connection_counts: tuple[int, ...] = (1, 8),
    processes: int = 1,
) -> None:
    """PUT /api/jobs/<id>/rating on existing jobs with 1 and with 8 connections (`processes`:
    the server's `--workers`, whose CPU is counted over the process and its children)."""
    ids = []
    with open(data_dir / LOG_NAME, "rb") as f:
        for line in f:
            ids.append(quote(orjson.loads(line)["job_id"], safe=""))
            if len(ids) == 20_000:
                break
    shown = f", {processes} processes (serve --workers {processes})" if processes > 1 else ""
    for connections in connection_counts:
        threads = wrk_threads(connections)
        prefix = work / f"put{connections}-"
        write_request_files(prefix, ids, threads)
        say(f"rating: wrk -t{threads} -c{connections} -d{seconds}s PUT /api/jobs/<id>/rating")
        cpu_before = tree_cpu_seconds(server.proc.pid)
        stats = run_wrk(server.url, prefix, "put", connections, threads, seconds)
        cpu_ms = 1000 * (tree_cpu_seconds(server.proc.pid) - cpu_before) / max(1, stats["s2xx"])
        p50, p99 = stats["p50_us"] / 1000, stats["p99_us"] / 1000
        rate = stats["s2xx"] / (stats["duration_us"] / 1e6)
        ok = p99 < 10 and stats["non2xx"] == 0 and stats["errors"] + stats["timeouts"] == 0
        results.add(
            f"rating PUT, {connections} connection{'s' if connections > 1 else ''} (wrk){shown}",
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; {rate:,.0f}/s; {stats['non2xx']} non-2xx; "
            f"server CPU {cpu_ms:.2f} ms a rating",
            "p99 < 10 ms, 0 non-2xx",
            ok,
        )
        if connections > 1 and processes == 1:
            # Closed loop: each connection sends its next rating when the last is answered, so the
            # mean latency is connections / throughput, and the throughput is bound by the CPU.
            cores = os.cpu_count() or 1
            say("rating: the HTTP floor (bench/floor.py, Flask) with the same PUTs")
            floor = floor_run("flask", prefix, "put", connections, threads, seconds)
            results.add(
                f"rating ceiling at {connections} connections",
                f"{connections} ratings always in the server: mean latency = {connections} / throughput "
                f"({1000 * connections / rate:.1f} ms at {rate:,.0f}/s). At {cpu_ms:.2f} ms of CPU a rating, "
                f"one core (one interpreter's GIL) allows ≤ {1000 / cpu_ms:,.0f}/s, a mean ≥ "
                f"{connections * cpu_ms:.1f} ms; all {cores} cores with nothing else running (wrk shares them) "
                f"≤ {cores * 1000 / cpu_ms:,.0f}/s, a mean ≥ {connections * cpu_ms / cores:.1f} ms. "
                f"The same PUTs answered by a Flask route doing nothing else (the HTTP floor): "
                f"{floor['rate']:,.0f}/s, p99 {floor['p99']:.1f} ms, {floor['cpu_us'] / 1000:.2f} ms of CPU a request",
                f"report (p99 < 10 ms needs a mean well under 10 ms: ≥ {connections * 1000 / 5:,.0f}/s for 5 ms)",
                None,
            )
        results.note(f"rating detail c={connections}{shown}: {stats}")


# ---------------------------------------------------------------- scenario: startup


# ---------------------------------------------------------------- the page in a browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_RUNS = 5
FIRST_CARDS = 50

# Milliseconds from the navigation's start until FIRST_CARDS cards are in the list, and the
# bytes transferred by then and once the first view's thumbnails have loaded.
PAGE_PROBE = r"""async (cards) => {
  while (document.querySelectorAll('#job-list .job').length < cards) await new Promise((r) => setTimeout(r, 5));
  const rendered = performance.now();
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const visible = [...document.querySelectorAll('#job-list img.thumb')].filter((img) => {
    const box = img.getBoundingClientRect();
    return box.bottom > 0 && box.top < innerHeight;
  });
  await Promise.all(visible.map((img) => img.complete ? null : new Promise((r) => { img.onload = img.onerror = r; })));
  await new Promise((r) => setTimeout(r, 300));
  const entries = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
  const kinds = {};
  for (const e of entries) {
    const kind = e.entryType === 'navigation' ? 'html' : e.initiatorType === 'img' ? 'images'
      : /\.js$/.test(e.name) ? 'js' : /\.css$/.test(e.name) ? 'css' : 'json';
    kinds[kind] = (kinds[kind] ?? 0) + e.transferSize;
  }
  return { rendered, bytes: entries.reduce((n, e) => n + e.transferSize, 0), kinds, requests: entries.length,
           thumbnails: visible.length };
}"""


def bench_page(results: Results, server: Server, jobs: int) -> None:
    """The page's first view at 1366x768: cold (a new browser profile) and warm (cached static files)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing (make bench installs Debian's chromium)")
    say(f"page: first {FIRST_CARDS} cards in Chromium, {PAGE_RUNS} cold and {PAGE_RUNS} warm loads")
    cold, warm = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for _ in range(PAGE_RUNS):
                context = browser.new_context(viewport={"width": 1366, "height": 768})
                page = context.new_page()
                for runs in (cold, warm):  # the second load of a context has the static files cached
                    page.goto(server.url + "/", wait_until="commit")
                    runs.append(page.evaluate(PAGE_PROBE, FIRST_CARDS))
                context.close()
        finally:
            browser.close()
    for label, runs in (("cold", cold), ("warm", warm)):
        times = sorted(run["rendered"] for run in runs)
        median = times[len(times) // 2]
        results.add(
            f"page: first {FIRST_CARDS} cards rendered, {label} load, {jobs:,} jobs (median of {len(runs)})",
            f"{median:.0f} ms (all: {', '.join(f'{t:.0f}' for t in times)})",
            "< 1,000 ms",
            median < 1000,
        )
        last = runs[-1]
        parts = ", ".join(f"{kind} {size / 1024:.1f}" for kind, size in sorted(last["kinds"].items()))
        results.add(
            f"page: first view bytes at 1366x768, {label}",
            f"{last['bytes'] / 1024:,.1f} KiB in {last['requests']} requests ({parts} KiB; "
            f"{last['thumbnails']} thumbnails in view)",
            "report",
            None,
        )


def start_server(data_dir: Path, work: Path, runs: int) -> tuple[Server, list[float]]:
    """Start the server `runs` times, timing each; the last one is left running (caller stops it)."""
    times = []
    for i in range(runs):
        server = Server(data_dir, work / "server-big.log")
        try:
            times.append(server.start())
        finally:
            if i < runs - 1 or len(times) <= i:
                server.stop()
    return server, times


def report_startup(results: Results, jobs: int, times: list[float]) -> None:
    results.add(
        f"start-up with {jobs:,} indexed jobs (worst of {len(times)})",
        f"{max(times):.2f} s (all: {', '.join(f'{t:.2f}' for t in times)})",
        "< 2 s",
        max(times) < 2,
    )


# ---------------------------------------------------------------- report


def machine() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return [
        f"- CPUs: {os.cpu_count()} × {cpu}",
        f"- RAM: {mem / 2**20:.1f} GiB",
        f"- Python {platform.python_version()}, {INDEX.version()}, {platform.platform()}",
        f"- load average at the start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}",
    ]


ANALYSIS = "## Analysis"  # hand-written from here on; kept when the file is regenerated
SECTIONS = (SQLiteIndex.heading, PostgresIndex.heading)  # one per index backend, each kept by the other's run


def report_sections(old: str) -> dict[str, str]:
    """The file's parts by heading: each backend's section and the analysis (a file from before
    the sections holds SQLite's results between its introduction and the analysis)."""
    analysis = old[old.index(ANALYSIS) :] if ANALYSIS in old else ""
    body = old[: old.index(ANALYSIS)] if ANALYSIS in old else old
    parts = {ANALYSIS: analysis}
    starts = sorted((body.index("## " + h), h) for h in SECTIONS if "## " + h in body)
    for (start, heading), (end, _) in zip(starts, [*starts[1:], (len(body), "")]):
        parts[heading] = body[start:end].rstrip() + "\n\n"
    if not starts and "\n- date:" in body:
        legacy = body[body.index("\n- date:") + 1 :].replace("\n## Details\n", "\n### Details\n")
        parts[SQLiteIndex.heading] = f"## {SQLiteIndex.heading}\n\n{legacy.rstrip()}\n\n"
    return parts


def write_report(results: Results, command: str, started: str, host: list[str]) -> None:
    """Rewrite this backend's section of BENCHMARKS.md; the other backend's and the analysis stay."""
    path = ROOT / "BENCHMARKS.md"
    parts = report_sections(path.read_text(encoding="utf-8") if path.exists() else "")
    parts[INDEX.heading] = "\n".join(
        [
            f"## {INDEX.heading}",
            "",
            f"- date: {started}",
            f"- command: `{command}`",
            *host,
            "",
            markdown_table(results.rows),
            "",
            "### Details",
            "",
            "```",
            *results.details,
            "```",
            "",
            "",
        ]
    )
    intro = (
        "# Benchmarks\n\n"
        "Measured by `make bench` (`bench/__main__.py`) against SPEC §5, with the index on SQLite "
        "(`make bench`) and on PostgreSQL (`make bench DB=postgresql`). Each run regenerates its own "
        "section; the machine may be shared, so treat a FAIL close to its target as a reason to rerun, "
        "not as a verdict.\n\n"
    )
    path.write_text(intro + "".join(parts.get(h, "") for h in SECTIONS) + parts[ANALYSIS], encoding="utf-8")


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jobs", type=int, default=1_000_000, help="N jobs for reindex/listing/start-up (default 1,000,000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument(
        "--import-jobs", type=int, default=100_000, help="StableNew jobs for the import (default 100,000)"
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--seconds", type=int, default=12, help="duration of each wrk run (default 12)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs and logs")
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="where the index lives: SQLite in each data dir (default) or a throwaway PostgreSQL server",
    )
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    if args.jobs < 1000:
        parser.error("--jobs must be at least 1000")
    return args


def run(args: argparse.Namespace, results: Results, work: Path) -> None:
    """Run the selected scenarios in dependency order."""
    only = set(args.only)
    if not shutil.which("wrk") and only & {"ingest", "rating", "scaling"}:
        raise SystemExit("wrk is not installed (make bench installs Debian's wrk)")
    if "ingest" in only:
        bench_ingest(results, work, args.seed, args.seconds)
    if "import" in only:
        bench_import(results, work, args.import_jobs, args.seed)
    if "images" in only:
        bench_images(results, work, args.seed)
    if "scaling" in only:
        bench_scaling(results, work, args.seed, args.seconds)
    if not only & {"reindex", "listing", "startup", "rating", "page"}:
        return
    data_dir = prepare_data_dir(work / "big", ensure_dataset(args.jobs, args.seed))
    if "reindex" in only:
        bench_reindex(results, data_dir, work, args.jobs)
    else:
        say("building the index (not measured)")
        reindex(data_dir, work)
    if not only & {"listing", "startup", "rating", "page"}:
        return
    server, times = start_server(data_dir, work, runs=3 if "startup" in only else 1)
    with server:
        if "startup" in only:
            report_startup(results, args.jobs, times)
        if "listing" in only:
            bench_listing(results, server)
        memory = server.memory_mb()
        if "startup" in only:
            results.add(
                f"server RSS after the listing, {args.jobs:,} jobs",
                f"{memory['rss']:,.0f} MB (anon {memory['anon']:,.0f}, file-backed {memory['file']:,.0f}; "
                f"peak {memory['peak']:,.0f})",
                "≤ 400 MB" if "listing" in only else "report (≤ 400 MB after the listing grid)",
                memory["rss"] <= 400 if "listing" in only else None,
            )
        if "page" in only:
            bench_page(results, server, args.jobs)
        if "rating" in only:
            bench_rating(results, server, data_dir, work, args.seconds)
    if "rating" in only:  # the ceiling row says one interpreter cannot: two processes, each with its GIL
        with Server(data_dir, work / "server-big-2.log", args=("--workers", "2")) as server:
            server.start()
            bench_rating(results, server, data_dir, work, args.seconds, (8,), processes=2)


def main(argv: list[str] | None = None) -> int:
    global INDEX
    args = parse_args(argv)
    INDEX = PostgresIndex() if args.db == "postgresql" else SQLiteIndex()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    command = ".venv/bin/python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    host = machine()
    results = Results()
    work = Path(tempfile.mkdtemp(prefix="learning-bench-"))
    say(f"work dir {work}")
    status = 0
    try:
        run(args, results, work)
    except Exception as error:  # still print and record what was measured
        traceback.print_exc()
        results.add("bench aborted", f"{type(error).__name__}: {str(error).splitlines()[0][:200]}", "no error", False)
        status = 2
    finally:
        INDEX.stop()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(text_table(results.rows))
    host.append(f"- load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    write_report(results, command.strip(), started, host)
    say("wrote BENCHMARKS.md")
    return status


if __name__ == "__main__":
    sys.exit(main())
