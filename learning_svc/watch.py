"""`serve --watch DIR`: images that appear in a folder are imported as they are written.

watchdog reports changes (inotify, FSEvents, ReadDirectoryChangesW; its polling observer
where those fail or for `LEARNING_SVC_WATCH_POLL`). A changed file waits until it has not
changed for SETTLE seconds and is a complete image (a UI still writing it is not), then is
imported through the service like any import (the same job for the same image, whatever
its path). A folder that is not there (a disk not mounted, a network share gone) is looked
for again every RETRY seconds, and swept once when it comes back, so nothing written
meanwhile is missed; so is one replaced by another of the same name (deleted and made again,
a share mounted anew): its observer was watching the old one. Nothing here stops the service.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from watchdog.events import FileSystemEventHandler

from .importers import Job, Problem, images, in_data_folder_cache
from .osutil import shown

log = logging.getLogger(__name__)
SETTLE = 0.4  # seconds without a change before a file is read
TICK = 0.1
RETRY = 3.0  # seconds between looks for a folder that is not there
GIVE_UP = 30.0  # a file still incomplete after this long is reported, not waited for any more
QUIET = 5.0  # ... or once it has not changed for this long: nothing is writing it (a damaged file)
SAID_ONE_BY_ONE = 10  # images found to be recorded jobs' outputs at one look, each logged; more: a count


def published_state(path: Path) -> list[dict]:
    """The watch state worker 0 published (FolderWatcher._publish), for another worker's health."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return []  # worker 0's watcher has not ticked yet


@dataclass
class Folder:
    path: Path
    state: str = "starting"  # "watching" | "polling" | "missing"
    observer: object | None = None
    imported: int = 0
    problems: list[str] = field(default_factory=list)  # the latest few
    last_look: float = 0.0
    identity: tuple[int, int] | None = None  # (device, inode) of the folder its observer watches
    seen_instead: tuple[int, int] | None = None  # another identity, seen at the last look

    def describe(self, delay: float = 0) -> dict:
        return {
            "folder": str(self.path),
            "state": self.state,
            "imported": self.imported,
            "delay_seconds": delay,  # LEARNING_SVC_WATCH_DELAY: how long a new image waits
            "recent_problems": self.problems[-5:],
        }


class FolderWatcher:
    def __init__(
        self,
        service,
        folders: list[Path],
        output_root: Path | None,
        poll: bool = False,
        publish_to: Path | None = None,
        delay: float = 0.0,
    ):
        self.service, self.output_root, self.poll = service, output_root, poll
        self.delay = delay  # LEARNING_SVC_WATCH_DELAY: how old a file must be before it is a job of its own
        self.not_before: dict[Path, float] = {}  # path -> when (monotonic) it is old enough
        # serve --workers: the file the other workers read this watcher's state from (published_state)
        self.publish_to = publish_to
        self._published: list[dict] | None = None
        self.folders = [Folder(Path(f).expanduser()) for f in folders]
        self.pending: dict[Path, tuple[float, float]] = {}  # path -> (last change, first seen)
        self.incomplete: dict[Path, tuple[tuple[int, int], float]] = {}  # path -> ((size, mtime), since when)
        self.claimed: dict[tuple[str, str], str] = {}  # (job, output) -> the image taken as that output
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> FolderWatcher:
        self.thread = threading.Thread(target=self._run, name="learning-svc-watch", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=10)
        for folder in self.folders:
            self._unwatch(folder)

    def describe(self) -> list[dict]:
        return [folder.describe(self.delay) for folder in self.folders]

    def _publish(self) -> None:
        """Write describe() for the other workers when it changed (atomically: a reader never sees half)."""
        state = self.describe()
        if self.publish_to is None or state == self._published:
            return
        scratch = self.publish_to.with_name(self.publish_to.name + ".new")
        scratch.write_bytes(orjson.dumps(state))
        os.replace(scratch, self.publish_to)
        self._published = state

    # -- watchdog's side: note what changed
    def changed(self, path: str) -> None:
        candidate = Path(path)
        if images.is_image(candidate) and not in_data_folder_cache(candidate):
            now = time.monotonic()
            with self.lock:
                first = self.pending.get(candidate, (now, now))[1]
                self.pending[candidate] = (now, first)
                self.not_before.pop(candidate, None)  # written again: its wait starts over

    # -- the watcher's own thread
    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._look_after_folders()
                self._import_settled()
                self._publish()
            except Exception:  # noqa: BLE001 - the service goes on; the next tick tries again
                log.exception("watching folders failed; trying again")
            self.stopping.wait(TICK)

    def _look_after_folders(self) -> None:
        now = time.monotonic()
        for folder in self.folders:
            if now - folder.last_look < RETRY and folder.state != "starting":
                continue
            folder.last_look = now
            identity = _identity(folder.path)
            present = identity is not None
            if identity == folder.identity:
                folder.seen_instead = None
            if folder.observer is not None and not present:
                log.warning("watched folder %s is gone; looking for it every %.0f s", shown(folder.path), RETRY)
                self._unwatch(folder)
                folder.state = "missing"
            elif folder.observer is not None and identity != folder.identity and folder.identity is not None:
                # Replaced, if the next look sees the same: some file systems number a folder anew
                # when its inode leaves their cache (CIFS with noserverino, FUSE without use_ino).
                changed, folder.seen_instead = identity == folder.seen_instead, identity
                if changed:
                    log.warning(
                        "watched folder %s was replaced by another of that name; watching it", shown(folder.path)
                    )
                    self._rewatch(folder)
            elif folder.observer is not None and folder.identity is None:  # its observer saw it deleted
                log.warning("watched folder %s was deleted and made again; watching the new one", shown(folder.path))
                self._rewatch(folder)
            elif folder.observer is None and present:
                self._watch(folder)
                self._sweep(folder)  # what was written while it was away (or before we started)
            elif folder.observer is None and folder.state == "starting":
                log.warning("watched folder %s is not there; looking for it every %.0f s", shown(folder.path), RETRY)
                folder.state = "missing"

    def _rewatch(self, folder: Folder) -> None:
        """Another folder at the path: watched instead, and swept (what was written into it meanwhile)."""
        self._unwatch(folder)
        self._watch(folder)
        self._sweep(folder)

    def _watch(self, folder: Folder) -> None:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        # The folder a link names is watched, as the folder itself (watchdog neither follows the link
        # nor, told to, stays out of link loops under it): its events are said with the link's path.
        real = folder.path.resolve()
        handler = _Handler(self, folder, real)
        folder.identity, folder.seen_instead = _identity(folder.path), None  # before the observer starts
        for kind, make in (() if self.poll else (("watching", Observer),)) + (("polling", PollingObserver),):
            observer = make()
            try:
                observer.schedule(handler, str(real), recursive=True)
                observer.start()
            except OSError as error:  # inotify limits, a file system without notifications
                log.warning("cannot watch %s with %s (%s)", shown(folder.path), kind, error)
                continue
            folder.observer, folder.state = observer, kind
            log.info("watching %s for new images (%s)", shown(folder.path), kind)
            return
        folder.state = "missing"

    @staticmethod
    def _unwatch(folder: Folder) -> None:
        observer, folder.observer = folder.observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=5)
            except Exception:  # noqa: BLE001 - an observer of a folder that vanished may fail to stop
                log.debug("stopping the observer of %s failed", folder.path, exc_info=True)

    def _sweep(self, folder: Folder) -> None:
        """Everything in the folder, as if just written: at the start, and when it is back. The
        problems it had are forgotten (the files may be gone); those still there are found again."""
        now = time.monotonic()
        folder.problems = []
        with self.lock:
            for path in folder.path.rglob("*"):
                if images.is_image(path) and path not in self.pending and not in_data_folder_cache(path):
                    self.pending[path] = (now - SETTLE, now)

    def _import_settled(self) -> None:
        now = time.monotonic()
        with self.lock:
            ready = [path for path, (changed, _) in self.pending.items() if now - changed >= SETTLE]
        if self.delay:
            ready = [path for path in ready if self._old_enough(path, now)]
        if not ready:
            return
        owned = self._owned(ready)
        if owned is None:
            return  # the index is away: whose images these are is asked again at the next tick
        jobs, done = [], [path for path in ready if path in owned]  # another job's outputs: nothing to import
        for path in ready:
            if path in owned:
                continue
            item = images.image_job(path, self.output_root)
            first = self.pending[path][1]
            # still being written (an empty file: just made, its bytes to come): looked at again
            # at its next change or settle, and said to be a problem only once it stays so
            unfinished = isinstance(item, Problem) and ("truncated" in item.reason or item.reason == "empty file")
            if unfinished and self._being_written(path, now, first):
                continue
            done.append(path)
            self.incomplete.pop(path, None)
            if isinstance(item, Job):
                jobs.append(item)
            elif "cannot read it" not in item.reason or path.exists():  # a file deleted meanwhile is no problem
                self._problem(path, item.reason)
        with self.lock:
            for path in done:
                self.pending.pop(path, None)
                self.not_before.pop(path, None)
            for path in set(ready) - set(done):  # not ready yet: look again in a while
                self.pending[path] = (now, self.pending[path][1])
        if jobs:
            self._record(jobs)

    def _being_written(self, path: Path, now: float, first: float) -> bool:
        """An incomplete image is waited for while it grows or changes (QUIET), GIVE_UP at most."""
        try:
            stat = path.stat()
        except OSError:
            return False  # gone, or cannot be read: reported as image_job said
        signature = (stat.st_size, stat.st_mtime_ns)
        seen = self.incomplete.get(path)
        if seen is None or seen[0] != signature:
            self.incomplete[path] = seen = (signature, now)
        return now - seen[1] < QUIET and now - first < GIVE_UP

    def _old_enough(self, path: Path, now: float) -> bool:
        """Written at least `delay` seconds ago (by its modification time: what a sweep finds
        is old at once). Asked of the file once; a change starts the wait again."""
        if path not in self.not_before:
            try:
                age = time.time() - path.stat().st_mtime
            except OSError:
                return True  # gone, or cannot be read: image_job says which
            self.not_before[path] = now + max(0.0, self.delay - age)
        return now >= self.not_before[path]

    def _owned(self, paths: list[Path]) -> set[Path] | None:
        """The images a recorded job names as its outputs (a pipeline's job, an imported history):
        theirs, not jobs of their own. None while the index cannot answer."""
        from .service import Unavailable

        try:
            owners = self.service.output_owners([str(path.absolute()) for path in paths], self.claimed)
        except Unavailable as error:
            log.debug("cannot look up the outputs of recorded jobs yet: %s", error)
            return None
        owned = {path for path in paths if str(path.absolute()) in owners}
        if len(owned) > SAID_ONE_BY_ONE:  # a sweep of an installation's output folder: thousands, said once
            log.info("%d images are outputs of recorded jobs, not jobs of their own", len(owned))
        else:
            for path in owned:
                log.info("%s is an output of job %s, not a job of its own", shown(path), owners[str(path.absolute())])
        return owned

    def _record(self, jobs: list[Job]) -> None:
        from . import records
        from .importers.run import write_op
        from .service import Conflict

        ops, owners = [], []
        for job in jobs:
            try:  # validated as `import` does: a POST's, no larger than one (a 50 MiB text chunk was taken)
                ops.append(write_op(job, self.service.settings.max_body_bytes))
                owners.append(job)
            except records.InvalidRecord as error:
                self._problem(Path(job.where.path), str(error))
        for job, op in zip(owners, self.service.submit_many(ops, together=True)):
            folder = self._folder_of(Path(job.where.path))
            if op.error is None:
                if op.result[0] and folder:
                    folder.imported += 1
                if op.result[0] and job.note:  # what `import` reports of an image taken in (a text chunk left out)
                    log.warning("imported %s: %s", shown(Path(job.where.path)), shown(job.note))
                if folder:  # a problem it had before (an empty file since filled) is gone
                    said = f"{shown(Path(job.where.path))}: "
                    if any(p.startswith(said) for p in folder.problems):
                        log.info("imported %s, reported before: it is complete now", shown(Path(job.where.path)))
                    folder.problems = [p for p in folder.problems if not p.startswith(said)]
            elif isinstance(op.error, Conflict):  # the same image seen before elsewhere: moved here?
                self._follow(op.payload)
            else:
                self._problem(Path(job.where.path), str(op.error))

    def _follow(self, line: dict) -> None:
        """An image moved or renamed (in a watched folder, or into one): its job follows it."""
        try:
            self.service.follow_moved_image(line["job_id"], line["outputs"][0])
        except Exception as error:  # the index away, the job amended meanwhile: the next sweep tries again
            log.warning("could not follow the image of job %s to %s: %s", line["job_id"], line["outputs"][0], error)

    def _problem(self, path: Path, reason: str) -> None:
        log.warning("not importing %s: %s", shown(path), shown(reason))
        folder = self._folder_of(path)
        if folder is not None:  # a file seen again (rewritten, or at the next start) moves to the end, once
            line = f"{shown(path)}: {shown(reason)}"
            folder.problems = [*(p for p in folder.problems if p != line)][-19:] + [line]

    def look_again(self, folder: Folder) -> None:
        """The watched folder itself was deleted: look at the next tick, not RETRY seconds later,
        and watch whatever is there then anew (a folder made again may get the old one's inode)."""
        folder.identity = None
        folder.last_look = 0.0

    def _folder_of(self, path: Path) -> Folder | None:
        for folder in self.folders:
            if path == folder.path or folder.path in path.parents:
                return folder
        return None


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder at `path` (links followed); None when there is none."""
    try:
        found = path.stat()
    except (OSError, ValueError):
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISDIR(found.st_mode) else None


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher, folder: Folder, real: Path):
        super().__init__()
        self.watcher, self.folder, self.real = watcher, folder, real

    def _changed(self, path) -> None:
        """A path under the real folder, said under the watched one (its link)."""
        path = Path(os.fsdecode(path))
        if self.real != self.folder.path and (path == self.real or self.real in path.parents):
            path = self.folder.path / path.relative_to(self.real)
        self.watcher.changed(str(path))

    def on_deleted(self, event):
        if Path(os.fsdecode(event.src_path)) == self.real:  # inotify's delete-self: said as a file's
            self.watcher.look_again(self.folder)

    def on_moved(self, event):
        if not event.is_directory:
            self._changed(event.dest_path)

    def on_created(self, event):
        if not event.is_directory:
            self._changed(event.src_path)

    def on_modified(self, event):
        if not event.is_directory:
            self._changed(event.src_path)

    def on_closed(self, event):
        self._changed(event.src_path)
