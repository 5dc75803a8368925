"""Output images of a job: path resolution (Windows or POSIX), thumbnails cached on disk, placeholder."""

from __future__ import annotations

import hashlib
import io
import os
import re
from functools import cache
from pathlib import Path, PurePosixPath, PureWindowsPath

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
_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


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


def image_file(recorded: str, output_root: Path) -> tuple[Path, str] | None:
    """(path, mimetype) if the recorded output is a readable image file, else None."""
    path = resolve(recorded, output_root)
    if path is None:
        return None
    mimetype = IMAGE_TYPES.get(path.suffix.lower())
    try:
        if mimetype is None or not path.is_file():
            return None
    except OSError:  # e.g. a name too long for this file system: it cannot be a file here
        return None
    return path, mimetype


def thumbnail(path: Path, cache_dir: Path) -> bytes | None:
    """A JPEG at most THUMB_SIZE px on its long side, cached by path, size and mtime."""
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:40]
    cached = cache_dir / f"{key}.jpg"
    try:
        return cached.read_bytes()
    except FileNotFoundError:
        pass
    try:
        with Image.open(path) as img:
            img.draft("RGB", (THUMB_SIZE, THUMB_SIZE))
            img.thumbnail((THUMB_SIZE, THUMB_SIZE))
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return None
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=82)
    data = out.getvalue()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, cached)
    return data


def is_image(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return False


@cache
def placeholder() -> bytes:
    """A neutral dark tile with a crossed-out frame, shown for a missing or unreadable output."""
    img = Image.new("RGB", (THUMB_SIZE, THUMB_SIZE), (38, 41, 48))
    draw = ImageDraw.Draw(img)
    m = THUMB_SIZE // 4
    draw.rectangle((m, m, THUMB_SIZE - m, THUMB_SIZE - m), outline=(95, 100, 112), width=4)
    draw.line((m, m, THUMB_SIZE - m, THUMB_SIZE - m), fill=(95, 100, 112), width=4)
    draw.text((m, THUMB_SIZE - m + 12), "image not found", fill=(150, 155, 165))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
