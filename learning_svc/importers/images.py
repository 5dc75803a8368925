"""Generated images (PNG, JPEG, WEBP) from A1111, Forge, SD.Next, ComfyUI, SwarmUI, InvokeAI, Fooocus, NovelAI.

Pillow reads the metadata where each UI writes it (PNG text chunks before the pixel data;
the EXIF UserComment of a JPEG or WEBP) without decoding any pixels, and sd-parsers'
parsers read ComfyUI's graph, InvokeAI's, Fooocus' and NovelAI's formats. What they lack
is added here: A1111's infotext settings line with its quoted values (`Lora hashes`,
`TI hashes`, Civitai's `Hashes`), which sd-parsers splits apart; the model behind a
ComfyUI LoraLoader and every LoRA of the graph, values wired in from custom packs' value
nodes (_wired); InvokeAI 4/5 models; Fooocus JPEG/WEBP
(its comment is in IFD0); SwarmUI's JSON; UTF-16LE and ASCII UserComments; telling Forge, SD.Next and
Fooocus' A1111 style from A1111; and one sampler vocabulary across UIs.

A job per image: its id is the image's content hash, so the same image found again (a
second import, a copy elsewhere) is the same job. An image without metadata is imported
too (the user still wants to rate it), as generator "no metadata". A PNG with nothing
before its pixel data is looked at twice more: for text chunks after the pixel data (a
walk over the chunk headers, nothing decoded) and, when it has an alpha channel, for
"stealth" metadata in the alpha bits (NovelAI, A1111's stealth-pnginfo): the one case that
decodes pixels, and only for images up to STEALTH_MAX_PIXELS. Files that are not complete
images are reported and skipped.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import math
import os
import re
import struct
import unicodedata
import warnings
import zlib
from collections import deque
from pathlib import Path
from stat import S_ISREG
from typing import Any

import orjson
from PIL import Image, PngImagePlugin, UnidentifiedImageError
from pydantic import TypeAdapter, ValidationError

from .. import records
from ..images import PNG_SIGNATURE, TEXT_CHUNKS, content_job_id
from ..osutil import shown
from ..prompts import SCHEDULERS, sampler_name
from . import Item, Job, Problem, Where

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# What a UI writes for "no VAE of its own: the model's" (Fooocus: `Default (model)`)
MODEL_S_OWN_VAE = ("Default (model)", "None")
MAX_FILE = 256 << 20  # larger files are not images a UI wrote
# Raw text chunks kept in the record, in its JSON bytes: each (a ComfyUI workflow can be big),
# and all of them together (a record may have 1 MiB)
MAX_KEPT_TEXT = 256 << 10
MAX_KEPT_TOTAL = 512 << 10
MAX_KEPT_CHUNKS = 64  # at most this many named in the record; the rest counted in one entry
STEALTH_MAX_PIXELS = 16_777_216  # 4096 x 4096 RGBA, 64 MB decoded: larger images are not read for stealth data
STEALTH_MAX_BYTES = 1 << 20  # a stealth payload (and what it inflates to) of at most 1 MiB
NO_METADATA = "no metadata"
UNREADABLE_METADATA = "unreadable metadata"
# The chunks a UI writes its generation into (text chunks, JPEG/WEBP comments as read here).
GENERATION_KEYS = (
    "parameters",
    "prompt",
    "workflow",
    "invokeai_metadata",
    "invokeai_graph",
    "sd-metadata",
    "Dream",
    "Comment",
)
UNREADABLE = "skipped"  # a file that is not a complete image we can read: reported, no job

# ---------------------------------------------------------------- reading the file


def content_id(data: bytes) -> str:
    return content_job_id(hashlib.sha256(data).hexdigest())


def complete(data: bytes) -> bool | None:
    """Does the file hold all of its image? (a UI still writing it, or a cut copy, does not.)
    Bytes after the image's end are allowed: a phone's motion photo, a tool's trailer. None
    when it is not a PNG, JPEG or WEBP at all."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_ends(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_ends(data)
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return int.from_bytes(data[4:8], "little") + 8 <= len(data)
    return None


def _png_ends(data: bytes) -> bool:
    """Its chunks, walked by their lengths, reach a whole IEND chunk."""
    pos = 8
    while pos + 8 <= len(data):
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IEND":
            return end <= len(data)
        pos = end
    return False


def _jpeg_ends(data: bytes) -> bool:
    """Its segments, walked by their lengths up to the first scan, are followed by an end of
    image marker (not one inside an EXIF thumbnail, which a segment length steps over; the
    scan's own data never holds FF D9)."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xD9:
            return True
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
        elif marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")) >= 0
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


# ---------------------------------------------------------------- reading a file in bounded memory
# Every byte of a file is hashed (the job's id), but a PNG's or JPEG's pixel data is never held:
# what is read is its skeleton, the file without it (a PNG's runs of IDAT chunks as one empty
# IDAT, a JPEG's scan as its end marker when the file has one), which Pillow and the walks
# above read as they read the file. A text chunk too large to be read is left out of it with
# why (as png_text_capped says), so one file costs about its metadata's size, not its own.

BLOCK = 1 << 20
KEEP_CHUNK = 2 * PngImagePlugin.MAX_TEXT_CHUNK  # a larger chunk is never read whole (a text chunk: left out)
KEEP_TOTAL = 16 << 20  # the skeleton all together, headers too (real metadata is < 2 MiB)
MAX_PARTS = 1_000_000  # PNG chunks (a 256 MB PNG of libpng's 8 KiB IDATs has 32,768) or JPEG markers


class Contents:
    """What image_job reads of a file: `data` is the file itself (a WEBP, which Pillow reads
    whole) or a PNG's or JPEG's skeleton; `sha256` and `size` are of every byte of the file;
    `dropped` names the text chunks left out of a skeleton, and `trimmed` says whether any chunk
    or segment was (then Pillow would read it whole from the file: no stealth data is looked
    for); `problem` is why the file is no image to import, when it is not one."""

    def __init__(self, data: bytes, stream: _Stream, dropped: dict[str, str], trimmed=False, problem=None):
        self.data, self.sha256, self.size = data, stream.hash.hexdigest(), stream.size
        self.dropped, self.trimmed, self.problem = dropped, trimmed or bool(dropped), problem


class _Stream:
    """A file read once from its start, at most MAX_FILE + 1 bytes (a file that grew past the
    size it had when it was looked at): every byte taken or skipped is hashed and counted."""

    def __init__(self, file):
        self.file, self.hash, self.size = file, hashlib.sha256(), 0

    def take(self, n: int) -> bytes:
        data = self.file.read(max(0, min(n, MAX_FILE + 1 - self.size)))
        self.hash.update(data)
        self.size += len(data)
        return data

    def skip(self, n: int, crc: int | None = None) -> tuple[int, int | None]:
        """Read past n bytes a block at a time: (how many there were, their CRC-32 continuing
        `crc` when one is given)."""
        done = 0
        while done < n and (block := self.take(min(BLOCK, n - done))):
            done += len(block)
            crc = zlib.crc32(block, crc) if crc is not None else None
        return done, crc

    def rest(self) -> None:
        self.skip(MAX_FILE + 1)

    def find_rest(self, needle: bytes) -> bool:
        """Read to the end; whether `needle` (two bytes) is in what was left."""
        found, carry = False, b""
        while block := self.take(BLOCK):
            found = found or needle in carry + block
            carry = block[-1:]
        return found


def read_image(path: Path) -> Contents:
    """The file at `path` as image_job reads it (raises OSError)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as file:
        stream = _Stream(file)
        if not S_ISREG(os.fstat(fd).st_mode):  # made a pipe since it was looked at: never read
            return Contents(b"", stream, {}, problem="not a regular file (a pipe, socket or device)")
        head = stream.take(8)
        dropped: dict[str, str] = {}
        if head == PNG_SIGNATURE:
            data, trimmed, problem = _png_skeleton(stream, dropped)
        elif head.startswith(b"\xff\xd8"):
            data, trimmed, problem = _jpeg_skeleton(stream, head)
        elif head.startswith(b"RIFF"):  # a WEBP, read whole (Pillow's reader needs it)
            data, trimmed, problem = head + stream.take(MAX_FILE), False, None
        else:
            return Contents(head, stream, dropped, problem=_not_imported(path))
        if stream.size > MAX_FILE:
            problem = f"it grew past {MAX_FILE >> 20} MB while it was read: larger than any generated image"
    return Contents(data, stream, dropped, trimmed, problem)


def _not_imported(path: Path) -> str:
    """Why a file that is no PNG, JPEG or WEBP is not imported: what Pillow says it is, from its
    header (it reads no more to tell: a TIFF's directory at its end, by a seek)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return f"a {image.format} image; only PNG, JPEG and WEBP are imported"
    except Exception:  # noqa: BLE001 - whatever it is, it is no image Pillow knows
        return "not a PNG, JPEG or WEBP image (or a broken one)"


def _png_skeleton(stream: _Stream, dropped: dict[str, str]) -> tuple[bytes, bool, str | None]:
    """(the PNG without its pixel data (each run of IDAT chunks one empty IDAT, its checksum
    wrong if one of theirs is) nor its chunks too large to read, cut where the file is so that
    complete() says so; whether a chunk was left out; why it is no image to import, or None)."""
    out = bytearray(PNG_SIGNATURE)
    trimmed, in_pixels, parts = False, False, 0
    while len(head := stream.take(8)) == 8:
        parts += 1
        if parts > MAX_PARTS:
            stream.rest()
            return bytes(out), True, f"more than {MAX_PARTS:,} chunks: not an image a UI wrote"
        length, cid = struct.unpack(">I4s", head)
        if cid == b"IDAT":
            (done, crc), expected = stream.skip(length, zlib.crc32(cid)), stream.take(4)
            if done < length or len(expected) < 4:
                out += head  # a chunk cut short: the skeleton is too
                break
            if not in_pixels:
                out += struct.pack(">I4sI", 0, b"IDAT", zlib.crc32(b"IDAT"))
            if expected != struct.pack(">I", crc):  # a damaged critical chunk: so is the one in its place
                out[-4:] = struct.pack(">I", zlib.crc32(b"IDAT") ^ 1)
            in_pixels = True
            continue
        in_pixels = False
        critical = not cid[0] & 0x20  # IHDR, PLTE, IEND (or one a reader must know): kept, or no image
        room = KEEP_TOTAL - (0 if critical else BLOCK)  # the last MiB for the critical ones
        if length <= KEEP_CHUNK and len(out) + length + 12 <= room:
            body = stream.take(length + 4)
            out += head + body
            if cid == b"IEND" or len(body) < length + 4:
                break
            continue
        if critical:
            stream.rest()
            name = cid.decode("latin-1")
            return bytes(out), True, f"its {name!r} chunk is too large to read: not an image a UI wrote"
        first = stream.take(min(length, 80))  # a text chunk's name: at most 79 bytes and a NUL
        if stream.skip(length + 4 - len(first))[0] < length + 4 - len(first):
            out += head + first  # cut short: not a complete image
            break
        trimmed = True
        if cid in TEXT_CHUNKS:
            name = first.partition(b"\0")[0]
            if length > KEEP_CHUNK:
                size = (length - len(name) - 1) / 2**20
                why = f"{size:,.1f} MiB (a text chunk may have {PngImagePlugin.MAX_TEXT_CHUNK / 2**20:g} MiB)"
            else:
                why = f"the image's chunks are over {KEEP_TOTAL / 2**20:g} MiB together"
            dropped.setdefault(name.decode("latin-1"), f"not read: {why}")
    else:
        out += head
    stream.rest()  # what follows the image (a trailer) is hashed too
    return bytes(out), trimmed, None


def _jpeg_skeleton(stream: _Stream, head: bytes) -> tuple[bytes, bool, str | None]:
    """(the JPEG's segments walked as _jpeg_ends walks them, up to its first scan's header, then
    its end marker if the rest of the file has one, cut where the file is; False; why it is no
    image to import: over KEEP_TOTAL of segments, or MAX_PARTS markers, before its image)."""
    data = bytearray(head)

    def have(n: int) -> bool:
        if len(data) < n:
            data.extend(stream.take(n - len(data)))
        return len(data) >= n

    pos, parts = 2, 0
    while have(pos + 4) and data[pos] == 0xFF:
        parts += 1
        if parts > MAX_PARTS or len(data) > KEEP_TOTAL:
            stream.rest()
            why = (
                f"more than {KEEP_TOTAL / 2**20:g} MiB"
                if len(data) > KEEP_TOTAL
                else f"more than {MAX_PARTS:,} markers"
            )
            return bytes(data[:pos]), False, f"{why} before its image: not an image a UI wrote"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xD9:
            break
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
        else:
            end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
            if not have(end):
                break
            if marker == 0xDA:  # the scan: only whether an end marker follows it
                del data[max(end, pos + 4) :]
                return bytes(data) + (b"\xff\xd9" if stream.find_rest(b"\xff\xd9") else b""), False, None
            pos = end
    stream.rest()
    return bytes(data), False, None


def decode_usercomment(raw: Any) -> str | None:
    """An EXIF UserComment: `UNICODE\\0` + UTF-16 (big-endian as A1111 writes, little-endian as
    exiftool does on Intel files), `ASCII\\0\\0\\0` + text, or a plain string (Fooocus)."""
    if isinstance(raw, str):
        return raw.strip("\x00") or None
    if not isinstance(raw, (bytes, bytearray)) or len(raw) < 8:
        return None
    prefix, body = bytes(raw[:8]), bytes(raw[8:])
    text = utf16(body) if prefix == b"UNICODE\x00" else body.decode("utf-8", "replace")
    return text.strip("\x00") or None


def utf16(body: bytes) -> str:
    """UTF-16 text of either byte order: its BOM's, else the decoding with more ASCII (an
    infotext's settings line is ASCII; the other order turns each ASCII letter into a CJK
    character), then with fewer unassigned, private or control characters, then big-endian
    (A1111's). Guessing from the first two bytes read a prompt starting with a character
    such as 一 (U+4E00) as little-endian."""
    body = body[: len(body) // 2 * 2]  # an odd last byte is no character (it made a model "m\ufffd")
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return body[2:].decode("utf_16_be" if body[:2] == b"\xfe\xff" else "utf_16_le", "replace")
    return max((body.decode(order, "replace") for order in ("utf_16_be", "utf_16_le")), key=_plausible)


def _plausible(text: str) -> tuple[int, int]:
    ascii_ = sum(1 for c in text if " " <= c <= "~" or c in "\n\t")
    odd = sum(
        1 for c in text if c == "\ufffd" or (unicodedata.category(c) in ("Cn", "Co", "Cs", "Cc") and c not in "\n\r\t")
    )
    return ascii_, -odd


def read_chunks(data: bytes) -> tuple[str, tuple[int, int], dict[str, str]]:
    """(format, (width, height), the metadata as text chunks) without decoding pixels.

    Raises what Pillow raises for a file it will not read (not an image, a decompression
    bomb, text chunks over its limits, a broken chunk).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we never decode: only a header
        with Image.open(io.BytesIO(data)) as image:
            fmt, size = image.format, image.size
            if fmt == "PNG":
                chunks = {k: v for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)}
            elif fmt in ("JPEG", "WEBP"):
                exif = image.getexif()
                comment = decode_usercomment(exif.get_ifd(0x8769).get(0x9286)) or decode_usercomment(exif.get(0x9286))
                chunks = {"parameters": comment} if comment else {}
                scheme = exif.get(0x927C)  # Fooocus: its metadata scheme in the MakerNote
                if isinstance(scheme, bytes):
                    scheme = scheme.decode("ascii", "replace")
                if scheme in ("fooocus", "a1111"):
                    chunks["fooocus_scheme"] = scheme
            else:
                raise UnidentifiedImageError(f"a {fmt} image; only PNG, JPEG and WEBP are imported")
    return fmt, size, chunks


class TextTooLarge(ValueError):
    pass


def _inflated(data: bytes, limit: int) -> bytes:
    """zlib data inflated up to `limit` bytes (never more in memory: a bomb stops there)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit)
    if inflater.unconsumed_tail or len(out) >= limit and not inflater.eof:
        raise TextTooLarge(f"inflates past {limit / 2**20:g} MiB")
    return out


def png_text_capped(data: bytes) -> tuple[tuple[int, int], dict[str, str], dict[str, str]]:
    """A PNG's size and text chunks read one by one, each up to Pillow's limit for one text
    chunk: ((width, height), the chunks read, {name: why not} for those left out). For a PNG
    Pillow refuses whole because one text chunk (a ComfyUI workflow) or all of them together
    are too large: the image and its other chunks are still imported."""
    if len(data) < 24:
        raise UnidentifiedImageError("truncated PNG header")
    width, height = struct.unpack(">II", data[16:24])
    if width * height > 2 * Image.MAX_IMAGE_PIXELS:
        raise Image.DecompressionBombError(f"{width}x{height}")
    limit = PngImagePlugin.MAX_TEXT_CHUNK
    chunks: dict[str, str] = {}
    dropped: dict[str, str] = {}
    pos = 8
    while pos + 8 <= len(data):
        length, cid = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        pos += 12 + length
        if cid == b"IEND":
            break
        if cid not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        key, _, rest = body.partition(b"\0")
        name = key.decode("latin-1")
        if crc != struct.pack(">I", zlib.crc32(cid + body)):  # as libpng does: a damaged text is dropped
            dropped[name] = "not read: damaged (its checksum does not match)"
            continue
        try:
            if cid == b"tEXt":
                if len(rest) > limit:
                    raise TextTooLarge(f"{len(rest) / 2**20:,.1f} MiB")
                text = rest.decode("latin-1")
            elif cid == b"zTXt":
                text = _inflated(rest[1:], limit).decode("latin-1")
            else:
                compressed, rest = rest[0], rest[2:]
                rest = rest.partition(b"\0")[2].partition(b"\0")[2]  # past the language and translated key
                text = (_inflated(rest, limit) if compressed else rest[: limit + 1]).decode("utf-8")
                if len(text) > limit:
                    raise TextTooLarge(f"over {limit / 2**20:g} MiB")
        except TextTooLarge as error:
            dropped[name] = f"not read: {error} (a text chunk may have {limit / 2**20:g} MiB)"
        except (zlib.error, UnicodeDecodeError, IndexError) as error:
            dropped[name] = f"not read: {type(error).__name__}"
        else:
            chunks[name] = text
    return (width, height), chunks, dropped


def only_text_damaged(data: bytes) -> bool:
    """A PNG whose every critical chunk is whole and some ancillary chunk's checksum is wrong
    (a byte of a text chunk changed): Pillow refuses it whole, browsers show it."""
    pos, damaged = 8, False
    while pos + 12 <= len(data):
        length, cid = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length
        if end + 4 > len(data):
            return False
        if data[end : end + 4] != struct.pack(">I", zlib.crc32(data[pos + 4 : end])):
            if not cid[0] & 0x20:  # a critical chunk (upper-case first letter): a broken image
                return False
            damaged = True
        if cid == b"IEND":
            break
        pos = end + 4
    return damaged


def text_after_pixels(data: bytes, dropped: dict[str, str] | None = None) -> dict[str, str]:
    """A PNG's text chunks that come after its image data (legal; Pillow reads them only while
    decoding the pixels): Pillow's own chunk reader walks the chunk headers, and only text
    chunks are read (with its limits on text size); the image data is skipped, not inflated.
    A damaged one is named in `dropped` with why, as png_text_capped names one before them."""
    stream = PngImagePlugin.PngStream(io.BytesIO(data))
    stream.fp.seek(8)
    seen_pixels = False
    try:
        while True:
            cid, pos, length = stream.read()
            if cid == b"IEND":
                break
            text = cid in (b"tEXt", b"zTXt", b"iTXt") and seen_pixels
            if text and data[pos + length : pos + length + 4] == struct.pack(
                ">I", zlib.crc32(data[pos - 4 : pos + length])
            ):
                stream.call(cid, pos, length)  # reads the chunk's data
                stream.fp.seek(4, 1)  # its CRC
            else:  # a damaged text chunk is dropped, as one before the pixels is (png_text_capped)
                if text and dropped is not None:
                    name = data[pos : pos + min(length, 80)].partition(b"\0")[0].decode("latin-1")
                    dropped[name] = "not read: damaged (its checksum does not match)"
                seen_pixels = seen_pixels or cid == b"IDAT"
                stream.fp.seek(length + 4, 1)
    except (EOFError, SyntaxError, ValueError, struct.error, OSError):
        pass  # the rest of a broken file: what was read before stays
    finally:
        stream.close()
    return {k: str(v) for k, v in stream.im_text.items() if isinstance(k, str)}


_STEALTH_SIGNATURES = {b"stealth_pngcomp": True, b"stealth_pnginfo": False}  # -> gzip-compressed?
_LSB_AS_DIGIT = bytes(0x30 | (b & 1) for b in range(256))  # each byte -> b"0" or b"1" by its lowest bit


def stealth_text(data: bytes, pixels: Path | None = None) -> str | None:
    """The text hidden in the lowest bits of a PNG's alpha channel, column by column (NovelAI,
    A1111's stealth-pnginfo extension): a signature, a 32-bit length in bits, the payload.
    `data` is the PNG, or its skeleton (read_image) and `pixels` its file: the file is opened
    only for an image that can hold stealth data, as its skeleton says."""

    def opened(source):
        image = Image.open(source)
        ok = image.format == "PNG" and image.mode == "RGBA" and image.size[0] * image.size[1] <= STEALTH_MAX_PIXELS
        return image, ok

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image, ok = opened(io.BytesIO(data))
        if ok and pixels is not None:
            image.close()
            image, ok = opened(pixels)
        with image:
            if not ok:
                return None
            alpha = image.getchannel("A").transpose(Image.Transpose.TRANSPOSE).tobytes()  # column-major
    bits = alpha.translate(_LSB_AS_DIGIT)

    def read(start_bit: int, count: int) -> bytes:
        chunk = bits[start_bit : start_bit + 8 * count]
        return int(chunk, 2).to_bytes(count, "big") if len(chunk) == 8 * count else b""

    signature = read(0, 15)
    if signature not in _STEALTH_SIGNATURES:
        return None
    length = int.from_bytes(read(120, 4), "big") // 8
    if not 0 < length <= STEALTH_MAX_BYTES:
        return None
    payload = read(152, length)
    if not payload:
        return None
    if _STEALTH_SIGNATURES[signature]:
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip
            payload = inflater.decompress(payload, STEALTH_MAX_BYTES)
        except (zlib.error, gzip.BadGzipFile):
            return None
    return payload.decode("utf-8", "replace")


def hidden_chunks(data: bytes, dropped: dict[str, str] | None = None, pixels: Any = None) -> dict[str, str]:
    """Metadata of a PNG that has none before its pixel data: text chunks after it, else stealth
    data (its pixels read from `pixels`, the file, when `data` is its skeleton; False: not read);
    damaged text chunks after it are named in `dropped`."""
    if not data.startswith(PNG_SIGNATURE[:4]):
        return {}
    after = text_after_pixels(data, dropped)
    if after:
        return after
    try:
        text = stealth_text(data, pixels) if pixels is not False else None
    except (ValueError, OSError, EOFError, SyntaxError, struct.error, Image.DecompressionBombError):
        return {}
    if not text:
        return {}
    with contextlib.suppress(ValueError):
        decoded = json.loads(text)
        if isinstance(decoded, dict):  # NovelAI: its text chunks as JSON
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in decoded.items()}
    return {"parameters": text}  # A1111: the infotext


# ---------------------------------------------------------------- A1111 infotext (what sd-parsers splits apart)

_KEY = re.compile(r"\s*(\w[\w \-/]+):\s*(.*)", re.S)
_CIVITAI_HASHES = re.compile(r"(?:,\s*)?Hashes:\s*(\{[^{}]*\})\s*")


def param_pairs(line: str) -> list[tuple[str, str]]:
    """`Steps: 30, Sampler: DPM++ 2M, Lora hashes: "a: 1, b: 2"` -> pairs, quoted values kept whole
    (A1111's own `re_param`, but linear: its regex takes seconds on a long line without colons)."""
    pieces, buffer, quoted, escaped = [], [], False, False
    for ch in line:
        if quoted:
            buffer.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"' and "".join(buffer).rstrip().endswith(":"):
            quoted = True
            buffer.append(ch)
        elif ch == ",":
            pieces.append("".join(buffer))
            buffer = []
        else:
            buffer.append(ch)
    pieces.append("".join(buffer))
    pairs = []
    for piece in pieces:
        m = _KEY.match(piece)
        if m:
            key, value = m[1].strip(), m[2].strip()
            if len(value) > 1 and value[0] == value[-1] == '"':
                with contextlib.suppress(ValueError):
                    value = json.loads(value)
            pairs.append((key, value))
    return pairs


_TRAILING_PARAM = re.compile(r"^(?P<key>[A-Z][\w ]{0,40}):\s?(?P<value>.*)$")


def _trailing_params(lines: list[str]) -> tuple[list[str], dict]:
    """Lines after the settings line, each `Key: value` (Dynamic Prompts writes `Template:` and
    `Negative Template:` there): (the lines up to the settings line, those params). Taken as the
    last line, the settings were lost and read as the negative prompt."""
    for at in range(len(lines) - 1, max(0, len(lines) - 6), -1):  # a few lines at most
        line = lines[at]
        if len(line) <= 65536 and (pairs := param_pairs(line)) and len(pairs) >= 3 and pairs[0][0] == "Steps":
            if at == len(lines) - 1:
                return lines, {}
            return lines[: at + 1], {m["key"]: m["value"] for m in map(_TRAILING_PARAM.match, lines[at + 1 :])}
        if _TRAILING_PARAM.match(line) is None or line.startswith("Negative prompt:"):
            return lines, {}
    return lines, {}


def parse_infotext(text: str) -> dict:
    """A1111's `parameters`: prompt lines, `Negative prompt:` lines, and the settings line (and
    `Key: value` lines after it, as extensions write them)."""
    lines, trailing = _trailing_params(text.strip().split("\n"))
    *lines, last = lines
    hashes: dict = {}
    found = _CIVITAI_HASHES.search(last) if len(last) <= 65536 else None
    if found:
        try:
            hashes = json.loads(found[1])
            last = last[: found.start()] + last[found.end() :]
        except ValueError:
            pass
    params = dict(param_pairs(last)) if len(last) <= 65536 else {}
    if len(params) < 3:  # not a settings line: part of the prompt
        lines.append(last)
        params = {}
    params.update(trailing)
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.lstrip().startswith("Negative prompt:"):
            in_negative, line = True, line.lstrip()[len("Negative prompt:") :].lstrip()
        (negative if in_negative else prompt).append(line)
    return {
        "prompt": "\n".join(prompt).strip(),
        "negative": "\n".join(negative).strip(),
        "params": params,
        "hashes": hashes,
    }


def _named_hashes(value: Any) -> dict[str, str]:
    """`"add_detail: 7c6bad76eb54, lcm: 2f8f8c9c21b3"` -> {name: hash}."""
    found = {}
    for item in str(value or "").split(","):
        if ":" in item:
            name, digest = item.rsplit(":", 1)
            found[name.strip()] = digest.strip()
    return found


def _int(value: Any) -> int | None:
    """A whole number from a setting (seeds go up to 2**64 - 1: never through float)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _size(value: Any) -> tuple[int | None, int | None]:
    found = re.findall(r"\d+", str(value or ""))
    return (int(found[0]), int(found[1])) if len(found) >= 2 else (None, None)


def from_a1111(chunks: dict) -> dict:
    info = parse_infotext(chunks["parameters"])
    params = info["params"]
    version = str(params.get("Version", ""))
    generator = "AUTOMATIC1111"
    if params.get("App") == "SD.Next":
        generator = "SD.Next"
    elif chunks.get("fooocus_scheme") == "a1111" or version.startswith("Fooocus"):
        generator = "Fooocus"
    elif version.startswith("f") or "Distilled CFG Scale" in params:
        generator = "Forge"
    elif version.lower().startswith("comfyui"):  # comfy-image-saver's nodes write A1111's line too
        generator = "ComfyUI"
    sampler = params.get("Sampler")
    scheduler = params.get("Schedule type") or params.get("Scheduler")
    width, height = _size(params.get("Size"))
    found = {
        "generator": generator,
        "prompt": info["prompt"],
        "negative_prompt": info["negative"],
        "sampler": sampler,
        "scheduler": scheduler,
        "steps": _int(params.get("Steps")),
        "cfg_scale": _float(params.get("CFG scale")),
        "seed": _int(params.get("Seed")),
        "width": width,
        "height": height,
        "model": params.get("Model"),
        "model_hash": params.get("Model hash"),
        "vae": params.get("VAE"),
        "lora_hashes": _named_hashes(params.get("Lora hashes")),
        "ti_hashes": _named_hashes(params.get("TI hashes")),
        "parameters": params,
    }
    if info["hashes"]:
        found["hashes"] = info["hashes"]
    if "Lora weights" in params:  # Fooocus' A1111 style lists the weights apart
        found["lora_weights"] = {k: _float(v) for k, v in _named_hashes(params["Lora weights"]).items()}
    return found


# ---------------------------------------------------------------- the other UIs, through sd-parsers


def _parsed(parser_name: str, parameters: dict):
    """An sd-parsers parser's PromptInfo, or None (it raises more than ParserError on odd input)."""
    from sd_parsers import parsers

    try:
        return getattr(parsers, parser_name)().parse(parameters)
    except Exception:  # noqa: BLE001 - a file it cannot read is a file without metadata
        return None


def _first_sampler(info):
    return info.samplers[0] if info is not None and info.samplers else None


def _prompts(info, sampler, negative: bool) -> str | None:
    prompts = (sampler.negative_prompts if negative else sampler.prompts) if sampler else []
    text = ", ".join(p.value for p in prompts if isinstance(p.value, str) and p.value.strip())
    return text or None


def _comfy_links(prompt: dict) -> dict:
    """workflow["links"] made from the API graph, for images saved without the UI's workflow."""
    links, n = [], 0
    for target, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        for key, value in inputs.items() if isinstance(inputs, dict) else ():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)):
                n += 1
                links.append([n, str(value[0]), value[1], str(target), 0, key.upper()])
    return {"links": links}


# The inputs a value node of a custom pack keeps its value in (Seed (rgthree): seed; INTConstant,
# PrimitiveStringMultiline: value; Crystools: int, float, string; Impact's wildcards: the text
# it made), looked at after the name of the input being followed.
VALUE_INPUTS = ("value", "seed", "noise_seed", "int", "float", "number", "string", "text", "populated_text")
FOLLOW_LINKS = 8  # links followed from one input at most (a graph may loop)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))


def _source_inputs(prompt: dict, link: list) -> dict | None:
    """The inputs of the node a link comes from (None: no such node)."""
    node = prompt.get(str(link[0]))
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else None


def _wired(prompt: dict, value: Any, names: tuple[str, ...] = ()) -> Any:
    """A ComfyUI input's value: itself, or, when the input is wired to another node's output,
    the value that node holds (a seed node, a constant, a string primitive), followed while
    it is wired on. None when the value is computed (a math node, a concatenation)."""
    for _ in range(FOLLOW_LINKS):
        if isinstance(value, dict) and isinstance(value.get("content"), str):
            return value["content"]  # pysssss' loaders: {"content": name, "image": preview}
        if not _is_link(value):
            return value
        inputs = _source_inputs(prompt, value)
        if inputs is None:
            return None
        held = [inputs[k] for k in (*names, *VALUE_INPUTS) if k in inputs]
        if not held:
            scalars = [v for v in inputs.values() if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
            held = scalars if len(scalars) == 1 else [None]
        value = held[0]
    return None


def _comfy_text(prompt: dict, link: Any, side: str) -> str | None:
    """The text of a prompt the sampler's `side` input ("positive" or "negative") is wired to,
    through an encoder whose text comes from another node (sd-parsers looks for `text` strings
    only), or a loader holding both prompts (the efficiency pack's: its `side` one)."""
    inputs = _source_inputs(prompt, link) if _is_link(link) else None
    if inputs is None:
        return None
    for key in ("text", "text_g", "populated_text", "prompt", side, "string", "value"):
        text = _wired(prompt, inputs.get(key), (key,))
        if isinstance(text, str) and text.strip():
            return text.strip()
    return None


def _comfy_loras(prompt: dict, nodes: list[dict]) -> dict:
    """LoRA name -> model strength: LoraLoader and its kind (a name and strength_model), and
    rgthree's Power Lora Loader (lora_1, lora_2, ... each {on, lora, strength})."""
    loras = {}
    for inputs in nodes:
        name = _wired(prompt, inputs.get("lora_name"), ("lora_name",))
        if isinstance(name, str) and name != "None":
            strength = next((inputs[k] for k in ("strength_model", "lora_model_strength") if k in inputs), 1.0)
            loras[name] = _float(_wired(prompt, strength, ("strength_model", "lora_model_strength")))
        for key, slot in inputs.items():
            on = key.startswith("lora_") and isinstance(slot, dict) and slot.get("on")
            if on and isinstance(slot.get("lora"), str) and slot["lora"] != "None":
                loras[slot["lora"]] = _float(slot.get("strength", 1.0))
    return loras


def _node_order(node_id: str) -> tuple:
    """ComfyUI numbers nodes as they are added: the lower number first, whatever the key order
    (compared as digit strings: "²" is a digit int() refuses, and a 5,000-digit id too)."""
    if node_id.isascii() and node_id.isdecimal():
        digits = node_id.lstrip("0") or "0"
        return (0, len(digits), digits)
    return (1, 0, node_id)


class _Graph:
    """A ComfyUI API graph (the `prompt` chunk) walked along its links, so that what is read
    is what the saved image was made from, whatever order the nodes are listed in: the
    sampler that made the latent (not a refiner or a hires pass after it, nor a node left
    unconnected), the model and size wired into that sampler, the LoRAs and VAE on the way
    to the saved image."""

    def __init__(self, prompt: dict):
        self.prompt = prompt
        self.nodes = {
            str(key): node["inputs"]
            for key, node in sorted(prompt.items(), key=lambda item: _node_order(str(item[0])))
            if isinstance(node, dict) and isinstance(node.get("inputs"), dict)
        }
        self.kinds = {
            str(key): str(node.get("class_type", "")) for key, node in prompt.items() if isinstance(node, dict)
        }
        outputs = [n for n in self.nodes if any(k in self.kinds[n] for k in ("Save", "Preview"))]
        # What made the saved image: everything upstream of the output nodes (every node
        # when none is known, as in a graph saved by a custom node without one).
        self.live = set(self.upstream(outputs, include_start=True)) if outputs else set(self.nodes)
        self.outputs = outputs

    def upstream(self, starts: list[str], include_start: bool = False) -> list[str]:
        """Node ids reached from `starts` against the links, nearest first."""
        seen, queue, order = set(starts), deque(starts), list(starts) if include_start else []
        while queue:
            nid = queue.popleft()
            for value in (self.nodes.get(nid) or {}).values():
                if _is_link(value) and (src := str(value[0])) in self.nodes and src not in seen:
                    seen.add(src)
                    order.append(src)
                    queue.append(src)
        return order

    def from_input(self, nid: str, key: str) -> list[str]:
        """The nodes upstream of one input of a node, nearest first."""
        value = self.nodes.get(nid, {}).get(key)
        if not _is_link(value) or str(value[0]) not in self.nodes:
            return []
        return self.upstream([str(value[0])], include_start=True)

    def samplers(self) -> list[str]:
        return [n for n, inputs in self.nodes.items() if "latent_image" in inputs and n in self.live]

    def first_pass(self) -> str | None:
        """The sampler whose latent comes from no other sampler (the base pass), among the
        live ones; the lowest-numbered when several are."""
        samplers = self.samplers()
        return next((n for n in samplers if not self._latent_from_a_sampler(n, set(samplers))), None) or (
            samplers[0] if samplers else None
        )

    def _latent_from_a_sampler(self, nid: str, samplers: set[str]) -> bool:
        """Whether another sampler is upstream of this one's latent: a walk that stops at the
        first one (a chain of 6,000 samplers took 17 s walked whole from each)."""
        value = self.nodes[nid].get("latent_image")
        if not _is_link(value) or str(value[0]) not in self.nodes:
            return False
        seen, queue = {str(value[0])}, deque([str(value[0])])
        while queue:
            current = queue.popleft()
            if current in samplers:
                return True
            for link in self.nodes[current].values():
                if _is_link(link) and (src := str(link[0])) in self.nodes and src not in seen:
                    seen.add(src)
                    queue.append(src)
        return False

    def find(self, nodes: list[str], *keys: str) -> Any:
        """The first of `nodes` holding one of `keys`: its value, followed through links."""
        for nid in nodes:
            inputs = self.nodes[nid]
            for key in keys:
                if key in inputs and (value := _wired(self.prompt, inputs[key], (key,))) is not None:
                    return value
        return None


def _latent_size(graph: _Graph, nodes: list[str]) -> tuple[Any, Any]:
    """An empty latent's size among `nodes` (the efficiency pack's loader makes the latent itself)."""
    for nid in nodes:
        inputs = graph.nodes[nid]
        for w, h in (("width", "height"), ("empty_latent_width", "empty_latent_height")):
            if w in inputs and h in inputs:
                sizes = (_wired(graph.prompt, inputs[w], (w, "width")), _wired(graph.prompt, inputs[h], (h, "height")))
                if all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
                    return sizes
    return None, None


def from_comfyui(chunks: dict) -> dict | None:
    try:
        prompt = json.loads(chunks["prompt"])
    except ValueError:
        return None
    if not isinstance(prompt, dict):
        return None
    try:
        workflow = json.loads(chunks.get("workflow") or "null")
    except ValueError:
        workflow = None
    if not isinstance(workflow, dict) or not all(isinstance(link, list) for link in workflow.get("links") or [None]):
        workflow = _comfy_links(prompt)
    info = _parsed("ComfyUIParser", {"prompt": prompt, "workflow": workflow})
    graph = _Graph(prompt)
    live = [n for n in graph.nodes if n in graph.live]
    base = graph.first_pass()
    # The sampler's settings: its own node's, or a node with them upstream (SamplerCustomAdvanced's KSamplerSelect).
    around = graph.upstream([base], include_start=True) if base else live
    ksampler = next((graph.nodes[n] for n in around if "sampler_name" in graph.nodes[n]), None)
    ksampler = ksampler or next((graph.nodes[n] for n in live if "sampler_name" in graph.nodes[n]), {})
    sampler = None
    if info is not None and info.samplers:
        # not another sampler's (a refiner's seed and steps) when sd-parsers did not read the base's
        sampler = next((s for s in info.samplers if str(s.sampler_id) == base), None if base else info.samplers[0])
    params = dict(sampler.parameters) if sampler else {}
    if info is None and not ksampler:
        return None
    model_path = graph.from_input(base, "model") if base else []
    checkpoint = graph.find(model_path, "ckpt_name", "unet_name")
    if checkpoint is None:
        checkpoint = graph.find(live, "ckpt_name", "unet_name")
    width, height = _latent_size(graph, graph.from_input(base, "latent_image")) if base else (None, None)
    if width is None and not base:
        width, height = _latent_size(graph, live)
    vae = graph.find(graph.upstream(graph.outputs) if graph.outputs else live, "vae_name")
    # LoRAs on the way to the saved image: a loader left unconnected made nothing
    feeding = set(graph.upstream(graph.samplers(), include_start=True)) if graph.samplers() else set(live)
    lora_nodes = [graph.nodes[n] for n in live if n in feeding]

    def setting(key: str, *names: str) -> Any:
        """sd-parsers' value, else the sampler node's own, followed through links."""
        if params.get(key) is not None:
            return params[key]
        for name in names:
            if name in ksampler and (value := _wired(prompt, ksampler[name], names)) is not None:
                return value
        return None

    seed = _int(setting("seed", "seed", "noise_seed"))
    if seed is None:
        seed = _int(params.get("noise_seed"))
    prompter = graph.nodes.get(base, ksampler) if base else ksampler
    return {
        "generator": "ComfyUI",
        "prompt": _prompts(info, sampler, False) or _comfy_text(prompt, prompter.get("positive"), "positive"),
        "negative_prompt": _prompts(info, sampler, True) or _comfy_text(prompt, prompter.get("negative"), "negative"),
        "sampler": (sampler.name if sampler and isinstance(sampler.name, str) and sampler.name != "unknown" else None)
        or _text_or_none(_wired(prompt, ksampler.get("sampler_name"), ("sampler_name", "sampler"))),
        "scheduler": _text_or_none(setting("scheduler", "scheduler")),
        "steps": _int(setting("steps", "steps", "steps_total")),
        "cfg_scale": _float(setting("cfg_scale", "cfg")),
        "seed": seed if seed is None or seed >= 0 else None,  # -1: "random", the seed itself not saved
        "width": width,
        "height": height,
        "model": checkpoint if isinstance(checkpoint, str) else None,
        "vae": vae if isinstance(vae, str) else None,
        "lora_weights": _comfy_loras(prompt, lora_nodes),
        "parameters": {"samplers": [{"sampler_name": s.name, **s.parameters} for s in info.samplers] if info else []},
    }


def from_invokeai(chunks: dict) -> dict | None:
    info = _parsed("InvokeAIParser", chunks)
    if info is None:
        return None
    sampler = _first_sampler(info)
    metadata = dict(info.metadata)
    try:
        raw = json.loads(chunks.get("invokeai_metadata") or "{}")
    except ValueError:
        raw = {}
    model = raw.get("model") if isinstance(raw, dict) and isinstance(raw.get("model"), dict) else {}
    vae = metadata.get("vae") if isinstance(metadata.get("vae"), dict) else {}
    loras = {}
    for entry in metadata.get("loras") or ():
        if isinstance(entry, dict):
            lora = entry.get("model") or entry.get("lora") or {}
            name = lora.get("name") or lora.get("model_name") if isinstance(lora, dict) else None
            if isinstance(name, str):
                loras[name] = _float(entry.get("weight", 1.0))
    params = sampler.parameters if sampler else {}
    return {
        "generator": "InvokeAI",
        "prompt": _prompts(info, sampler, False),
        "negative_prompt": _prompts(info, sampler, True),
        "sampler": sampler.name if sampler else None,
        "steps": _int(params.get("steps")),
        "cfg_scale": _float(params.get("cfg_scale")),
        "seed": _int(params.get("seed")),
        "width": _int(metadata.get("width")),
        "height": _int(metadata.get("height")),
        "model": (sampler.model.name if sampler and sampler.model else None) or model.get("name"),
        "model_hash": (sampler.model.hash if sampler and sampler.model else None) or model.get("hash"),
        "vae": vae.get("name") or vae.get("model_name"),
        "lora_weights": loras,
        "parameters": {
            **({"sampler": sampler.name} if sampler else {}),  # the UI's own name (`dpmpp_2m_k`), as written
            **params,
            **{k: v for k, v in metadata.items() if k not in ("loras",)},
        },
    }


def from_fooocus(chunks: dict) -> dict | None:
    info = _parsed("FooocusParser", {"parameters": chunks["parameters"]})
    sampler = _first_sampler(info)
    if sampler is None:
        return None
    metadata = dict(info.metadata)
    width, height = _size(metadata.get("resolution"))
    loras = {
        entry[0]: _float(entry[1])
        for entry in metadata.get("loras") or ()
        if isinstance(entry, (list, tuple)) and len(entry) >= 2 and isinstance(entry[0], str)
    }
    return {
        "generator": "Fooocus",
        "prompt": _prompts(info, sampler, False),
        "negative_prompt": _prompts(info, sampler, True),
        "sampler": sampler.name,
        "scheduler": sampler.parameters.get("scheduler"),
        "steps": _int(sampler.parameters.get("steps")),
        "cfg_scale": _float(sampler.parameters.get("cfg_scale")),
        "seed": _int(sampler.parameters.get("seed")),
        "width": width,
        "height": height,
        "model": sampler.model.name if sampler.model else None,
        "model_hash": sampler.model.hash if sampler.model else None,
        "vae": metadata.get("vae") if isinstance(metadata.get("vae"), str) else None,
        "lora_weights": loras,
        "parameters": {**sampler.parameters, **metadata},
    }


_SWARM_EMBED = re.compile(r"<\s*embed\s*:\s*([^<>:]+?)\s*>", re.IGNORECASE)


def _listed(value: Any) -> list:
    """A SwarmUI list value: a JSON list or a comma-separated string."""
    if isinstance(value, list):
        return value
    return [part.strip() for part in value.split(",")] if isinstance(value, str) and value.strip() else []


def from_swarmui(chunks: dict) -> dict | None:
    """SwarmUI's JSON (its docs, "Image Metadata Format"): `sui_image_params` with lower-case
    parameter ids whose values may be strings ("7.0"), lists or comma-separated strings;
    `sui_models` names the models with their hashes; `sui_extra_data` the extras."""
    try:
        metadata = json.loads(chunks["parameters"])
    except ValueError:
        return None
    params = metadata.get("sui_image_params") if isinstance(metadata, dict) else None
    if not isinstance(params, dict):
        return None
    models = [m for m in metadata.get("sui_models") or () if isinstance(m, dict)]
    model_hash = next(
        (m.get("hash") for m in models if m.get("param") == "model" and isinstance(m.get("hash"), str)), None
    )
    names, weights = _listed(params.get("loras")), _listed(params.get("loraweights"))
    loras = {
        name: _float(weights[i]) if i < len(weights) and _float(weights[i]) is not None else 1.0
        for i, name in enumerate(names)
        if isinstance(name, str) and name
    }
    text = lambda key: params[key] if isinstance(params.get(key), str) and params[key].strip() else None  # noqa: E731
    extra = metadata.get("sui_extra_data")
    # SwarmUI's prompt syntax names an embedding `<embed:name>`, a form the service's own
    # detection (SPEC 1.3) does not know: named here, as A1111's TI hashes are.
    embedded = [m for key in ("prompt", "negativeprompt") for m in _SWARM_EMBED.findall(text(key) or "")]
    return {
        "generator": "SwarmUI",
        "embedding_names": [Path(name).stem if name.endswith(".safetensors") else name for name in embedded],
        "prompt": text("prompt"),
        "negative_prompt": text("negativeprompt"),
        "sampler": text("sampler"),
        "scheduler": text("scheduler"),
        "steps": _int(params.get("steps")),
        "cfg_scale": _float(params.get("cfgscale")),
        "seed": _int(params.get("seed")),
        "width": _int(params.get("width")),
        "height": _int(params.get("height")),
        "model": text("model"),
        "model_hash": model_hash.removeprefix("0x") if model_hash else None,
        "vae": text("vae"),
        "lora_weights": loras,
        "parameters": {**params, **({"sui_extra_data": extra} if isinstance(extra, dict) else {})},
    }


def from_novelai(chunks: dict) -> dict | None:
    info = _parsed("NovelAIParser", {"Source": "", **chunks})
    sampler = _first_sampler(info)
    if sampler is None:
        return None
    metadata = dict(info.metadata)
    return {
        "generator": "NovelAI",
        "prompt": _prompts(info, sampler, False),
        "negative_prompt": _prompts(info, sampler, True),
        "sampler": sampler.name,
        "scheduler": metadata.get("noise_schedule"),
        "steps": _int(metadata.get("steps")),
        "cfg_scale": _float(sampler.parameters.get("cfg_scale")),
        "seed": _int(sampler.parameters.get("seed")),
        "width": _int(metadata.get("width")),
        "height": _int(metadata.get("height")),
        "model": sampler.model.name if sampler.model else None,
        "model_hash": sampler.model.hash if sampler.model else None,
        "parameters": {"sampler": sampler.name, **sampler.parameters, **metadata},  # its own name: `k_euler`
    }


def read_metadata(chunks: dict) -> tuple[dict | None, str | None]:
    """(parse_chunks' answer, None), or (None, why) when reading raised: one image's odd
    metadata (JSON nested 100,000 deep, a graph node of the wrong shape) is a line of the
    report, never the end of an import or of a folder's watch (it stopped both)."""
    try:
        return parse_chunks(chunks), None
    except RecursionError:
        return None, "nested too deep to read"
    except Exception as error:  # noqa: BLE001 - whatever a parser meets in a hostile file
        return None, f"{type(error).__name__}: {str(error)[:200]}"


def parse_chunks(chunks: dict) -> dict | None:
    """The generation settings in an image's metadata, or None when it has none we can read."""
    parameters = chunks.get("parameters")
    if isinstance(parameters, str) and parameters.strip():
        if '"sui_image_params"' in parameters and (found := from_swarmui(chunks)):
            return found
        if chunks.get("fooocus_scheme") == "fooocus" or parameters.lstrip().startswith("{"):
            found = from_fooocus(chunks)
            if found:
                return found
        found = from_a1111(chunks)
        if found["parameters"] or found["prompt"]:
            return found
    if "prompt" in chunks:
        found = from_comfyui(chunks)
        if found:
            return found
    if any(k in chunks for k in ("invokeai_metadata", "sd-metadata", "Dream")):
        found = from_invokeai(chunks)
        if found:
            return found
    if chunks.get("Software") == "NovelAI" or "Comment" in chunks:
        return from_novelai(chunks)
    return None


# ---------------------------------------------------------------- the job


def recorded_path(path: Path, output_root: Path | None) -> str:
    """The path a job records: relative to LEARNING_SVC_OUTPUT_ROOT when it is set and the image
    is under it (thumbnails resolve it there), else absolute. (Relative to the working directory
    when it was not set, an import typed in another folder than the service's recorded paths the
    service could not find.)"""
    absolute = path.absolute()
    try:
        return absolute.relative_to(output_root.absolute()).as_posix() if output_root else str(absolute)
    except ValueError:
        return str(absolute)


def _unchanged(path: Path, before) -> Path | bool:
    """The file again for its pixels, when it is still the one that was hashed (False if not)."""
    try:
        now = path.stat()
    except OSError:
        return False
    return path if (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns) else False


def image_job(path: Path, output_root: Path | None) -> Item:
    """The job of one image file, or the Problem that keeps it out."""
    try:
        text_path = str(path).encode("utf-8").decode("utf-8")
    except UnicodeError:
        return Problem(Where(shown(path)), "the file name is not valid UTF-8 (rename it to import it)", UNREADABLE)
    where = Where(text_path)
    try:
        stat = path.stat()
        if not S_ISREG(stat.st_mode):  # a FIFO, a socket, a device named *.png: never read (a FIFO would block)
            return Problem(where, "not a regular file (a pipe, socket or device)", UNREADABLE)
        if stat.st_size == 0:
            return Problem(where, "empty file", UNREADABLE)
        if stat.st_size > MAX_FILE:
            return Problem(where, f"{stat.st_size / 2**20:,.0f} MB: larger than any generated image", UNREADABLE)
        contents = read_image(path)
    except OSError as error:
        return Problem(where, f"cannot read it: {error.strerror or error}", UNREADABLE)
    if contents.problem:
        return Problem(where, contents.problem, UNREADABLE)
    data = contents.data
    if complete(data) is False:
        return Problem(where, "truncated: the file ends before its image does (still being written?)", UNREADABLE)
    dropped: dict[str, str] = {}
    png = data.startswith(PNG_SIGNATURE)
    try:
        try:
            fmt, (width, height), chunks = read_chunks(data)
            if png and any(len(text) > PngImagePlugin.MAX_TEXT_CHUNK for text in chunks.values()):
                # Pillow reads a plain tEXt of any size (up to 64 MiB for all of them): a 50 MiB one
                # made a 50 MiB record, refused whole; the image is imported without it, as one
                # Pillow refuses is (two of 40 MiB, a zTXt inflating past its limit)
                fmt, ((width, height), chunks, dropped) = "PNG", png_text_capped(data)
        except ValueError as error:  # Pillow's limits on text chunks: the image itself is fine
            if not (png and "text" in str(error).lower()):
                raise
            fmt, ((width, height), chunks, dropped) = "PNG", png_text_capped(data)
        except UnidentifiedImageError:  # a damaged text chunk (only that): read without it
            if not (png and only_text_damaged(data)):
                raise
            fmt, ((width, height), chunks, dropped) = "PNG", png_text_capped(data)
    except Image.DecompressionBombError:
        return Problem(
            where, "its header declares more pixels than an image may have (a decompression bomb)", UNREADABLE
        )
    except UnidentifiedImageError as error:
        reason = str(error) if "only PNG" in str(error) else "not a PNG, JPEG or WEBP image (or a broken one)"
        return Problem(where, reason, UNREADABLE)
    except (ValueError, OSError, EOFError, SyntaxError, struct.error) as error:
        return Problem(where, f"unreadable metadata ({str(error)[:200] or type(error).__name__})", UNREADABLE)
    dropped = {**contents.dropped, **dropped}  # left out of the skeleton, then by the reading
    found, failed = read_metadata(chunks)
    if found is None and not failed and fmt == "PNG":
        # Stealth data is in the pixels, read from the file again: only if it is still the file
        # hashed, and not when a chunk was left out of the skeleton (Pillow would read it whole).
        pixels = False if contents.trimmed else _unchanged(path, stat)
        if hidden := hidden_chunks(data, dropped, pixels):
            chunks = hidden
            found, failed = read_metadata(chunks)
    outputs = [recorded_path(Path(text_path), output_root)]
    body: dict[str, Any] = {
        "job_id": content_job_id(contents.sha256),
        "completed_at": stat.st_mtime,
        "outputs": outputs,
    }
    image = {"format": fmt, "width": width, "height": height, "bytes": contents.size, "sha256": contents.sha256}
    raw, unkept = kept_metadata(chunks, dropped)
    note = "; ".join(f"metadata {k!r} {why}" for k, why in list(dropped.items())[:MAX_KEPT_CHUNKS])
    if unkept:
        note = "; ".join(filter(None, [note, unkept]))
    if failed:  # kept as it is, under a generator of its own, and said in the report
        note = "; ".join(filter(None, [note, f"its metadata could not be read ({failed})"]))
    if found is None:
        unread = {k: v for k, v in raw.items() if k in GENERATION_KEYS}
        # Metadata of a UI that cannot be read (broken JSON, a ComfyUI workflow without its
        # prompt) is not "no metadata": it is kept, under a generator of its own.
        body.update(generator=UNREADABLE_METADATA if unread else NO_METADATA, width=width, height=height)
        if unread:
            body["run_config"] = {"metadata": unread}
        body["extra"] = {"image": {**image, "metadata": False}}
        note = "; ".join(filter(None, [note, *_unusable_values(body, (width, height))]))
        return Job(body, where, note=note)
    sampler, folded = sampler_name(found.get("sampler"))
    scheduler = found.get("scheduler")
    scheduler = SCHEDULERS.get(str(scheduler).lower(), scheduler) if scheduler else folded
    loras = _loras(found)
    body.update(
        {
            k: v
            for k, v in {
                "generator": found["generator"],
                "prompt": found.get("prompt"),
                "negative_prompt": found.get("negative_prompt"),
                "model": found.get("model"),
                "vae": None if found.get("vae") in MODEL_S_OWN_VAE else found.get("vae"),
                "sampler": sampler,
                "scheduler": scheduler,
                "steps": found.get("steps"),
                "cfg_scale": found.get("cfg_scale"),
                "seed": found.get("seed"),
                "width": found.get("width") or width,
                "height": found.get("height") or height,
            }.items()
            if v not in (None, "")
        }
    )
    if loras is not None:
        body["loras"] = loras
    embeddings = _embeddings(found)
    if embeddings is not None:
        body["embeddings"] = embeddings
    body["run_config"] = {
        k: v
        for k, v in {
            "generator": found["generator"],
            "model_hash": found.get("model_hash"),
            "lora_hashes": found.get("lora_hashes"),
            "ti_hashes": found.get("ti_hashes"),
            "hashes": found.get("hashes"),
            "parameters": found.get("parameters"),
            "metadata": raw,
        }.items()
        if v
    }
    body["extra"] = {"image": {**image, "metadata": True}}
    note = "; ".join(filter(None, [note, *_unusable_values(body, (width, height))]))
    return Job(body, where, note=note)


def kept_metadata(chunks: dict[str, str], dropped: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The image's raw text chunks as the record keeps them, in the file's order: each up to
    MAX_KEPT_TEXT bytes of JSON and all together up to MAX_KEPT_TOTAL (the generation's own chunks
    first in line for that room), the rest named with their size; past MAX_KEPT_CHUNKS chunks
    (a PNG of 20,000 text chunks), the others are counted in one entry. And what was left out
    for want of room, said for the report (None: nothing; one chunk over MAX_KEPT_TEXT, a large
    ComfyUI workflow, is only named with its size, as ever)."""
    room = MAX_KEPT_TOTAL
    kept: set[str] = set()
    first = [k for k in chunks if k in GENERATION_KEYS]
    named = set(first + [k for k in chunks if k not in GENERATION_KEYS][: max(0, MAX_KEPT_CHUNKS - len(first))])
    named = [k for k in chunks if k in named]  # the file's order
    # Sizes as the record's JSON has them (a CJK character is 3 bytes, a control character 6):
    # counted in characters, chunks of CJK text still made a record over 1 MiB (a code review).
    size = {k: len(orjson.dumps(chunks[k])) + len(orjson.dumps(k)) for k in named}
    for key in sorted(named, key=lambda k: k not in GENERATION_KEYS):  # stable: the file's order otherwise
        if size[key] <= MAX_KEPT_TEXT and size[key] <= room:
            kept.add(key)
            room -= size[key]
    raw = {k: chunks[k] if k in kept else f"<{len(chunks[k]):,} characters, not kept>" for k in named}
    for key, why in dropped.items():
        if len(raw) < MAX_KEPT_CHUNKS and key not in raw:  # a damaged copy of a chunk read whole: the whole one
            raw[key] = f"<{why}>"
    more = len(set(chunks) | set(dropped)) - len(raw)
    if more > 0:
        raw["…"] = f"<{more:,} more text chunks, not kept>"
    no_room = sum(1 for k in named if k not in kept and size[k] <= MAX_KEPT_TEXT)
    said = [
        f"{no_room:,} text chunks kept without their text (all together over {MAX_KEPT_TOTAL >> 10} KiB)"
        if no_room
        else "",
        f"{more:,} more text chunks not kept (a record names at most {MAX_KEPT_CHUNKS})" if more > 0 else "",
    ]
    return raw, "; ".join(filter(None, said)) or None


def _loras(found: dict) -> list[dict] | None:
    """LoRAs with weights: the prompt's `<lora:name:w>` (the service finds those itself), plus those
    only the metadata names (ComfyUI's loaders, InvokeAI, Fooocus, A1111's `Lora hashes`)."""
    from ..prompts import detect

    named = dict(found.get("lora_weights") or {})
    for name in found.get("lora_hashes") or {}:
        named.setdefault(name, None)
    detail, _ = detect(*_detail_prompts(found))
    if not named and not detail:
        return None  # the service finds the prompt's own
    detected, _ = detect(found.get("prompt"), found.get("negative_prompt"), *_detail_prompts(found))
    loras = {lora["name"].casefold(): lora for lora in detected}
    for name, weight in named.items():
        key = Path(name).stem.casefold() if name.lower().endswith((".safetensors", ".pt", ".ckpt")) else name.casefold()
        if key not in loras:
            loras[key] = {"name": name, "weight": weight if isinstance(weight, float) else 1.0}
    return list(loras.values())


def _detail_prompts(found: dict) -> list[str]:
    """A1111's other prompts, whose LoRAs the job used too: ADetailer's (each pass) and the
    hires fix's. A LoRA named only there had its weight made up (1.0) from `Lora hashes`."""
    params = found.get("parameters") if isinstance(found.get("parameters"), dict) else {}
    return [
        value
        for key, value in params.items()
        if isinstance(value, str)
        and (
            key.startswith(("ADetailer prompt", "ADetailer negative prompt"))
            or key in ("Hires prompt", "Hires negative prompt")
        )
    ]


def _embeddings(found: dict) -> list[dict] | None:
    """Embeddings the prompts name (the service finds those itself), plus those only the metadata
    names: A1111 writes a textual inversion by its bare name in the prompt, which no pattern can
    tell from a word, and lists it in `TI hashes` (Civitai's `hashes`: `embed:name`)."""
    from ..prompts import detect

    named = list(found.get("ti_hashes") or {}) + list(found.get("embedding_names") or ())
    named += [key.split(":", 1)[1] for key in found.get("hashes") or {} if key.startswith("embed:")]
    if not named:
        return None
    _, detected = detect(found.get("prompt"), found.get("negative_prompt"))
    embeddings = {embedding["name"].casefold(): embedding for embedding in detected}
    for name in named:
        embeddings.setdefault(name.casefold(), {"name": name, "weight": 1.0})
    return list(embeddings.values())


_CHECKED = ("generator", "prompt", "negative_prompt", "model", "vae", "sampler", "scheduler", "steps", "cfg_scale")
_CHECKED += ("seed", "width", "height", "loras", "embeddings")


@functools.cache
def _field(name: str) -> TypeAdapter:
    return TypeAdapter(records.JobIn.model_fields[name].annotation)


def _unusable_values(body: dict, size: tuple[int, int]) -> list[str]:
    """Values of the metadata that a record cannot have (a ComfyUI latent of width -512, a seed
    past 2^64, a model name of 600 characters) are moved to `run_config.left_out` (the width and
    height are then the file's own), not the image refused for them: what was moved, for the report."""
    said, unusable = [], {}
    for name in _CHECKED:
        if name not in body:
            continue
        try:
            _field(name).validate_python(body[name])
        except ValidationError as error:
            unusable[name] = body[name]
            said.append(f"metadata {name} {_short_value(body[name])} left out: {error.errors()[0]['msg']}")
    if "width" in unusable or "height" in unusable:  # both the file's (a size is one), if a record can have them
        unusable.update({k: body[k] for k in ("width", "height") if k in body})  # both kept as they were
    for name in unusable:
        body.pop(name, None)
    sized = "width" in unusable or "height" in unusable
    if sized and all(_valid(k, v) for k, v in zip(("width", "height"), size)):
        body["width"], body["height"] = size
    if unusable:
        # under a key of its own (as `model` in run_config it would be the record's model again),
        # JSON-safe (an integer of 2^64 and up, which the API refuses, or an infinite weight, which
        # JSON would write as null: as text)
        body.setdefault("run_config", {})["left_out"] = _json_safe(unusable)
    return said


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _valid(name: str, value: Any) -> bool:
    try:
        _field(name).validate_python(value)
    except ValidationError:
        return False
    return True


def _short_value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def is_image(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES
