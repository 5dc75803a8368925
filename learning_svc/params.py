"""Query parameters of the listing, facets and export: one pydantic model each, built from the field registry.

The models validate a request's query string (every value arrives as text), say what is
wrong in the SPEC §2 error shape, turn it into the index's Filters / Page, and describe
themselves in the OpenAPI document (query_parameters), so no parameter is written twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema, create_model

from .fields import BY_NAME, FIELDS, scheduler_in_sampler
from .index.plan import DEFAULT_LIMIT, DEFAULT_SORT, MAX_LIMIT, SORTS, Filters, Page
from .index.queries import BadCursor, decode_cursor, decode_position
from .index.words import has_cjk
from .records import to_epoch

PREFIX_MIN = 3  # letters or digits a `word*` prefix needs (a shorter one expands into thousands of terms)
MAX_Q = 500
DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
EXPORT_FORMATS = ("jsonl", "csv")


class BadQuery(ValueError):
    """A query parameter is unknown or its value is wrong: 400 invalid_parameter."""

    def __init__(self, param: str, msg: str, fields: list[dict] | None = None):
        super().__init__(f"{param}: {msg}")
        self.param, self.msg = param, msg
        self.fields = fields or [{"loc": param, "msg": msg}]


# ---------------------------------------------------------------- value checks (text in, value out)


def _int_in(lo: int, hi: int):
    def check(raw: Any) -> int:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"must be an integer from {lo} to {hi}, got {str(raw)[:40]!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be an integer from {lo} to {hi}, got {value}")
        return value

    return check


def _one_of(choices: Sequence[str]):
    def check(raw: Any) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {str(raw)[:40]!r}")
        return raw

    return check


def _boolean(raw: Any) -> bool:
    if raw not in ("true", "false"):
        raise ValueError(f"must be true or false, got {str(raw)[:40]!r}")
    return raw == "true"


def _time(end_of_day: bool):
    """since / until as epoch seconds. A date alone is a whole UTC day: `until=2025-11-24`
    runs to the end of the 24th (inclusive, to the millisecond), not to its first instant."""

    def check(raw: Any) -> float:
        text = str(raw)
        try:
            value = to_epoch(float(text) if _is_number(text) else text)
        except ValueError as error:
            raise ValueError(f"must be epoch seconds or an ISO-8601 time ({error})") from None
        return value + 86_400 - 0.001 if end_of_day and DATE_ONLY.fullmatch(text.strip()) else value

    return check


def _is_number(raw: str) -> bool:
    try:
        float(raw)
        return True
    except ValueError:
        return False


def _search(raw: Any) -> str | None:
    """Text search sees only letters and digits: a word without any (`-`, `🌊`) is left out
    rather than matching nothing, so that `q=-` behaves like `q=` and `castle -` like `castle`."""
    q = str(raw)
    if len(q.strip()) > MAX_Q:
        raise ValueError(f"must be at most {MAX_Q} characters")
    words = [w for w in q.split() if any(ch.isalnum() for ch in w)]
    for word in words:
        # A short prefix expands into thousands of FTS5 terms: `a*` takes ~25 s at 1M jobs.
        # A CJK character is a word of its own (index/words.py): `古い寺*` is a phrase whose last
        # word is one character, nothing to expand.
        if word.endswith("*") and sum(ch.isalnum() for ch in word) < PREFIX_MIN and not has_cjk(word[-2:]):
            raise ValueError(f"a prefix needs at least {PREFIX_MIN} letters or digits before the *, got {word[:40]!r}")
    return " ".join(words) or None


def _keys(field):
    """A repeatable field parameter -> the sorted facet keys it filters by (blank values ignored)."""

    def check(raw: Any) -> list[str]:
        return sorted({field.parse(v) for v in raw if v.strip()})

    return check


def _value_schema(field) -> dict:
    if field.whole:
        return {"type": "integer", "minimum": field.whole[0], "maximum": field.whole[1]}
    if field.kind == "choice":
        return {"type": "string", "enum": list(field.choices)}
    return {"type": "number"} if field.kind == "number" else {"type": "string"}


# ---------------------------------------------------------------- the models

# Each check sees the text as given and turns it into the value (or says what is wrong);
# the JSON schema says what the text may be, for the OpenAPI document.
Limit = Annotated[
    int, BeforeValidator(_int_in(1, MAX_LIMIT)), WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})
]
Rating = Annotated[
    int | None, BeforeValidator(_int_in(0, 5)), WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 5})
]
Sort = Annotated[str, BeforeValidator(_one_of(tuple(SORTS))), WithJsonSchema({"type": "string", "enum": list(SORTS)})]
TIME_SCHEMA = {
    "anyOf": [{"type": "number"}, {"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]
}


class FilterParams(BaseModel):
    """The filters every read shares (SPEC §2.1); the field parameters are added from the registry."""

    model_config = ConfigDict(extra="forbid")
    rating_min: Rating = Field(None, description="rated jobs with at least this rating")
    rating_max: Rating = Field(None, description="rated jobs with at most this rating")
    image_rating_min: Rating = Field(None, description="jobs with an image rated at least this")
    rated: Annotated[
        bool | None, BeforeValidator(_boolean), WithJsonSchema({"type": "string", "enum": ["true", "false"]})
    ] = None
    since: Annotated[float | None, BeforeValidator(_time(False)), WithJsonSchema(TIME_SCHEMA)] = Field(
        None, description="epoch seconds or ISO-8601; a date alone is a whole UTC day"
    )
    until: Annotated[float | None, BeforeValidator(_time(True)), WithJsonSchema(TIME_SCHEMA)] = Field(
        None, description="epoch seconds or ISO-8601; a date alone is a whole UTC day (inclusive)"
    )
    q: Annotated[str | None, BeforeValidator(_search), WithJsonSchema({"type": "string", "maxLength": MAX_Q})] = Field(
        None,
        description="every word, whole, in the prompts, packs, job id or image file and folder names (a trailing * for a prefix)",
    )

    def filters(self) -> Filters:
        tags = {field.name: keys for field in FIELDS if (keys := getattr(self, field.name))}
        if self.image_rating_min is not None:  # a range of a number field: its values from there up
            wanted = [str(value) for value in range(self.image_rating_min, 6)]
            given = tags.get("image_rating")
            tags["image_rating"] = [key for key in given if key in wanted] or ["none"] if given else wanted
        return Filters(tags, self.rating_min, self.rating_max, self.rated, self.since, self.until, self.q)


def _with_fields(name: str, base: type[BaseModel], **extra) -> type[BaseModel]:
    """`base` plus one repeatable list parameter per registry field (OR within a field)."""
    field_params = {
        field.name: (
            Annotated[
                list[str],
                BeforeValidator(_keys(field)),
                WithJsonSchema({"type": "array", "items": _value_schema(field)}),
            ],
            Field(default_factory=list, description=field.description or field.label),
        )
        for field in FIELDS
    }
    return create_model(name, __base__=base, **field_params, **extra)


Filtering = _with_fields("Filtering", FilterParams)


class ListParams(Filtering):
    limit: Limit = DEFAULT_LIMIT
    cursor: str | None = Field(None, description="next_cursor of the previous page")
    sort: Sort = DEFAULT_SORT

    def page(self) -> Page:
        after = None
        if self.cursor:
            try:
                after = decode_cursor(self.cursor, self.sort)
            except BadCursor as error:
                raise BadQuery("cursor", str(error)) from None
        return Page(self.filters(), self.sort, self.limit, after)


class FacetParams(Filtering):
    facet_size: Annotated[
        int, BeforeValidator(_int_in(1, 1000)), WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 1000})
    ] = 50


class ExportParams(Filtering):
    format: Annotated[
        str, BeforeValidator(_one_of(EXPORT_FORMATS)), WithJsonSchema({"type": "string", "enum": list(EXPORT_FORMATS)})
    ] = "jsonl"
    sort: Sort = DEFAULT_SORT


class ChangesParams(Filtering):
    after: str | None = Field(None, description="the `next` of an earlier answer; none: the current position")

    def position(self) -> tuple[int, int] | None:
        if not self.after:
            return None
        try:
            return decode_position(self.after)
        except BadCursor as error:
            raise BadQuery("after", str(error)) from None


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AmendParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replace: Annotated[
        bool, BeforeValidator(_boolean), WithJsonSchema({"type": "string", "enum": ["true", "false"]})
    ] = Field(False, description="change fields that are already set (else such an amendment is a 409)")


# ---------------------------------------------------------------- parsing a query string


def parse(model: type[BaseModel], params: Mapping[str, Sequence[str]]):
    """Validate query parameters (name -> the values given, as in a query string) with `model`."""
    fields = model.model_fields
    unknown = sorted(set(params) - set(fields))
    if unknown:
        known = f"known: {', '.join(sorted(fields))}" if fields else "this endpoint takes none"
        raise BadQuery(unknown[0], f"unknown parameter ({known})")
    # `pack=` or `cursor=` was passed over as if it were not there (the page never sends one)
    empty = [name for name, values in params.items() if "" in values]
    if empty:
        raise BadQuery(empty[0], "must not be empty: give a value, or leave the parameter out")
    if "sampler" in fields and "scheduler" in fields:
        params = _scheduler_from_sampler(params)
    data = {}
    for name, values in params.items():
        if _repeatable(fields[name]):
            data[name] = list(values)
        elif len(values) > 1:
            raise BadQuery(name, "give this parameter at most once")
        elif values:
            data[name] = values[0]
    try:
        return model.model_validate(data)
    except ValidationError as error:
        found = [
            {
                "loc": ".".join(str(p) for p in err["loc"][:1]) or "query",
                "msg": err["msg"].removeprefix("Value error, "),
            }
            for err in error.errors(include_url=False)
        ]
        raise BadQuery(found[0]["loc"], found[0]["msg"], found) from None


def implied_scheduler(params: Mapping[str, Sequence[str]]) -> str | None:
    """The scheduler a query's sampler values name when it gives no scheduler filter of its own
    (`sampler=DPM++ 2M Karras`: Karras); None otherwise. For a query parse() accepted."""
    if any(value.strip() for value in params.get("scheduler", ())):
        return None
    added = _scheduler_from_sampler(params)  # the one rule: parse() filters by what it adds
    return added["scheduler"][0] if added is not params else None


def _scheduler_from_sampler(params: Mapping[str, Sequence[str]]) -> Mapping[str, Sequence[str]]:
    """`sampler=DPM++ 2M Karras` is sampler DPM++ 2M with scheduler Karras, as the facets count
    it: the scheduler becomes a filter too (it was dropped, and the filter matched every DPM++ 2M
    job). Values naming different schedulers, or a scheduler filter naming another, cannot be
    one filter: 400, saying to give the scheduler on its own."""
    samplers = [value for value in params.get("sampler", ()) if value.strip()]
    named = [scheduler_in_sampler(value) for value in samplers]
    if not any(named):
        return params
    own_filter = "give the scheduler as its own filter (sampler=DPM++ 2M&scheduler=Karras)"
    if len({s.casefold() if s else None for s in named}) > 1:
        raise BadQuery("sampler", f"these sampler names carry different schedulers (or none): {own_filter}")
    scheduler = named[0]
    given = [value for value in params.get("scheduler", ()) if value.strip()]
    key = BY_NAME["scheduler"].parse
    if given and {key(value) for value in given} != {key(scheduler)}:
        raise BadQuery("scheduler", f"the sampler names scheduler {scheduler!r}, and this filter another: {own_filter}")
    return {**params, "scheduler": [scheduler]}


def _repeatable(info) -> bool:
    return getattr(info.annotation, "__origin__", None) is list


def query_parameters(model: type[BaseModel]) -> list[dict]:
    """The OpenAPI `parameters` of a model: each property a query parameter, lists repeated (form, explode)."""
    schema = model.model_json_schema()
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _without_null(prop)
        description = prop.pop("description", None)
        prop.pop("default", None)
        prop.pop("title", None)
        entry = {"name": name, "in": "query", "schema": prop}
        if prop.get("type") == "array":
            entry.update(style="form", explode=True)
        if description:
            entry["description"] = description
        parameters.append(entry)
    return parameters


def _without_null(prop: dict) -> dict:
    """`X | None` (absent) is just X in a query string."""
    options = prop.get("anyOf")
    if options and any(o.get("type") == "null" for o in options):
        rest = [o for o in options if o.get("type") != "null"]
        prop = {k: v for k, v in prop.items() if k != "anyOf"}
        prop.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    return dict(prop)
