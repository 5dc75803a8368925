"""Settings from flags and LEARNING_SVC_* environment variables."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from pathlib import Path

from .timezones import naive_timezone

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class SettingsError(ValueError):
    """A setting that cannot work (a port out of range, no threads, an unknown time zone): the
    commands say it in one line and stop before serving, not at every request."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("logs/learning")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    output_root: Path | None = None
    allowed_hosts: tuple[str, ...] = ()
    threads: int = 8  # waitress worker threads for reads
    write_threads: int = 16  # and for writes, apart: readers that stall never hold up a write; each
    # waits mostly on the group commit, and concurrent writers are what fills a commit
    connection_limit: int = 1000  # open connections; idle ones close after idle_seconds
    idle_seconds: int = 30
    header_seconds: float = 10.0  # a request's headers must be in within this time of its first byte
    stall_seconds: float = 20.0  # a response its client takes nothing of for this long is dropped
    max_body_bytes: int = 1024 * 1024  # one JSON body (a record)
    max_batch_bytes: int = 64 * 1024 * 1024  # one application/x-ndjson batch (each line at most max_body_bytes)
    max_batch_lines: int = 10_000
    # Where the listing planner and the text search switch plans (index/plan.py, index/text_search.py).
    probe_above: int = 20_000
    facet_sample: int = 2_000
    text_fetch_up_to: int = 2_000
    text_set_max: int = 600_000
    text_cache_bytes: int = 128 * 2**20
    text_background: bool = True  # hold common words in a background thread (tests hold them at once)
    naive_timezone: str = "UTC"  # what a posted time without a zone means: UTC, local or an IANA name
    watch: tuple[Path, ...] = ()  # folders whose new images are imported while serving
    watch_poll: bool = False  # poll the watched folders instead of OS notifications (network shares)
    # Outputs are served only from inside the output root and the watched folders, absolute
    # paths too (by default an absolute path the pipeline recorded may be anywhere)
    outputs_confined: bool = False
    # Seconds a new image waits before it is imported as a job of its own: a pipeline writing
    # into a watched folder POSTs the job naming it meanwhile (then it is that job's output)
    watch_delay: int = 0
    watch_state: Path | None = None  # serve --workers: worker 0's watchers publish their state here for the others
    # Whether this process runs the watchers (serve --workers: worker 0 only; the others still
    # look for outputs under the watched folders)
    watchers: bool = True
    batch_processes: int | None = None  # processes validating large NDJSON batches (None: batches.default_processes)
    extra: dict = field(default_factory=dict)

    @property
    def naive_tz(self) -> tzinfo:
        return naive_timezone(self.naive_timezone)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "learning_log_v2.jsonl"

    @property
    def ratings_path(self) -> Path:
        return self.data_dir / "learning_ratings_v2.jsonl"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.sqlite3"

    @property
    def db_url(self) -> str:
        return _with_driver(self.database_url) or f"sqlite:///{self.index_path.resolve().as_posix()}"

    @property
    def shown_db_url(self) -> str:
        """The index's URL without its password: what messages and logs may show."""
        return shown_url(self.db_url)

    @property
    def is_loopback(self) -> bool:
        """Does the bind address reach this machine only? Names are resolved and every address
        they have must be a loopback one (`127.evil.example` is a name like any other)."""
        return is_loopback(self.host)

    def check(self) -> Settings:
        """This, if every setting can work; SettingsError naming the first that cannot."""
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port {self.port} is not a TCP port (0-65535) [--port, LEARNING_SVC_PORT]")
        for name, var in _AT_LEAST_ONE.items():
            if getattr(self, name) < 1:
                raise SettingsError(f"{var} is {getattr(self, name)}: it must be at least 1")
        if self.batch_processes is not None and self.batch_processes < 0:
            raise SettingsError(f"LEARNING_SVC_BATCH_PROCESSES is {self.batch_processes}: 0 or more")
        if not 0 <= self.watch_delay <= MAX_WATCH_DELAY:
            raise SettingsError(
                f"LEARNING_SVC_WATCH_DELAY is {self.watch_delay}: seconds, 0 to {MAX_WATCH_DELAY} (a day) [--watch-delay]"
            )
        try:
            naive_timezone(self.naive_timezone)
        except ValueError as error:
            raise SettingsError(f"LEARNING_SVC_NAIVE_TIMEZONE: {error}") from None
        if self.token is not None and (not self.token.strip() or self.token != self.token.strip()):
            raise SettingsError("LEARNING_SVC_TOKEN is blank or has spaces around it: give a long random string")
        if self.outputs_confined and self.output_root is None:
            raise SettingsError(
                "LEARNING_SVC_OUTPUTS_CONFINED serves outputs only from inside LEARNING_SVC_OUTPUT_ROOT "
                "(and the watched folders): set that too"
            )
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise SettingsError(f"the data folder {self.data_dir} is a file [--data-dir, LEARNING_SVC_DATA_DIR]")
        return self

    def with_(self, **changes) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        env = os.environ
        hosts = tuple(h.strip() for h in env.get("LEARNING_SVC_ALLOWED_HOSTS", "").split(",") if h.strip())
        base = cls(
            data_dir=Path(env.get("LEARNING_SVC_DATA_DIR", "logs/learning")),
            database_url=env.get("LEARNING_SVC_DATABASE_URL") or None,
            host=env.get("LEARNING_SVC_HOST", "127.0.0.1"),
            **_ints(env, port="LEARNING_SVC_PORT"),
            token=env.get("LEARNING_SVC_TOKEN") or None,
            output_root=Path(env["LEARNING_SVC_OUTPUT_ROOT"]) if env.get("LEARNING_SVC_OUTPUT_ROOT") else None,
            allowed_hosts=hosts,
            **_ints(
                env,
                threads="LEARNING_SVC_THREADS",
                write_threads="LEARNING_SVC_WRITE_THREADS",
                connection_limit="LEARNING_SVC_CONNECTION_LIMIT",
                idle_seconds="LEARNING_SVC_IDLE_SECONDS",
            ),
            naive_timezone=env.get("LEARNING_SVC_NAIVE_TIMEZONE") or "UTC",
            watch=tuple(Path(p) for p in env.get("LEARNING_SVC_WATCH", "").split(os.pathsep) if p.strip()),
            watch_poll=env.get("LEARNING_SVC_WATCH_POLL", "").lower() in ("1", "true", "yes"),
            outputs_confined=_switch(env, "LEARNING_SVC_OUTPUTS_CONFINED"),
            **_ints(
                env,
                probe_above="LEARNING_SVC_PROBE_ABOVE",
                watch_delay="LEARNING_SVC_WATCH_DELAY",
                facet_sample="LEARNING_SVC_FACET_SAMPLE",
                text_cache_bytes="LEARNING_SVC_TEXT_CACHE_BYTES",
                batch_processes="LEARNING_SVC_BATCH_PROCESSES",
            ),
        )
        if overrides.get("data_dir") is not None:
            overrides["data_dir"] = Path(overrides["data_dir"])
        return base.with_(**overrides)


# Settings below 1 would serve nothing (no thread ever answers) or refuse everything.
_AT_LEAST_ONE = {
    "threads": "LEARNING_SVC_THREADS",
    "write_threads": "LEARNING_SVC_WRITE_THREADS",
    "connection_limit": "LEARNING_SVC_CONNECTION_LIMIT",
    "idle_seconds": "LEARNING_SVC_IDLE_SECONDS",
    "facet_sample": "LEARNING_SVC_FACET_SAMPLE",
}


MAX_WATCH_DELAY = 86_400  # a day: longer, and an image would wait past any pipeline's job


def _switch(env, var: str) -> bool:
    """A yes/no variable; SettingsError for a word it is not (a security setting must not be
    off because it was spelled `on` or `enabled`)."""
    value = env.get(var, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise SettingsError(f"{var}={value[:40]!r}: 1 or 0 (true/false, yes/no, on/off)")


def _ints(env, **names: str) -> dict[str, int]:
    """The whole-number variables that are set; SettingsError for one that is not a number."""
    found = {}
    for field_name, var in names.items():
        if value := env.get(var, "").strip():
            try:
                found[field_name] = int(value)
            except ValueError:
                raise SettingsError(f"{var}={value!r} is not a whole number") from None
    return found


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        pass
    if name.lower() == "localhost":
        return True
    try:
        found = socket.getaddrinfo(name, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0].split("%")[0] for info in found}
    return bool(addresses) and all(ipaddress.ip_address(address).is_loopback for address in addresses)


def shown_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable)"


def _with_driver(url: str | None) -> str | None:
    """`postgres://` and `postgresql://` (what hosting providers and libpq tools write) mean
    psycopg 3, the driver learning_svc installs; SQLAlchemy alone would look for psycopg2."""
    if url:
        for scheme in ("postgres://", "postgresql://"):
            if url.startswith(scheme):
                return "postgresql+psycopg://" + url[len(scheme) :]
    return url
