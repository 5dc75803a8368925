"""The two line types of the journal: validation, defaults and resolution (SPEC §1)."""

from __future__ import annotations

import hashlib
import math
import re
import time
import unicodedata
import uuid
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import prompts

LOG_SCHEMA = "learning_log_v2"
AMEND_SCHEMA = "learning_amend_v2"  # an amendment of a recorded job, in the same file (PATCH /api/jobs/<id>)
RATING_SCHEMA = "learning_rating_v2"
MAX_DEPTH = 64
MAX_EPOCH = 99_999_999_999  # the largest timestamp (the JSON schema's maximum)
MAX_NUMBER = 2**64
# Keys of a stored line that the service writes: a record may not bring its own.
SERVICE_KEYS = ("schema", "logged_at", "input_hash", "learning_svc")


def _blank_is_absent(value: Any) -> Any:
    """StableNew (and others) write "" for "unknown": the same as leaving the key out."""
    return None if isinstance(value, str) and not value.strip() else value


def _without_blanks(value: Any) -> Any:
    return [v for v in value if not (isinstance(v, str) and not v.strip())] if isinstance(value, list) else value


def _integral(value: Any) -> Any:
    """30.0 is the integer 30 (JSON writers often cannot tell); 30.5 stays a float and is refused."""
    if isinstance(value, float) and value.is_integer() and abs(value) < MAX_NUMBER:
        return int(value)
    return value


# After a Field's bounds in an Annotated (the same validation): before them, pydantic's JSON
# schema said `ge`/`le`, which JSON Schema does not know, for minimum/maximum.
Integral = BeforeValidator(_integral)
# 0-5 stars: a rating, an image's, a sub-score. 3.0 is 3, as for every integer of a record (a
# pipeline's stars computed as floats were refused); 4.5, true and "4" are not.
Stars = Annotated[StrictInt, Field(ge=0, le=5), Integral]


# Letters and symbols that show nothing: the Hangul fillers, the Braille blank.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_JOINER = "\u200d"  # of an emoji sequence (👩‍💻): shown as one picture


def shown_as_is(text: str, what: str) -> str:
    """A job id or a tag shows what it is: something visible (not only spaces, U+200B, a lone
    combining mark, U+3164), and no invisible format characters inside (U+200B, U+200E, U+FEFF,
    a soft hyphen, the bidi controls that reorder it: "\u202eabc" reads "cba"), so that two that
    look alike are one. The joiner of an emoji sequence is fine. ValueError otherwise."""
    if text.isascii():  # most: printable (control characters are refused before)
        if text.strip():
            return text
        raise ValueError(f"{what} must show something, not only spaces")
    if not any(unicodedata.category(c)[0] not in "ZCM" and c not in _BLANKS for c in text):
        raise ValueError(f"{what} must show something, not only spaces or invisible characters")
    if any(unicodedata.category(c) == "Cf" and c != _JOINER for c in text):
        raise ValueError(f"{what} must not contain invisible format characters (U+200B, U+200E, U+202E, U+FEFF, …)")
    if _JOINER in text and _stray_joiner(text):
        raise ValueError(f"{what} must not contain a zero-width joiner (U+200D) outside an emoji or a script's letters")
    return text


def _stray_joiner(text: str) -> bool:
    """A joiner at either end, or beside an ASCII character, joins nothing that shows: "\u200dab"
    looked like "ab". Between emoji (👩‍💻) and in scripts that join letters (Devanagari, Arabic) it shows."""
    if text[0] == _JOINER or text[-1] == _JOINER:
        return True
    return any(
        c == _JOINER and (text[i - 1].isascii() or text[i + 1].isascii()) for i, c in enumerate(text[1:-1], start=1)
    )


def _job_id(value: str) -> str:
    if not 1 <= len(value) <= 128:
        raise ValueError(f"job_id must be 1 to 128 characters, got {len(value)}")
    if _BAD_JOB_ID.search(value):
        raise ValueError("job_id must not contain '/' or control characters")
    shown_as_is(value, "job_id")
    if value != value.strip():  # " padded " and "padded" were two jobs
        raise ValueError("job_id must not begin or end with spaces")
    if value in (".", ".."):
        raise ValueError("job_id must not be '.' or '..' (a browser could not open /api/jobs/..)")
    return value


def _timestamp(value: Any, info: ValidationInfo) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be epoch seconds (a number) or an ISO-8601 string")
    return to_epoch(value, (info.context or {}).get("naive_timezone"))


_BAD_JOB_ID = re.compile(r"[\x00-\x1f\x7f/]")
# The JSON schemas below only document what the validators enforce (OpenAPI, schemathesis).
JobId = Annotated[
    StrictStr,
    AfterValidator(_job_id),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[^\x00-\x1f\x7f/]+$"}),
]
_OVERRIDES = frozenset("\u202d\u202e")  # left-to-right and right-to-left override


def _no_override(value: str) -> str:
    """A name (a pack, a model, a sampler) shows its text as written: "\u202eevil pack" showed
    "kcap live" on the page. Marks and isolates of text written right to left are fine."""
    if not value.isascii() and any(c in _OVERRIDES for c in value):
        raise ValueError("must not contain a bidi override (U+202D, U+202E): it shows the text reversed")
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=512), AfterValidator(_no_override)]
OptionalName = Annotated[Name | None, BeforeValidator(_blank_is_absent)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_is_absent)]
Timestamp = Annotated[
    float,
    BeforeValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_EPOCH},
                {"type": "string", "format": "date-time"},
            ]
        }
    ),
]


class InvalidRecord(ValueError):
    """Bad input, with field-level details in `fields` ([{"loc", "msg"}])."""

    def __init__(self, message: str, fields: list[dict] | None = None):
        super().__init__(message)
        self.fields = fields or []


def _present(*names: str) -> dict:
    """JSON schema: these keys are given and not null."""
    return {"required": list(names), "properties": {n: {"not": {"type": "null"}} for n in names}}


class NamedWeight(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    name: Name
    weight: float = Field(default=1.0, allow_inf_nan=False)


class Experiment(BaseModel):
    """What a job was part of when it tested one setting (StableNew's learning experiments)."""

    model_config = ConfigDict(strict=True, extra="allow")
    name: OptionalName = None
    variable: OptionalName = Field(None, description="the setting under test, e.g. `CFG Scale`")
    value: Any = Field(None, description="this job's value of it")


class JobIn(BaseModel):
    """A completed job as the pipeline posts it (SPEC §1.1). Unknown keys are kept as given."""

    model_config = ConfigDict(
        strict=True,
        extra="allow",
        title="JobRecord",
        json_schema_extra={"anyOf": [_present("completed_at"), _present("started_at", "duration_sec")]},
    )

    job_id: JobId
    variant_index: Annotated[StrictInt, Field(ge=0), Integral] = 0
    variant_total: Annotated[StrictInt, Field(ge=1), Integral] = 1
    batch_index: Annotated[StrictInt, Field(ge=0), Integral] | None = None
    batch_total: Annotated[StrictInt, Field(ge=1), Integral] | None = None
    status: Literal["completed", "failed", "cancelled"] = "completed"
    packs: Annotated[list[Name], BeforeValidator(_without_blanks)] = []
    run_config: dict[str, Any] = {}
    randomization_plan: dict[str, Any] | None = None
    stages: dict[str, dict[str, Any]] = {}
    prompt: OptionalText = None
    negative_prompt: OptionalText = None
    model: OptionalName = None
    vae: OptionalName = None
    sampler: OptionalName = None
    scheduler: OptionalName = None
    steps: Annotated[StrictInt, Field(ge=0, le=100_000), Integral] | None = None
    cfg_scale: Annotated[float, Field(allow_inf_nan=False)] | None = None
    seed: Annotated[StrictInt, Field(ge=-1, le=MAX_NUMBER - 1), Integral] | None = None
    width: Annotated[StrictInt, Field(ge=0, le=1_000_000), Integral] | None = None
    height: Annotated[StrictInt, Field(ge=0, le=1_000_000), Integral] | None = None
    loras: list[NamedWeight] | None = None
    embeddings: list[NamedWeight] | None = None
    outputs: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=4096)]], BeforeValidator(_without_blanks)
    ] = []
    num_outputs: Annotated[StrictInt, Field(ge=0), Integral] | None = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    duration_sec: Annotated[float, Field(ge=0, le=MAX_EPOCH, allow_inf_nan=False)] | None = None
    timings: dict[str, Annotated[float, Field(allow_inf_nan=False)]] = {}
    run_id: Annotated[Annotated[str, StringConstraints(max_length=256)] | None, BeforeValidator(_blank_is_absent)] = (
        None
    )
    experiment: Experiment | None = None
    generator: OptionalName = Field(None, description="what made the image: AUTOMATIC1111, Forge, ComfyUI, ...")
    extra: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_service_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in SERVICE_KEYS:
                if key in data:
                    _fail(
                        key, f"{key} is written by the service; a record cannot set it (put your own value under extra)"
                    )
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> JobIn:
        """Rules across fields; fills completed_at / duration_sec from each other."""
        if self.variant_index >= self.variant_total:
            _fail(
                "variant_index",
                f"variant_index ({self.variant_index}) must be less than variant_total ({self.variant_total})",
            )
        if self.num_outputs is not None and self.num_outputs != len(self.outputs):
            _fail(
                "num_outputs",
                f"num_outputs ({self.num_outputs}) must equal the number of outputs ({len(self.outputs)})",
            )
        started, completed, duration = self.started_at, self.completed_at, self.duration_sec
        if completed is None:
            if started is None or duration is None:
                _fail("completed_at", "completed_at is required (or started_at together with duration_sec)")
            if started + duration > MAX_EPOCH:
                _fail("duration_sec", f"started_at + duration_sec is after the largest timestamp ({MAX_EPOCH})")
            self.completed_at = started + duration
        elif started is not None:
            elapsed = completed - started
            if elapsed < 0:
                _fail("completed_at", "completed_at is before started_at")
            if duration is None:
                self.duration_sec = elapsed
            elif abs(duration - elapsed) > 1.0:
                _fail(
                    "duration_sec",
                    f"duration_sec ({duration}) disagrees with completed_at - started_at ({elapsed:.3f})",
                )
        return self


def _fail(loc: str, msg: str):
    """A rule across fields is broken: the error names the field it is about (see _fields)."""
    raise PydanticCustomError("cross_field", "{msg}", {"loc": loc, "msg": msg})


# Who rated: "web", "api", "StableNew review", an importer's name. Printable, one line.
Source = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class RatingIn(BaseModel):
    """Body of PUT /api/jobs/<job_id>/rating."""

    model_config = ConfigDict(strict=True, extra="forbid", title="RatingRequest")
    rating: Stars
    source: Source = "api"


class RatingClear(BaseModel):
    """Optional body of DELETE /api/jobs/<job_id>/rating: the same `source` rule as a PUT."""

    model_config = ConfigDict(strict=True, extra="forbid", title="RatingClearRequest")
    source: Source = "api"


# ---------------------------------------------------------------- the summary


class LineSummary(BaseModel):
    """The listing summary of a stored line (SPEC §2.1), without the rating.

    The one definition: line_summary() builds it for the index, JobSummary adds the rating
    for the API, and the OpenAPI document describes it.
    """

    job_id: str
    status: str
    completed_at: float
    started_at: float | None
    duration_sec: float | None
    packs: list[str]
    variant_index: int
    variant_total: int
    num_outputs: int
    outputs: list[str]
    model: str | None
    vae: str | None
    sampler: str | None
    scheduler: str | None
    steps: int | None
    cfg_scale: float | None
    seed: int | None
    width: int | None
    height: int | None
    loras: list[str]
    embeddings: list[str]
    run_id: str | None
    error: str | None = Field(description="why a failed job failed (`extra.error` or `error_message`)")


class JobSummary(LineSummary):
    rating: int | None
    rated_at: float | None
    flag: Literal["pick", "reject"] | None = Field(None, description="pick or reject, from review")
    tags: list[str] = Field(default_factory=list, description="reason tags given in review")
    note: str | None = None
    scores: dict[str, int] = Field(default_factory=dict, description="sub-scores 0-5 by name")
    image_ratings: dict[str, int] = Field(default_factory=dict, description="output index -> that image's rating")


_COPIED = tuple(name for name in LineSummary.model_fields if name not in ("loras", "embeddings", "error"))


def _names(items) -> list[str]:
    return [item["name"] for item in items or () if isinstance(item, dict) and isinstance(item.get("name"), str)]


def _error(line: dict) -> str | None:
    extra = line.get("extra")
    for value in ((extra or {}).get("error") if isinstance(extra, dict) else None, line.get("error_message")):
        if isinstance(value, str) and value.strip():
            return value[:2000]
    return None


def line_summary(line: dict) -> dict:
    """The LineSummary of a stored line, as a plain dict (built for every indexed line: no validation)."""
    summary = {name: line.get(name) for name in _COPIED}
    summary["loras"] = _names(line.get("loras"))
    summary["embeddings"] = _names(line.get("embeddings"))
    summary["error"] = _error(line)
    return summary


def job_summary(line_part: dict, rating: int | None, rated_at: float | None, review: dict | None = None) -> dict:
    state = review or {}
    return {
        **line_part,
        "rating": rating,
        "rated_at": rated_at if rating is not None else None,
        "flag": state.get("flag"),
        "tags": list(state.get("tags") or ()),
        "note": state.get("note"),
        "scores": dict(state.get("scores") or {}),
        "image_ratings": dict(state.get("images") or {}),
    }


def size_text(limit: int) -> str:
    return f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit / 1024:g} KiB"


def new_job_summary(line: dict) -> dict:
    """The summary a job's line has before any rating or review."""
    return job_summary(line_summary(line), None, None)


def is_sound(line: bytes) -> bool:
    """Does a journal line parse as a JSON object? (a torn or garbage last line does not)
    A blank line is sound too: every reader skips it (a text editor's extra line end)."""
    if not line.strip():
        return True
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def to_epoch(value: float | str, naive_timezone: tzinfo | None = None) -> float:
    """Epoch seconds from a number or an ISO-8601 string. A time without a zone is UTC,
    unless `naive_timezone` says otherwise (LEARNING_SVC_NAIVE_TIMEZONE)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO-8601 timestamp: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=naive_timezone or UTC)
        value = parsed.timestamp()
        if not 0 <= value <= MAX_EPOCH:  # said of what was sent: a time, not epoch seconds
            raise ValueError(f"the time must be from 1970 to the year 5138 (UTC), not {parsed.isoformat()[:40]}")
    if isinstance(value, bool) or not math.isfinite(value) or not 0 <= value <= MAX_EPOCH:
        raise ValueError(f"timestamp must be epoch seconds from 0 to {MAX_EPOCH} (1970 to the year 5138)")
    return float(value)


# ---------------------------------------------------------------- validation


def check_json_shape(value: Any, loc: str = "", depth: int = 0) -> None:
    """Refuse what strict JSON parsers let through but the journal must not store."""
    if depth > MAX_DEPTH:
        raise InvalidRecord(
            f"nesting deeper than {MAX_DEPTH} levels", [{"loc": loc or "body", "msg": "too deeply nested"}]
        )
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidRecord(
                "strings must not contain NUL characters", [{"loc": loc or "body", "msg": "contains a NUL character"}]
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_json_shape(key, loc, depth + 1)
            check_json_shape(item, f"{loc}.{key}" if loc else key, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json_shape(item, f"{loc}[{i}]", depth + 1)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= MAX_NUMBER:
        raise InvalidRecord("numbers must be below 2**64", [{"loc": loc or "body", "msg": "number too large"}])


# A number of 20+ digits, or with a positive exponent, may reach 2**64; "\u0000" is an escaped
# NUL. The number screen reads a copy of the body in which every digit is "0", `e`/`E` are "e",
# what may stand before a number (`:`, `,`, `[`) is ",", what may end one (`,`, `]`, `}`) is ","
# or "]", JSON's whitespace is gone and every other byte is "x" (with bytes.translate the screen
# takes ~18 µs for a 4 KB record, where a regular expression took ~45 µs).
_SCREEN = bytearray(b"x" * 256)
for _byte in b"0123456789":
    _SCREEN[_byte] = ord("0")
for _byte in b"eE":
    _SCREEN[_byte] = ord("e")
for _byte in b":,[":
    _SCREEN[_byte] = ord(",")
for _byte in b"]}":
    _SCREEN[_byte] = ord("]")
for _byte in b"+-.":
    _SCREEN[_byte] = _byte
_SCREEN = bytes(_SCREEN)
_MANTISSA = frozenset(b"0.-")
_BEFORE, _DIGIT, _AFTER = ord(","), ord("0"), frozenset(b",]")
_BRACKETS_AND_STRINGS = re.compile(rb'[\[\]{}]|"(?:[^"\\]|\\.)*"')


def needs_shape_check(raw: bytes) -> bool:
    """Cheap screens of a raw JSON body: when none fires, check_json_shape cannot fail.

    Nesting deeper than MAX_DEPTH needs more than MAX_DEPTH brackets, and then their depth
    is measured (outside strings); NUL must be escaped.
    """
    if b"\\u0000" in raw or _maybe_huge_number(raw.translate(_SCREEN, b" \t\r\n")):
        return True
    return raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _depth(raw) > MAX_DEPTH


def _maybe_huge_number(screen: bytes) -> bool:
    """20 digits in a row, or a positive exponent ending a number that a `:`, `,` or `[` begins
    (in the screen's copy; a model hash `[31e35c80fc]` or an id `8e70ab` is no number)."""
    if b"0" * 20 in screen:
        return True
    for mark in (b"e0", b"e+0"):
        at = screen.find(mark)
        while at != -1:
            start, end = at, at + len(mark)
            while start > 0 and screen[start - 1] in _MANTISSA:
                start -= 1
            while end < len(screen) and screen[end] == _DIGIT:
                end += 1
            if 0 < start < at and screen[start - 1] == _BEFORE and (end == len(screen) or screen[end] in _AFTER):
                return True
            at = screen.find(mark, at + 1)
    return False


def _depth(raw: bytes) -> int:
    depth = deepest = 0
    for token in _BRACKETS_AND_STRINGS.finditer(raw):
        mark = token[0]
        if mark in (b"{", b"["):
            depth += 1
            deepest = max(deepest, depth)
        elif mark in (b"}", b"]"):
            depth -= 1
    return deepest


def loads(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity, valid UTF-8, no lone surrogates) or InvalidRecord."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        reason = str(error)
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError as bad:  # orjson said "str is not valid UTF-8: surrogates not allowed"
            reason = f"it is not UTF-8 (byte 0x{bad.object[bad.start]:02x} at offset {bad.start}); send JSON as UTF-8"
        except TypeError:  # a str: UTF-8 already
            pass
        raise InvalidRecord(f"the body is not valid JSON: {reason}", [{"loc": "body", "msg": reason}]) from None


def parse_json(model: type[BaseModel], raw: bytes, naive_timezone: tzinfo | None = None):
    """parse() of a raw JSON body, walking it for shape problems only when a screen fires."""
    return parse(model, loads(raw), shape_checked=not needs_shape_check(raw), naive_timezone=naive_timezone)


def _fields(error: ValidationError) -> list[dict]:
    fields = []
    for err in error.errors(include_url=False):
        ctx = err.get("ctx") or {}
        loc = ctx.get("loc") if err["type"] == "cross_field" else ".".join(str(part) for part in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        loc = loc or "body"
        fields.append({"loc": loc, "msg": msg})
    return fields


# What a message calls each body: its words, not its OpenAPI schema's name ("invalid review",
# not "invalid ReviewRequest"); the page shows these messages as they are.
_BODY_NAMES = {
    "JobRecord": "job record",
    "RatingRequest": "rating",
    "RatingClearRequest": "rating removal",
    "ReviewSet": "review",
    "ReviewRequest": "review",
    "ImageRatingRequest": "image rating",
    "BatchRequest": "batch change",
}


def body_name(model: type[BaseModel]) -> str:
    title = model.model_config.get("title", "")
    return _BODY_NAMES.get(title, "record")


def parse(model: type[BaseModel], data: Any, shape_checked: bool = False, naive_timezone: tzinfo | None = None):
    """A validated `model` from decoded JSON, or InvalidRecord with the fields at fault."""
    if not isinstance(data, dict):
        raise InvalidRecord("the body must be a JSON object", [{"loc": "body", "msg": "expected an object"}])
    if not shape_checked:
        check_json_shape(data)
    try:
        parsed = model.model_validate(data, context={"naive_timezone": naive_timezone})
    except ValidationError as error:
        fields = _fields(error)
        summary = "; ".join(f"{f['loc']}: {f['msg']}" for f in fields[:3])
        raise InvalidRecord(f"invalid {body_name(model)}: {summary}", fields) from None
    return parsed


def parse_rating(data: Any) -> RatingIn:
    if isinstance(data, dict) and "rating" in data:
        rating = _integral(data["rating"])
        if isinstance(rating, bool) or not isinstance(rating, int) or not 0 <= rating <= 5:
            msg = f"rating must be an integer from 0 to 5, got {orjson.dumps(rating).decode()[:40]}"
            raise InvalidRecord(msg, [{"loc": "rating", "msg": msg}])
    return parse(RatingIn, data)


# ---------------------------------------------------------------- resolution
# Where the generation summary of a record comes from when it does not say (README
# "Where the summary comes from"): the keys of each field in the order tried, and the
# places tried, first to last. "" and, for steps / CFG / size, 0 mean "unknown" there
# (StableNew writes them for settings it did not record) and the next place is tried.

_LOOKUP_KEYS = {
    "prompt": ("prompt", "positive_prompt"),
    "negative_prompt": ("negative_prompt",),
    "model": ("model", "base_model", "sd_model_checkpoint", "model_name", "checkpoint"),
    "vae": ("vae", "sd_vae", "vae_name"),
    "sampler": ("sampler", "sampler_name"),
    "scheduler": ("scheduler",),
    "steps": ("steps",),
    "cfg_scale": ("cfg_scale",),
    "seed": ("seed",),
    "width": ("width",),
    "height": ("height",),
}
_NUMBERS = {"steps": int, "seed": int, "width": int, "height": int, "cfg_scale": float}
_ZERO_IS_UNKNOWN = {"steps", "cfg_scale", "width", "height"}
# Stages in pipeline order: a job without txt2img (img2img, ADetailer or upscale only) takes
# its model, sampler and size from the first stage that has them.
STAGE_ORDER = ("txt2img", "img2img", "adetailer", "upscale", "refiner", "hires")
# ADetailer's own prompts may name LoRAs and embeddings too.
_DETAIL_PROMPTS = ("adetailer_prompt", "ad_prompt", "adetailer_negative_prompt", "ad_negative_prompt")


def _known(field: str, value: Any) -> Any:
    """The value if it is a known one of the field's type, else None."""
    if isinstance(value, bool):
        return None
    kind = _NUMBERS.get(field)
    if kind is None:
        return value if isinstance(value, str) and value.strip() else None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            return None
        value = int(value)
    else:
        value = float(value)
    return None if field in _ZERO_IS_UNKNOWN and value <= 0 else value


def _lookup(sources: list[dict], field: str) -> Any:
    for source in sources:
        for key in _LOOKUP_KEYS[field]:
            value = _known(field, source.get(key))
            if value is not None:
                return value
    return None


def _snapshots(job: JobIn) -> list[dict]:
    """run_config, and a StableNew job snapshot inside it (`normalized_job`, v2.6)."""
    config = job.run_config
    nested = config.get("normalized_job")
    return [config, nested] if isinstance(nested, dict) else [config]


def _stage_configs(job: JobIn) -> list[tuple[str, dict]]:
    """(stage name, config) of every stage in pipeline order: `stages`, stage sections of the
    run_config, and StableNew's `stage_chain` (enabled stages only; its `extra` holds the
    ADetailer prompts)."""
    found: list[tuple[str, dict]] = []
    chain = [s for top in _snapshots(job) for s in top.get("stage_chain") or () if isinstance(s, dict)]
    chain = [s for s in chain if s.get("enabled", True) is not False]
    named = list(dict.fromkeys([*STAGE_ORDER, *job.stages]))
    for name in named:
        for container in (job.stages, job.run_config):
            if isinstance(container.get(name), dict):
                found.append((name, container[name]))
        for stage in chain:
            if stage.get("stage_type") == name:
                found.append((name, stage))
                if isinstance(stage.get("extra"), dict):
                    found.append((name, stage["extra"]))
    return found


def _lookup_sources(job: JobIn) -> list[dict]:
    return _snapshots(job) + [config for _, config in _stage_configs(job)]


def _detail_prompts(job: JobIn) -> list[str]:
    prompts_ = []
    for name, config in _stage_configs(job):
        keys = _DETAIL_PROMPTS + (("prompt", "negative_prompt") if name == "adetailer" else ())
        prompts_ += [config[k] for k in keys if isinstance(config.get(k), str) and config[k].strip()]
    return prompts_


def _listed_weights(items) -> list[dict] | None:
    """StableNew's `lora_tags` ({name, weight}) or embedding lists (a bare name or [name, weight])."""
    if not isinstance(items, list):
        return None
    found: dict[str, dict] = {}
    for item in items:
        name, weight = None, 1.0
        if isinstance(item, str):
            name = item
        elif isinstance(item, dict):
            name, weight = item.get("name"), item.get("weight", 1.0)
        elif isinstance(item, list) and len(item) == 2:
            name, weight = item
        if isinstance(name, str) and name.strip() and isinstance(weight, (int, float)) and not isinstance(weight, bool):
            found.setdefault(name.strip().casefold(), {"name": name.strip(), "weight": float(weight)})
    return list(found.values())


def _stablenew_lists(job: JobIn, *keys: str) -> list[dict]:
    return _merged(*(_listed_weights(top.get(key)) for top in _snapshots(job) for key in keys))


def _merged(*lists: list[dict] | None) -> list[dict]:
    """Names of several lists, the first occurrence of each (case-insensitively) kept."""
    merged: dict[str, dict] = {}
    for items in lists:
        for item in items or ():
            merged.setdefault(item["name"].casefold(), item)
    return list(merged.values())


# Fields added to JobIn after records were first stored: left out of the hash while absent,
# so that a record stored by an older version is still an identical retry of itself.
_ADDED_LATER = ("experiment", "generator")


def input_hash(job: JobIn) -> str:
    """What "identical" compares (SPEC §2): a hash of the validated input, `num_outputs` hashed
    as not given (given, it can only be the number of outputs): a retry that gives it or leaves
    it out is the same input. (Hashed as given before 2026-12-07: see earlier_input_hash.)"""
    return _hash_of(job, None)


def earlier_input_hash(job: JobIn) -> str:
    """The hash versions before 2026-12-07 stored for this input when it gave `num_outputs`
    (they hashed it as given): a retry of such a record is identical too."""
    return _hash_of(job, len(job.outputs))


def _hash_of(job: JobIn, num_outputs: int | None) -> str:
    data = job.model_dump(mode="json")
    for name in _ADDED_LATER:
        if data.get(name) is None and name not in (job.model_extra or {}):
            data.pop(name, None)
    data["num_outputs"] = num_outputs
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def same_input(stored_hash: str | None, job: JobIn) -> bool:
    """Whether a record stored with `stored_hash` was posted with this input (an identical retry)."""
    return stored_hash in (input_hash(job), earlier_input_hash(job))


def stored_job(job: JobIn, logged_at: float | None = None) -> dict:
    """The self-contained line written to learning_log_v2.jsonl, keys in a stable order."""
    sources = _lookup_sources(job)
    summary = {}
    for f in _LOOKUP_KEYS:
        given = _known(f, getattr(job, f))  # a given 0 steps is as unknown as none
        summary[f] = given if given is not None else _lookup(sources, f)
    # Listed in the record: as given. Else StableNew's lists, then what the prompts name besides.
    loras, embeddings = prompts.detect(summary["prompt"], summary["negative_prompt"], *_detail_prompts(job))
    if job.loras is not None:
        loras = [lw.model_dump() for lw in job.loras]
    else:
        loras = _merged(_stablenew_lists(job, "lora_tags"), loras)
    if job.embeddings is not None:
        embeddings = [ew.model_dump() for ew in job.embeddings]
    else:
        embeddings = _merged(_stablenew_lists(job, "positive_embeddings", "negative_embeddings"), embeddings)
    line = {
        "schema": LOG_SCHEMA,
        "job_id": job.job_id,
        "status": job.status,
        "completed_at": job.completed_at,
        "started_at": job.started_at,
        "duration_sec": job.duration_sec,
        "variant_index": job.variant_index,
        "variant_total": job.variant_total,
        "batch_index": job.batch_index,
        "batch_total": job.batch_total,
        "packs": job.packs,
        **{
            f: summary[f]
            for f in ("model", "vae", "sampler", "scheduler", "steps", "cfg_scale", "seed", "width", "height")
        },
        "prompt": summary["prompt"],
        "negative_prompt": summary["negative_prompt"],
        "loras": loras,
        "embeddings": embeddings,
        "outputs": job.outputs,
        "num_outputs": len(job.outputs),
        "timings": job.timings,
        "run_id": job.run_id,
        "experiment": job.experiment.model_dump() if job.experiment else None,
        "generator": job.generator,
        "run_config": job.run_config,
        "randomization_plan": job.randomization_plan,
        "stages": job.stages,
        "extra": job.extra,
    }
    line.update(job.model_extra or {})
    line["logged_at"] = time.time() if logged_at is None else logged_at
    line["input_hash"] = input_hash(job)
    return line


def rating_event(
    job_id: str, rating: int | None, source: str, timestamp: float | None = None, rating_id: str | None = None
) -> dict:
    """A rating event; an importer gives a `rating_id` of its own so that a second import is seen to be one."""
    return {
        "schema": RATING_SCHEMA,
        "rating_id": rating_id or str(uuid.uuid4()),
        "job_id": job_id,
        "rating": rating,
        "timestamp": time.time() if timestamp is None else timestamp,
        "source": source,
    }


def dumps(line: dict) -> bytes:
    """One compact journal line, newline included."""
    return orjson.dumps(line) + b"\n"


# ---------------------------------------------------------------- amendments
# A recorded job is never rewritten: PATCH appends an amendment line that sets some of its
# fields, and the one projection applies the amendments in file order (live and rebuilt alike).

# Derived from other fields: recomputed from the amended record rather than carried over.
_DERIVED = ("num_outputs",)
_TIMES = ("completed_at", "started_at", "duration_sec")


def is_set(value: Any) -> bool:
    return value not in (None, "", [], {})


def effective_line(base: dict, amendments: list[dict]) -> dict:
    """The stored line of a job with its amendments applied, re-resolved; raises InvalidRecord."""
    record = {k: v for k, v in base.items() if k not in SERVICE_KEYS and k not in _DERIVED}
    for amendment in amendments:
        changes = amendment.get("set") or {}
        if any(k in changes for k in ("completed_at", "started_at")) and "duration_sec" not in changes:
            record.pop("duration_sec", None)  # follows the new times
        if any(k in changes for k in ("prompt", "negative_prompt")):
            for key in _detected_lists(record):
                if key not in changes:
                    record.pop(key)  # found in the prompts: found again in the new ones
        record.update(changes)
    line = stored_job(parse(JobIn, record), logged_at=base.get("logged_at"))
    line["input_hash"] = base.get("input_hash")  # what an identical retry of the original POST compares
    return line


def _detected_lists(record: dict) -> list[str]:
    """Which of the record's `loras` and `embeddings` are what its prompts name (and StableNew's
    lists), as they are stored when a POST gives none: not given, so they follow the prompts."""
    try:
        found = stored_job(parse(JobIn, {k: v for k, v in record.items() if k not in ("loras", "embeddings")}))
    except InvalidRecord:
        return []
    return [key for key in ("loras", "embeddings") if key in record and record[key] == found[key]]


def amendment_changes(current: dict, patch: dict, replace: bool) -> tuple[dict, list[str]]:
    """(the fields a patch would change, the fields it may not change without `replace`).

    A field is "set" when it holds anything but null, "", [] or {}; setting it to another value
    needs `replace`. Fields the patch gives with their current value change nothing.
    """
    changes = {k: v for k, v in patch.items() if current.get(k) != v}
    if changes.keys() & {"prompt", "negative_prompt"}:
        for key in ("loras", "embeddings"):  # named with a new prompt: kept as given, not found in it again
            if key in patch and key not in changes:
                changes[key] = patch[key]
    refused = [] if replace else [k for k in changes if is_set(current.get(k))]
    return changes, refused


def amend_line(job_id: str, changes: dict, logged_at: float | None = None) -> dict:
    return {
        "schema": AMEND_SCHEMA,
        "job_id": job_id,
        "set": changes,
        "logged_at": time.time() if logged_at is None else logged_at,
        "amend_id": str(uuid.uuid4()),
    }


def check_patch(data: Any) -> dict:
    """The body of PATCH /api/jobs/<id>: an object of record fields (the job id cannot change)."""
    if not isinstance(data, dict):
        raise InvalidRecord("the body must be a JSON object", [{"loc": "body", "msg": "expected an object"}])
    check_json_shape(data)
    if not data:
        raise InvalidRecord("give at least one field to set", [{"loc": "body", "msg": "no fields"}])
    for key in ("job_id", *SERVICE_KEYS, *_DERIVED):
        if key in data:
            msg = (
                f"{key} cannot be amended" if key == "job_id" or key in _DERIVED else f"{key} is written by the service"
            )
            raise InvalidRecord(msg, [{"loc": key, "msg": msg}])
    return data
