"""learning-svc serve | reindex | verify | export | demo"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import click

from .config import Settings
from .osutil import shown


def _existing_folder(settings: Settings, said: str) -> Settings:
    """The settings, if their data folder exists and has been used (a journal, the lock a
    service or an import takes, the folder's id): a mistyped --data-dir exported 0 jobs (exit 0),
    and verify of an empty folder said "ok" and left an index in it."""
    from .osutil import FOLDER_ID_FILE

    if not settings.data_dir.is_dir():
        raise click.ClickException(f"no data folder {settings.data_dir}: {said} [--data-dir, LEARNING_SVC_DATA_DIR]")
    lock = settings.log_path.with_name(settings.log_path.name + ".lock")
    used = (settings.log_path, settings.ratings_path, lock, settings.data_dir / FOLDER_ID_FILE)
    if not any(path.exists() for path in used):
        raise click.ClickException(
            f"{settings.data_dir} holds no history (no {settings.log_path.name}): {said} [--data-dir, LEARNING_SVC_DATA_DIR]"
        )
    return settings


def _settings(data_dir, **overrides) -> Settings:
    """The settings of the flags and the environment; a setting that cannot work is one line, exit 1."""
    from .config import SettingsError

    try:
        return Settings.from_env(data_dir=data_dir, **overrides).check()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


@contextmanager
def _index_errors(settings: Settings):
    """A database that cannot be reached or opened (a wrong URL, password, port or database
    name) ends the command with one line on stderr and exit status 1, not a traceback."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from .osutil import IndexInUse

    try:
        yield
    except IndexInUse as error:  # a reindex and a running service on one SQLite file
        raise click.ClickException(str(error)) from None
    except DBAPIError as error:
        from .index.db import damaged_index

        reason = " ".join(str(error.orig if error.orig is not None else error).split())
        if damaged_index(error):  # `serve` and `import` make it anew themselves
            reason += "; the index is damaged: `learning-svc reindex` makes it anew from the JSONL files"
        raise click.ClickException(f"cannot use the index database {_shown(settings.db_url)}: {reason}") from None
    except ArgumentError as error:  # not a URL SQLAlchemy can use (e.g. postgres://, an unknown driver)
        reason = " ".join(str(error).split())
        raise click.ClickException(
            f"LEARNING_SVC_DATABASE_URL {_shown(settings.db_url)} is not usable: {reason}"
        ) from None


def _shown(url: str) -> str:
    """The URL without its password."""
    from .config import shown_url

    return shown_url(url)


def _reach_index(settings: Settings) -> None:
    """Connect to a server database once before any work (SQLite's file is made when missing)."""
    if not settings.database_url or settings.db_url.startswith("sqlite"):
        return
    from .index import db

    with _index_errors(settings):
        try:
            engine = db.make_engine(settings.db_url, writer=False)  # its connect timeout too
        except ModuleNotFoundError as error:  # postgresql+psycopg2://, mysql://: a driver not installed
            raise click.ClickException(
                f"LEARNING_SVC_DATABASE_URL {_shown(settings.db_url)} is not usable: its driver {error.name} is "
                "not installed (learning_svc uses PostgreSQL through psycopg 3: postgresql+psycopg://...)"
            ) from None
        try:
            engine.connect().close()
        finally:
            engine.dispose()


class LogFormatter(logging.Formatter):
    """A file name that is not UTF-8 is logged as /api/health and the import report show it
    (caf\\xe9); stderr wrote the surrogate Python holds it in (caf\\udce9)."""

    def format(self, record: logging.LogRecord) -> str:
        return shown(super().format(record))


@click.group()
@click.version_option(package_name="learning-svc", message="%(prog)s %(version)s")
def main():
    """Job history and ratings for a Stable Diffusion pipeline."""
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig, with the formatter
        handler = logging.StreamHandler()
        handler.setFormatter(LogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # "Task queue depth is 2": every thumbnail-heavy page load queues a few requests (a scale run
    # counted 88 such warnings); the 503s and timeouts that matter are logged by the service.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of the JSONL files and the index [LEARNING_SVC_DATA_DIR, logs/learning].",
)


@main.command()
@click.option("--host", default=None, help="Address to bind [LEARNING_SVC_HOST, 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [LEARNING_SVC_PORT, 8765].")
@data_dir_option
@click.option(
    "--watch",
    "watch",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Import images that appear in this folder (repeatable) [LEARNING_SVC_WATCH].",
)
@click.option(
    "--watch-delay",
    type=click.IntRange(0, 86_400),  # config.MAX_WATCH_DELAY
    default=None,
    help="Seconds a new image waits before it becomes a job of its own, so that a pipeline writing into "
    "the folder records the job naming it first [LEARNING_SVC_WATCH_DELAY, 0].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes answering on the one address (Linux, macOS; on Windows use a reverse proxy).",
)
def serve(host, port, data_dir, watch, watch_delay, workers):
    """Serve the API and the history page with waitress."""
    settings = _settings(data_dir, host=host, port=port, watch=tuple(watch) or None, watch_delay=watch_delay)
    if not settings.is_loopback and not settings.token:
        raise click.UsageError(
            f"binding to {settings.host} exposes the service to the network: "
            "set LEARNING_SVC_TOKEN (writes then need 'Authorization: Bearer <token>')"
        )
    if workers > 1 and not hasattr(os, "fork"):
        raise click.UsageError(
            "--workers needs fork (Linux, macOS): on Windows run one `learning-svc serve --port P` "
            "per process behind a reverse proxy (README: Running for a studio)"
        )
    from dataclasses import replace

    from .workers import listening_socket, supervise

    with _listen_errors(settings):  # first: a port in use made the data folder and its index all the same
        sock = listening_socket(settings.host, settings.port)
    settings = replace(settings, port=sock.getsockname()[1])
    _reach_index(settings)
    if workers == 1:
        _serve(settings, sock)
        return
    shared = None  # worker 0's watch state, for every worker's /api/health
    if settings.watch:
        shared = Path(tempfile.mkdtemp(prefix="learning-svc-workers-"))
        settings = replace(settings, watch_state=shared / "watch.json")

    def serve_one(index: int, ready) -> None:  # the folder watchers run in worker 0 only
        _serve(replace(settings, watchers=index == 0), sock, ready, quiet=True)

    def announce() -> None:
        click.echo(
            f"learning_svc serving {settings.data_dir} on {_url(settings)} with {workers} worker processes "
            f"(index: {_index_name(settings)})"
        )
        _token_hint(settings)

    try:
        status = supervise(workers, serve_one, announce)  # the workers end in os._exit, never here
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    sys.exit(status)


def _index_name(settings: Settings) -> str:
    if settings.db_url.startswith("sqlite"):
        return f"SQLite {settings.index_path}"
    return f"PostgreSQL {_shown(settings.db_url)}"


def _url(settings: Settings) -> str:
    return f"http://{'[' + settings.host + ']' if ':' in settings.host else settings.host}:{settings.port}/"


@contextmanager
def _listen_errors(settings: Settings):
    """A port in use or an address this machine does not have: one line, exit 1."""
    try:
        yield
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}"
        ) from None


def _token_hint(settings: Settings) -> None:
    if settings.token:
        # Bound to every address (0.0.0.0): a name the page is served under (the Host check
        # refuses 0.0.0.0), the first allowed host's, else this machine's loopback.
        if settings.host in ("0.0.0.0", "::", ""):
            settings = replace(settings, host=next(iter(settings.allowed_hosts), "127.0.0.1"))
        click.echo(f"open {_url(settings)}#token=<LEARNING_SVC_TOKEN> once in the browser to let the page write")
    sys.stdout.flush()  # the service now runs for long: its log file shows it is up


def _serve(settings: Settings, sock=None, ready=None, quiet: bool = False) -> None:
    """One service process: the app over the index, waitress on `sock` (else it binds its own)."""
    from . import create_app
    from .journal import DamagedJournal
    from .osutil import tune_gc
    from .serving import make_server

    try:
        with _index_errors(settings):
            app = create_app(settings)
    except DamagedJournal as error:
        click.echo(
            f"refusing to start: {error}\n"
            f"to go on: stop every process using {settings.data_dir}, copy {error.path.name} aside, then mend line "
            f"{error.line_no} in the file or delete that line (nothing else in it is lost; the index follows at the "
            "next start); `learning-svc verify` lists every damaged line",
            err=True,
        )
        sys.exit(1)
    with _listen_errors(settings):
        server = make_server(app, settings, sock=sock)
    if not quiet:
        click.echo(f"learning_svc serving {settings.data_dir} on {_url(settings)} (index: {_index_name(settings)})")
        _token_hint(settings)
    tune_gc()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)  # `kill`, a service manager: stop as Ctrl-C does
    if ready is not None:
        ready()
    try:
        server.run()
    finally:
        server.task_dispatcher.shutdown()
        app.extensions["learning_svc"].close()


def _stop_on_sigterm(_signum, _frame):
    """Closes the service as Ctrl-C does: its follower indexes what it holds, its batch
    validation processes end, the index is closed."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


@main.command()
@data_dir_option
def reindex(data_dir):
    """Rebuild the index from the JSONL files (beside the old one, swapped in when complete)."""
    from tqdm import tqdm

    from .index.sync import EmptyTakeover, RebuildRunning, rebuild
    from .journal import DamagedJournal, Journal
    from .osutil import data_folder_id, tune_gc

    settings = _existing_folder(_settings(data_dir), "nothing to reindex")  # not made: its id, to index nothing
    _reach_index(settings)  # before the progress bar: a wrong URL is then one line
    tune_gc()
    log_journal, ratings_journal = Journal(settings.log_path), Journal(settings.ratings_path)
    total = log_journal.size() + ratings_journal.size()
    index_path = None if settings.database_url else settings.index_path
    if index_path is not None:  # a running service: one line, before the progress bar
        from .osutil import hold_index_file

        with _index_errors(settings):
            held = hold_index_file(index_path, exclusive=True)
        if held is not None:
            os.close(held)
    try:
        with (
            _index_errors(settings),
            tqdm(total=total, unit="B", unit_scale=True, desc="reindex", file=sys.stderr) as bar,
        ):
            folder = data_folder_id(settings.data_dir) if index_path is None else None  # a server database's
            report = rebuild(settings.db_url, log_journal, ratings_journal, index_path, bar.update, folder)
    except (DamagedJournal, RebuildRunning, EmptyTakeover) as error:
        raise click.ClickException(f"reindex stopped, the old index is unchanged: {error}") from None
    except click.ClickException as error:  # the database went away half-way (_index_errors)
        raise click.ClickException(f"reindex stopped, the old index is unchanged: {error.message}") from None
    click.echo(
        f"indexed {report.jobs - report.amendments} job lines ({report.duplicates} duplicates skipped), "
        f"{report.amendments} amendments and {report.ratings} rating lines into {index_path or settings.shown_db_url}"
    )
    for torn in report.torn:  # health's torn_tails_moved is the running service's: said here too
        click.echo(
            f"a cut last line was moved aside into {torn.name} (written while the process appending it stopped, "
            "or a copy taken mid-append): see README, Backups"
        )


@main.command()
@data_dir_option
def verify(data_dir):
    """Check that the index agrees with the JSONL files; exit 1 and say what differs if not."""
    from .verify import verify_index

    settings = _existing_folder(_settings(data_dir), "nothing to verify")
    _reach_index(settings)
    with _index_errors(settings):
        problems = verify_index(settings)
    for problem in problems:
        click.echo(problem)
    if problems:
        sys.exit(1)
    click.echo("ok: the index agrees with the JSONL files")


@main.command()
@data_dir_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="jsonl: each stored record with its rating, review and amendments; csv: a row per job.",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default="-", help="File to write [standard output].")
@click.argument("filters", nargs=-1)
def export(data_dir, fmt, output, filters):
    """Export matching jobs; FILTERS are name=value pairs as in GET /api/jobs (e.g. sampler='DPM++ 2M')."""
    from .exporting import export_to
    from .params import BadQuery, ExportParams, parse

    params: dict[str, list[str]] = {}
    for item in filters:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"filter {item!r} is not name=value")
        if name in ("format", "limit", "cursor"):  # the query's own words, not filters (format=csv was ignored)
            hint = "--format" if name == "format" else "nothing: every matching job is exported"
            raise click.UsageError(f"{name!r} is not a filter here; use {hint}")
        params.setdefault(name, []).append(value)
    known = sorted(set(ExportParams.model_fields) - {"format", "limit", "cursor"})
    if unknown := sorted(set(params) - set(known)):  # the API's list of known names has format too
        raise click.UsageError(f"filter {unknown[0]}: unknown parameter (known: {', '.join(known)})")
    try:  # before the output file is made
        parse(ExportParams, {**params, "format": [fmt]})
    except BadQuery as error:
        raise click.UsageError(f"filter {error}") from None
    settings = _existing_folder(_settings(data_dir), "nothing to export")  # before the output file is made
    _reach_index(settings)
    with click.open_file(output, "wb") as out, _index_errors(settings):
        count = export_to(settings, params, fmt, out)
    click.echo(f"exported {count:,} job{'' if count == 1 else 's'}", err=True)


@main.command("import")
@data_dir_option
@click.option("--dry-run", is_flag=True, help="Read and check everything, write nothing: what would be imported.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def import_(data_dir, dry_run, paths):
    """Bring existing history in: folders of images from any UI (A1111, Forge, SD.Next, ComfyUI,
    SwarmUI, InvokeAI, Fooocus, NovelAI: PNG, JPEG, WEBP, recursively), StableNew's files
    (data/job_history.jsonl, learning records, discovered experiments), a learning_svc JSONL
    export, or a JSONL file of job records as POST /api/jobs takes them. PATHS are files or folders."""
    from tqdm import tqdm

    from .importers.run import run_import, table
    from .osutil import tune_gc
    from .service import Unavailable

    missing = [str(path) for path in paths if not path.exists()]
    if missing:  # a typo: say so before anything is read or written
        raise click.UsageError(f"no such file or folder: {', '.join(missing)} (nothing imported)")
    settings = _settings(data_dir)
    new_store = not dry_run and not settings.log_path.exists()
    _reach_index(settings)
    tune_gc()
    with _index_errors(settings), tqdm(unit=" entries", desc="import", file=sys.stderr) as bar:
        try:
            result = run_import(settings, list(paths), dry_run, bar.update)
        except Unavailable as error:
            raise click.ClickException(f"the import stopped: {error}") from error
    click.echo(table(result.tally))
    total = result.tally.total()
    verb = "would be" if dry_run else "was" if total["imported"] == 1 else "were"
    kinds, moved = result.tally.imported, result.tally.moved
    click.echo(
        f"\n{_counted(total['read'], 'entry', 'entries')} read in {result.seconds:.1f} s; "
        f"{total['imported']:,} {verb} imported "
        f"({_counted(kinds['jobs'], 'job')}, {_counted(kinds['ratings'], 'rating')}{_reviews_said(kinds)}), "
        f"{total['already present']:,} already present"
        + (
            f" ({_counted(result.tally.outputs_of_jobs, 'image')} that recorded jobs name as their outputs)"
            if result.tally.outputs_of_jobs
            else ""
        )
        + (
            f", {total['amended'] - moved:,} {'would be ' if dry_run else ''}amended with what they lacked"
            if total["amended"] - moved
            else ""
        )
        + (f", {moved:,} {'would be ' if dry_run else ''}moved to where their image is now" if moved else "")
        + f"{' (nothing recorded)' if dry_run else ''}."
    )
    click.echo(f"data folder: {settings.data_dir.resolve()}")
    if new_store and total["imported"] and not _served_here(settings):
        click.echo(
            "  (new: it held no history before. If your service serves another folder, it does not see these\n"
            "   jobs: give that folder with --data-dir or LEARNING_SVC_DATA_DIR.)"
        )
    if result.report:
        click.echo(
            f"refused and skipped entries (and what amended ones left out), with their reasons: {result.report.resolve()}"
        )
    elif result.tally.problems:  # a dry run: no report file
        problems = result.tally.problems
        click.echo("refused and skipped entries (and what amended ones left out), with their reasons:")
        for problem in problems[:DRY_RUN_PROBLEMS]:  # all of them were 5,000 lines for a big folder
            where = problem["file"] + (f":{problem['line']}" if problem["line"] else "")
            click.echo(f"  {where}: {problem['outcome']}: {problem['reason']}")
        if len(problems) > DRY_RUN_PROBLEMS:
            click.echo(
                f"  … and {len(problems) - DRY_RUN_PROBLEMS:,} more (the table counts them by file; "
                "the import itself writes each to a report file)"
            )
    if total["read"] and not (total["imported"] + total["already present"] + total["amended"]):
        click.echo("nothing was imported: every entry was refused or skipped", err=True)
        sys.exit(1)  # a script can tell (a file this importer does not know said exit 0)


DRY_RUN_PROBLEMS = 20  # the problems a dry run lists


def _served_here(settings: Settings) -> bool:
    """Whether a service has this folder's SQLite index open (it then sees the imported jobs)."""
    from .osutil import IndexInUse, hold_index_file

    if settings.database_url:
        return False  # not known: the note stays
    try:
        held = hold_index_file(settings.index_path, exclusive=True)
    except IndexInUse:
        return True
    if held is not None:
        os.close(held)
    return False


def _reviews_said(kinds) -> str:
    return f", {_counted(kinds['reviews'], 'review')}" if kinds["reviews"] else ""


def _counted(n: int, word: str, words: str | None = None) -> str:
    """`1 job`, `2 jobs` (it said "1 were imported (1 jobs, ...)")."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default="logs/demo", show_default=True)
@click.option("--jobs", "count", type=click.IntRange(min=1), default=120, show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=None)
@click.option("--no-serve", is_flag=True, help="Only load the demo data.")
def demo(data_dir, count, port, no_serve):
    """Load realistic sample jobs with placeholder images into a demo data dir, then serve it."""
    from .demo import load_demo

    settings = _settings(data_dir, output_root=Path(data_dir) / "outputs", port=port)
    _reach_index(settings)
    with _index_errors(settings):  # a wrong URL, another folder's database: one line, not a traceback
        n = load_demo(settings, count)
    click.echo(f"loaded {n} demo jobs into {settings.data_dir}" if n else f"demo jobs already in {settings.data_dir}")
    if not no_serve:
        import os

        os.environ["LEARNING_SVC_OUTPUT_ROOT"] = str(settings.output_root)
        serve.main(["--data-dir", data_dir] + (["--port", str(port)] if port else []), standalone_mode=True)


if __name__ == "__main__":
    main()
