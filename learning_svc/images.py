"""Output images of a job: path resolution (Windows or POSIX), thumbnails cached on disk, placeholder."""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import hashlib
import io
import itertools
import os
import re
import struct
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from stat import S_ISREG
from typing import BinaryIO

from PIL import Image, ImageDraw, UnidentifiedImageError

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}
THUMB_SIZE = 480  # shown ~210 px tall: sharp on 2x screens too
# A thumbnail decodes the whole image (but JPEG's, which draft mode reads at 1/8): up to
# Pillow's own bomb threshold (~89 MP: an 8K upscale is 67) it is made, one large image at a
# time (a 67 MP RGB decode is ~200 MB), and beyond it the tile says the image is too large.
THUMB_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
LARGE_DECODE_PIXELS = 16_000_000
# One large decode at a time, and none waited for: a request that would wait is answered at once
# (Busy: a 503 the page asks again after). Twelve 8000 x 8000 thumbnails asked for at once held
# all eight read threads behind the lock in a new-user run: /api/count took 6.9 s, and the
# browser's six connections were all waiting, so a rating waited 2.9 s.
_large_decodes = threading.Lock()
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def quiet_size_warnings() -> None:
    """Pillow warns on opening an image past MAX_IMAGE_PIXELS (and refuses past twice that); the
    size is checked here before anything is decoded (THUMB_MAX_PIXELS), so the warning only
    filled the service's log at every thumbnail. A filter for the process, set by the app
    factory: warnings.catch_warnings around each open is not safe across request threads."""
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def resolve(recorded: str, output_root: Path) -> Path | None:
    """The local file for a recorded output path, or None when it cannot be on this machine.

    Absolute paths are used as they are (Windows ones only on Windows); relative ones,
    with either separator, are resolved against the output root and may not leave it.
    """
    if _WINDOWS_ABSOLUTE.match(recorded):
        return Path(recorded) if os.name == "nt" else None
    if recorded.startswith("/"):
        return Path(recorded) if os.name != "nt" else None
    parts = PureWindowsPath(recorded).parts if "\\" in recorded else PurePosixPath(recorded).parts
    if ".." in parts:
        return None
    return output_root.joinpath(*parts)


@dataclass
class Output:
    """An output image, opened once: everything served is read from this handle."""

    file: BinaryIO
    mimetype: str
    stat: os.stat_result
    real_path: str
    # For Pillow: None, the file as it is; else the byte ranges of the file Pillow reads it
    # from (a PNG without its text chunks: _text_chunks_left_out)
    view: list[tuple[int, int]] | None = None

    def for_pillow(self) -> BinaryIO:
        """The file to decode (from its start): itself, or its view."""
        self.file.seek(0)
        return self.file if self.view is None else io.BufferedReader(_Spliced(self.file, self.view))

    @property
    def etag(self) -> str:
        """The file's state: with its ctime (moved by every write and rename), so another image
        copied over it with the same size and time (`cp -p`) is not taken for the cached one."""
        st = self.stat
        state = f"{self.real_path}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
        return hashlib.sha256(state.encode()).hexdigest()[:32]

    def close(self) -> None:
        self.file.close()


def open_output(
    recorded: str, output_root: Path, also_under: Sequence[Path] = (), confine_absolute: bool = False
) -> Output | None:
    """The recorded output opened for reading if it is an image we may serve, else None;
    Unreadable for a file that may be served but is no image (damaged, cut, another format).

    The file is opened once and that handle is checked and served (a path checked, then
    opened again, can be swapped for a symlink in between). A relative path must end up
    inside the output root once every symlink is followed; an absolute one (the pipeline
    recorded it so) may be anywhere, but must, like any output, hold an image. One not where its
    path says is looked for under the output root, then under `also_under` (the watched folders),
    and must then be inside the folder it was found in. `confine_absolute`
    (LEARNING_SVC_OUTPUTS_CONFINED): an absolute path too must lead inside the output root or a
    watched folder; one that leads elsewhere is looked for under them as a moved one is.
    """
    path, confined = resolve(recorded, output_root), not _is_absolute(recorded)
    allowed = [output_root] if confined else [output_root, *also_under] if confine_absolute else []
    mimetype = IMAGE_TYPES.get(PurePath(recorded.replace("\\", "/")).suffix.lower())
    if mimetype is None:
        return None
    try:
        if path is None:
            raise FileNotFoundError(recorded)  # another system's path: looked for under the root
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
        if allowed and not confined:  # confined: an absolute path out of the folders is looked for in them
            try:
                outside = not _inside_any(_real_path(fd, path, os.fstat(fd)), allowed)
            except OSError:
                outside = True
            if outside:
                os.close(fd)
                raise FileNotFoundError(recorded)
    except (OSError, ValueError):  # missing, no permission, a name too long for this file system
        moved = found_under((output_root, *also_under), recorded)
        if moved is None:
            return None
        (root, path), confined = moved, True
        allowed = [root]
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
        except (OSError, ValueError):
            return None
    file = os.fdopen(fd, "rb")
    try:
        stat = os.fstat(fd)
        real = _real_path(fd, path, stat)
        if not S_ISREG(stat.st_mode) or real is None:
            file.close()
            return None
        if allowed and not _inside_any(real, allowed):
            file.close()
            return None  # a symlink inside the root that leads out of it
        readable = _readable(file, stat, real)
        if readable is False:
            file.close()
            raise Unreadable(recorded)
        file.seek(0)
        return Output(file, mimetype, stat, real, None if readable is True else readable)
    except BaseException:
        file.close()
        raise


def found_under(roots: Sequence[Path], recorded: str) -> tuple[Path, Path] | None:
    """(root, file) of the first of `roots` under which under_the_root finds the output."""
    for root in roots:
        if (found := under_the_root(recorded, root)) is not None:
            return root, found
    return None


MOVED_DEPTH = 6  # how many of an absolute path's last parts are tried under the output root


def under_the_root(recorded: str, output_root: Path) -> Path | None:
    """An output that is not where its path says: another system's absolute path (a StableNew
    history from Windows, `C:\\Users\\rob\\StableNew\\output\\run\\img.png`), one not there any
    more (a folder moved), or a relative one given from another folder than the root
    (StableNew's `output\\run\\img.png` with the root at its `output` folder). The file its last
    parts name under the output root, if one is there: its folder and name first
    (`<root>/run/img.png`), then one more part at a time, then the name alone when the root is
    that folder. Served as a relative path is: inside the root once links are followed."""
    absolute = _is_absolute(recorded)
    path = (
        PureWindowsPath(recorded) if "\\" in recorded or _WINDOWS_ABSOLUTE.match(recorded) else PurePosixPath(recorded)
    )
    parts = path.parts[1:] if absolute else path.parts
    if not parts or any(part in ("..", ".") for part in parts):
        return None
    longest = min(len(parts) if absolute else len(parts) - 1, MOVED_DEPTH)  # a relative path whole was tried
    # The name alone only where the root is that folder (ComfyUI's flat output/): a file of the
    # same name in another folder is another image (as for import's claims, project.output_key).
    alone = len(parts) >= 2 and parts[-2].casefold() == output_root.name.casefold()
    tails = [parts[-depth:] for depth in [*range(2, longest + 1), *([1] if alone else [])]]
    for tail in tails:
        if _is_file(candidate := output_root.joinpath(*tail)):
            return candidate
    # Whatever the case (Windows kept `IMG.png` as the history wrote it; the copy here is `img.png`)
    for tail in ([parts] if not absolute and len(parts) <= MOVED_DEPTH else []) + tails:
        if (candidate := _casefolded(output_root, tail)) is not None:
            return candidate
    return None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for this file system, a NUL
        return False


def _casefolded(root: Path, parts: tuple[str, ...]) -> Path | None:
    """The file `parts` names under `root`, each part matched whatever its case."""
    path = root
    for part in parts:
        name = part if _exists(path / part) else _listing(path).get(part.casefold())
        if name is None:
            return None
        path = path / name
    return path if _is_file(path) else None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


LISTED_MAX = 100_000  # names of one folder looked at for a case-insensitive match


def _listing(folder: Path) -> dict[str, str]:
    """A folder's names by their case-folded form (the first of names differing only by case),
    cached while the folder is unchanged (its mtime): a page of missing thumbnails asks of the
    same few folders."""
    try:
        changed = os.stat(folder).st_mtime_ns
    except (OSError, ValueError):
        return {}
    return _listing_at(str(folder), changed)


@lru_cache(maxsize=8)  # a 20,000-file folder's names are ~3 MB
def _listing_at(folder: str, changed: int) -> dict[str, str]:
    names: dict[str, str] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in itertools.islice(entries, LISTED_MAX):
                names.setdefault(entry.name.casefold(), entry.name)
    except OSError:
        pass
    return names


def _is_absolute(recorded: str) -> bool:
    return bool(_WINDOWS_ABSOLUTE.match(recorded)) or recorded.startswith("/")


def _inside_any(real: str | None, roots: Sequence[Path]) -> bool:
    return real is not None and any(_inside(real, os.path.realpath(root)) for root in roots)


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _real_path(fd: int, path: Path, stat: os.stat_result) -> str | None:
    """Where the open file really is: asked of the handle where the system can say it."""
    if sys.platform.startswith("linux"):
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    elif sys.platform == "darwin":
        import fcntl

        try:
            return fcntl.fcntl(fd, 50, b"\0" * 1024).rstrip(b"\0").decode()  # F_GETPATH
        except OSError:
            pass
    # Elsewhere: the path's real path, if it is still this very file (same device and inode).
    real = os.path.realpath(path)
    try:
        again = os.stat(real)
    except OSError:
        return None
    return real if (again.st_dev, again.st_ino) == (stat.st_dev, stat.st_ino) else None


def thumbnail(output: Output, cache_dir: Path) -> bytes | None:
    """A JPEG at most THUMB_SIZE px on its long side, cached by the file's state (Output.etag).
    A cache that cannot be written (a full disk) only means the next one is made again."""
    cached = cache_dir / f"{output.etag}.jpg"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    rgb = _thumbnail_of(output.for_pillow())
    if rgb is None and output.view is None:  # Pillow checks text chunks after the pixels only as it decodes
        view = _text_chunks_left_out(output.file, output.stat.st_size)
        if view is not None:
            output.view = _readable_files[_state(output.stat, output.real_path)] = view  # the next time at once
            rgb = _thumbnail_of(output.for_pillow())
    if rgb is None:
        return None
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=82)
    data = out.getvalue()
    tmp = cached.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, cached)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return data


def _thumbnail_of(source: BinaryIO) -> Image.Image | None:
    """The image scaled down to THUMB_SIZE, RGB; None if Pillow cannot read it."""
    large = False
    try:
        with Image.open(source) as img:
            img.draft("RGB", (THUMB_SIZE, THUMB_SIZE))
            pixels = img.width * img.height  # after draft: what decoding it takes
            if pixels > THUMB_MAX_PIXELS:
                raise TooLarge(img.width, img.height)
            if pixels > LARGE_DECODE_PIXELS and not _large_decodes.acquire(blocking=False):
                raise Busy()
            large = pixels > LARGE_DECODE_PIXELS
            try:
                img.thumbnail((THUMB_SIZE, THUMB_SIZE))
                return img.convert("RGB")
            finally:
                if large:
                    _large_decodes.release()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    finally:
        if large:
            _give_back_memory()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_WALKED_MAX = 100_000  # chunks: a 256 MB PNG of libpng's 8 KiB IDATs has 32,768
_RANGES_MAX = 1_000  # in a view (an image has a few text chunks): a view is kept per file state


class _Spliced(io.RawIOBase):
    """A file seen as some of its byte ranges one after the other (read, never copied)."""

    def __init__(self, file: BinaryIO, ranges: list[tuple[int, int]]):
        super().__init__()
        self.file, self.ranges, self.pos = file, ranges, 0
        self.starts = list(itertools.accumulate((end - start for start, end in ranges), initial=0))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.starts[-1]}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        if self.pos >= self.starts[-1]:
            return 0
        i = bisect.bisect_right(self.starts, self.pos) - 1
        start, end = self.ranges[i]
        at = start + self.pos - self.starts[i]
        self.file.seek(at)
        got = self.file.readinto(memoryview(buffer)[: min(len(buffer), end - at)]) or 0
        self.pos += got
        return got


# What each file state was found to be (Output.etag's parts -> True: Pillow reads it; a view:
# Pillow reads it without its text chunks; False: no image): open_output checked every file
# whole at every request, a thumbnail's 503 and a retry too (0.1 s for a 243 MB PNG).
_READABLE_MAX = 20_000
_readable_files: dict[tuple, bool | list[tuple[int, int]]] = {}


def _state(stat: os.stat_result, real: str) -> tuple:
    return (real, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _readable(file: BinaryIO, stat: os.stat_result, real: str) -> bool | list[tuple[int, int]]:
    key = _state(stat, real)
    found = _readable_files.get(key)
    if found is None:
        found = _verified(file)
        if not found and (view := _text_chunks_left_out(file, stat.st_size)) is not None:
            file.seek(0)
            found = view if _verified(io.BufferedReader(_Spliced(file, view))) else False
        if len(_readable_files) >= _READABLE_MAX:
            _readable_files.clear()
        _readable_files[key] = found
    return found


def _text_chunks_left_out(file: BinaryIO, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges of a PNG without its text chunks, when it has some and its chunks are
    whole (None otherwise): Pillow refuses a PNG for a text chunk alone (its checksum wrong, or
    over Pillow's limits: a big compressed ComfyUI workflow), which browsers show and the
    importer imports; a new-user run's imported images of that kind were "cannot show this
    image" as thumbnail and in the viewer. Only chunk headers are read."""
    file.seek(0)
    if file.read(8) != PNG_SIGNATURE:
        return None
    ranges, pos, texts = [(0, 8)], 8, 0
    for _ in range(_WALKED_MAX):
        file.seek(pos)
        head = file.read(8)
        if len(head) < 8:
            return None
        length, cid = struct.unpack(">I4s", head)
        end = pos + 12 + length
        if end > size:  # a length past the file's end: cut, or damaged
            return None
        if cid in TEXT_CHUNKS:
            texts += 1
        elif ranges[-1][1] == pos:
            ranges[-1] = (ranges[-1][0], end)
        elif len(ranges) < _RANGES_MAX:
            ranges.append((pos, end))
        else:  # text chunks between thousands of others: crafted (an outside review: 8 MB held for a 1.2 MB file)
            return None
        if cid == b"IEND":
            return ranges if texts else None
        pos = end
    return None


def _verified(file: BinaryIO) -> bool:
    try:
        with Image.open(file) as img:
            img.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


class Unreadable(Exception):
    """An output file that is there, and ours to serve, but is not an image Pillow can read."""


class Busy(Exception):
    """A large image's thumbnail is being made: this one is asked for again later."""


def _libc_malloc_trim():
    try:
        trim = ctypes.CDLL(None).malloc_trim if sys.platform.startswith("linux") else None
    except (OSError, AttributeError):  # not glibc (musl has none)
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_malloc_trim = _libc_malloc_trim()


def _give_back_memory() -> None:
    """Return a large decode's freed memory to the system. glibc keeps it in the decoding
    thread's own arena, so each of the eight read threads kept up to ~250 MB: a new-user run's
    server sat idle at 869 MB after a page of 8000 x 8000 thumbnails."""
    if _malloc_trim is not None:
        _malloc_trim(0)


class Replaced(Exception):
    """An imported image's file now holds another image (a UI wrote a new one over it)."""


CONTENT_ID = re.compile(r"img-[0-9a-f]{40}")  # an imported image's job id: its content's hash (importers/images.py)


def content_job_id(sha256_hex: str) -> str:
    """The job id of an imported image, from its content's SHA-256 (hex)."""
    return "img-" + sha256_hex[:40]


_CHECKED_MAX = 20_000
_checked: dict[
    tuple, bool
] = {}  # (job, file's identity and change time) -> replaced; a file's ctime moves on any write or rename


def replaced(job_id: str, output: Output) -> bool:
    """Whether the file of an image job (its id the hash of its content) holds other content now.
    Its content is hashed once per state of the file (path, inode, size, times: ctime changes on
    every write and rename, and no tool sets it back); its time alone proved nothing, as files
    swapped by name with equal times (unzipped, `cp -p`) were served as each other's job."""
    if CONTENT_ID.fullmatch(job_id) is None:
        return False
    st = output.stat
    key = (job_id, output.real_path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    known = _checked.get(key)
    if known is None:
        known = holds_another_image(job_id, output)
        if len(_checked) >= _CHECKED_MAX:
            _checked.clear()
        _checked[key] = known
    return known


def holds_another_image(job_id: str, output: Output) -> bool:
    """Whether the file of an image job holds other content than the job's, whatever its time
    (two files swapped by name, unzipped or copied with `cp -p`, keep theirs)."""
    if CONTENT_ID.fullmatch(job_id) is None:
        return False
    output.file.seek(0)
    digest = hashlib.file_digest(output.file, "sha256").hexdigest()  # a block at a time: never the whole file
    output.file.seek(0)
    return content_job_id(digest) != job_id


class TooLarge(Exception):
    """An image with more pixels than a thumbnail decodes (THUMB_MAX_PIXELS)."""

    def __init__(self, width: int, height: int):
        super().__init__(f"{width}×{height}")
        self.width, self.height = width, height


MISSING, UNREADABLE, REPLACED = "image not found", "cannot show this image", "replaced by another image"


@lru_cache(maxsize=16)  # a few labels; "too large" ones name each image's size
def placeholder(label: str = MISSING) -> bytes:
    """A neutral dark tile with a crossed-out frame, shown for a missing, unreadable or too large output."""
    img = Image.new("RGB", (THUMB_SIZE, THUMB_SIZE), (38, 41, 48))
    draw = ImageDraw.Draw(img)
    m = THUMB_SIZE // 4
    draw.rectangle((m, m, THUMB_SIZE - m, THUMB_SIZE - m), outline=(95, 100, 112), width=4)
    draw.line((m, m, THUMB_SIZE - m, THUMB_SIZE - m), fill=(95, 100, 112), width=4)
    draw.text((m, THUMB_SIZE - m + 12), label, fill=(150, 155, 165))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
