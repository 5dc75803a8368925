"""Reviewing beyond the job's rating: per-image ratings, pick / reject flags, reason tags, a
note and StableNew's sub-scores.

Each change is an event appended to the ratings JSONL, beside the rating events:

    {"schema": "learning_review_v1", "review_id": "…", "job_id": "…", "output": null,
     "set": {"flag": "pick", "tags": ["bad hands"]}, "timestamp": 1764000000.0, "source": "web"}

`output` null: the keys of `set` are the job's (flag, tags, note, scores); an output index:
they are that image's (rating). The latest event wins per key (per score name, per image),
every event stays in the file (the history), and the index keeps each job's current state,
a small JSON object (`jobs.review`), whose values are also filterable fields (fields.py:
tag, flag, image_rating). `tags` is always the whole list, so that replaying the events in
file order gives the same state whatever was added or removed.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator

from .records import Source, Stars, shown_as_is

REVIEW_SCHEMA = "learning_review_v1"
FLAGS = ("pick", "reject")
SCORES = ("anatomy", "composition", "prompt_adherence", "technical_quality", "expression", "structure")
MAX_TAGS, MAX_TAG, MAX_NOTE = 32, 48, 4000


Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TAG, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(lambda tag: shown_as_is(tag, "a tag")),  # a chip shows the tag it is
]


def clean_tags(tags: list[str]) -> list[str]:
    """Whitespace collapsed, the first spelling of each tag kept (tags match case-folded)."""
    seen: dict[str, str] = {}
    for tag in tags:
        tidy = " ".join(tag.split())
        seen.setdefault(tidy.casefold(), tidy)
    return list(seen.values())


class ReviewSet(BaseModel):
    """What one review changes on a job; a key left out is left as it is, null clears it."""

    model_config = ConfigDict(strict=True, extra="forbid", title="ReviewSet")
    flag: Literal["pick", "reject"] | None = Field(None, description="pick or reject; null clears")
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] | None = Field(
        None, description="the job's reason tags, the whole list (e.g. `bad hands`)"
    )
    tags_add: Annotated[list[Tag], Field(max_length=MAX_TAGS)] | None = Field(None, description="tags to add")
    tags_remove: Annotated[list[Tag], Field(max_length=MAX_TAGS)] | None = Field(None, description="tags to remove")
    note: Annotated[str, StringConstraints(max_length=MAX_NOTE)] | None = Field(None, description="a note; '' clears")
    scores: dict[Literal[SCORES], Stars | None] | None = Field(  # type: ignore[valid-type]
        None, description=f"sub-scores 0-5 ({', '.join(SCORES)}); a null score clears it"
    )
    rating: Stars | None = Field(None, description="only with an output: that image's rating 0-5; null clears")

    @model_validator(mode="after")
    def _something(self):
        if not self.model_fields_set - {"source"}:
            raise ValueError(
                "give at least one of flag, tags, tags_add, tags_remove, note, scores (rating: in a batch's set)"
            )
        if "tags" in self.model_fields_set and self.model_fields_set & {"tags_add", "tags_remove"}:
            raise ValueError("give either the whole tags list or tags_add / tags_remove, not both")
        if "tags" in self.model_fields_set and self.tags is None:
            raise ValueError("tags: give a list ([] removes every tag)")
        return self


class ReviewIn(ReviewSet):
    """Body of POST /api/jobs/<job_id>/review."""

    model_config = ConfigDict(strict=True, extra="forbid", title="ReviewRequest")
    source: Source = "api"

    @model_validator(mode="after")
    def _job_keys(self):
        if "rating" in self.model_fields_set:
            raise ValueError("rating: a job's rating is PUT /api/jobs/<id>/rating; an image's, .../outputs/<n>/rating")
        return self


class ImageRatingIn(BaseModel):
    """Body of PUT /api/jobs/<job_id>/outputs/<n>/rating."""

    model_config = ConfigDict(strict=True, extra="forbid", title="ImageRatingRequest")
    rating: Stars
    source: Source = "api"


class Expected(BaseModel):
    """An undo's condition: the values the action left (reviews.expected); a job that no
    longer holds them is left as it is and named in the answer's `conflicted`."""

    model_config = ConfigDict(strict=True, extra="forbid", title="Expected")
    rating: Stars | None = None
    flag: str | None = None
    note: str | None = None
    scores: dict[str, Stars | None] | None = None


class BatchItem(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", title="BatchItem")
    job_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    output: Annotated[StrictInt, Field(ge=0)] | None = None
    set: ReviewSet
    expect: Expected | None = None


MAX_BATCH_JOBS = 20_000


class BatchIn(BaseModel):
    """Body of POST /api/ratings:batch: one change for many jobs (`job_ids`, or every job
    matching `where` with `expect` its count, as confirmed), or a change per item (`items`,
    e.g. an undo). `set.rating` there is the job's rating."""

    model_config = ConfigDict(strict=True, extra="forbid", title="BatchRequest")
    job_ids: (
        Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=128)]], Field(max_length=MAX_BATCH_JOBS)
        ]
        | None
    ) = None
    where: Annotated[str, StringConstraints(max_length=4000)] | None = Field(
        None, description="a listing query string (`pack=x&rated=false`): every job it matches"
    )
    expect: Annotated[StrictInt, Field(ge=0)] | None = Field(
        None, description="with `where`: the count the user confirmed; another count is 409"
    )
    set: ReviewSet | None = None
    items: Annotated[list[BatchItem], Field(max_length=MAX_BATCH_JOBS)] | None = None
    source: Source = "api"

    @model_validator(mode="after")
    def _one_form(self):
        forms = [name for name in ("job_ids", "where", "items") if getattr(self, name) is not None]
        if len(forms) != 1:
            raise ValueError("give exactly one of job_ids, where (with expect) or items")
        if self.items is None and self.set is None:
            raise ValueError("set: what to change on those jobs")
        if self.items is not None and self.set is not None:
            raise ValueError("with items, each item has its own set")
        if self.where is not None and self.expect is None:
            raise ValueError("expect: the number of jobs the user confirmed for `where`")
        return self


# ---------------------------------------------------------------- events and state


def review_event(
    job_id: str,
    changes: dict,
    source: str,
    output: int | None = None,
    timestamp: float | None = None,
    review_id: str | None = None,
) -> dict:
    return {
        "schema": REVIEW_SCHEMA,
        "review_id": review_id or str(uuid.uuid4()),
        "job_id": job_id,
        "output": output,
        "set": changes,
        "timestamp": time.time() if timestamp is None else timestamp,
        "source": source,
    }


def resolve(state: dict | None, changes: ReviewSet | dict, output: int | None) -> dict:
    """The `set` of an event from a request: tags_add / tags_remove become the whole list,
    a note of '' clears, and only what differs from `state` is kept (empty: a no-op)."""
    given = changes.model_dump(exclude_unset=True) if isinstance(changes, ReviewSet) else dict(changes)
    state = state or {}
    if output is not None:
        unknown = set(given) - {"rating"}
        if unknown:
            raise ValueError(f"an image takes only a rating, not {', '.join(sorted(unknown))}")
        if "rating" not in given:
            raise ValueError("an image's set needs a rating")
        current = (state.get("images") or {}).get(str(output))
        return {} if current == given["rating"] else {"rating": given["rating"]}
    if "rating" in given:
        raise ValueError("rating: only an image's (give its output)")
    out: dict = {}
    if "flag" in given and given["flag"] != state.get("flag"):
        out["flag"] = given["flag"]
    tags = list(state.get("tags") or [])
    if "tags" in given:
        tags = clean_tags(given["tags"])
    if given.get("tags_add"):
        tags = clean_tags(tags + given["tags_add"])
    if given.get("tags_remove"):
        gone = {" ".join(tag.split()).casefold() for tag in given["tags_remove"]}
        tags = [tag for tag in tags if tag.casefold() not in gone]
    before = list(state.get("tags") or [])
    if len(tags) > MAX_TAGS and len(tags) > len(before):  # one history's tags over it still come off
        raise ValueError(f"a job has at most {MAX_TAGS} tags; this one would have {len(tags)}")
    if {"tags", "tags_add", "tags_remove"} & set(given) and tags != before:
        out["tags"] = tags
    if "note" in given:
        note = given["note"] or None
        if note != state.get("note"):
            out["note"] = note
    if given.get("scores"):
        current = state.get("scores") or {}
        moved = {name: value for name, value in given["scores"].items() if current.get(name) != value}
        if moved:
            out["scores"] = moved
    return out


def apply(state: dict | None, output: int | None, changes: dict) -> dict | None:
    """The state after one event (None when nothing is left)."""
    new = {key: (dict(value) if isinstance(value, dict) else value) for key, value in (state or {}).items()}
    if output is not None:
        images = new.setdefault("images", {})
        if changes.get("rating") is None:
            images.pop(str(output), None)
        else:
            images[str(output)] = changes["rating"]
    else:
        for key in ("flag", "note"):
            if key in changes:
                new[key] = changes[key]
        if "tags" in changes:
            new["tags"] = list(changes["tags"] or [])
        if "scores" in changes:
            scores = new.setdefault("scores", {})
            for name, value in (changes["scores"] or {}).items():
                if value is None:
                    scores.pop(name, None)
                else:
                    scores[name] = value
    kept = {key: value for key, value in new.items() if value not in (None, [], {}, "")}
    return kept or None


def previous(state: dict | None, changes: dict, output: int | None) -> dict:
    """The `set` that puts back what `changes` changes (for undo). Tags go back as what was
    added and removed, not the whole list: a tag someone else added meanwhile stays."""
    state = state or {}
    if output is not None:
        return {"rating": (state.get("images") or {}).get(str(output))}
    back: dict = {}
    for key in ("flag", "note"):
        if key in changes:
            back[key] = state.get(key)
    if "tags" in changes:
        before, after = list(state.get("tags") or []), changes["tags"]
        folded_before, folded_after = {t.casefold() for t in before}, {t.casefold() for t in after}
        if removed := [tag for tag in before if tag.casefold() not in folded_after]:
            back["tags_add"] = removed
        if added := [tag for tag in after if tag.casefold() not in folded_before]:
            back["tags_remove"] = added
    if "scores" in changes:
        back["scores"] = {name: (state.get("scores") or {}).get(name) for name in changes["scores"]}
    return back


def expected(state: dict | None, changes: dict, output: int | None) -> dict:
    """What `changes` left, as an undo checks it is still so (POST /api/ratings:batch items'
    `expect`): an undo never puts back a value over one someone changed since."""
    state = state or {}
    if output is not None:
        return {"rating": (state.get("images") or {}).get(str(output))}
    left = {key: state.get(key) for key in ("flag", "note") if key in changes}
    if "scores" in changes:
        left["scores"] = {name: (state.get("scores") or {}).get(name) for name in changes["scores"]}
    return left


def still(row_rating: int | None, state: dict | None, output: int | None, expect: dict) -> bool:
    """Does the job (its rating, its review state) still hold what `expect` says?"""
    state = state or {}
    for key, value in expect.items():
        if key == "rating":
            current = row_rating if output is None else (state.get("images") or {}).get(str(output))
        elif key == "scores":
            current = {name: (state.get("scores") or {}).get(name) for name in value}
        else:
            current = state.get(key)
        if current != value:
            return False
    return True


def _score(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 5)


_CHECKS = {
    "flag": lambda value: value is None or value in FLAGS,
    "tags": lambda value: isinstance(value, list) and all(isinstance(tag, str) for tag in value),
    "note": lambda value: value is None or isinstance(value, str),
    "scores": lambda value: isinstance(value, dict) and all(isinstance(k, str) and _score(v) for k, v in value.items()),
    "rating": _score,
}


def valid_event(line: dict) -> tuple[str, int | None, dict] | None:
    """(job_id, output, set) of a stored review line, or None when it is not one this version
    can read (skipped, as lines of other schemas are). Keys it does not know are left out."""
    job_id, output, changes = line.get("job_id"), line.get("output"), line.get("set")
    if not isinstance(job_id, str) or not job_id or not isinstance(changes, dict):
        return None
    if output is not None and (isinstance(output, bool) or not isinstance(output, int) or output < 0):
        return None
    keys = ("rating",) if output is not None else ("flag", "tags", "note", "scores")
    known = {key: value for key, value in changes.items() if key in keys}
    if not all(_CHECKS[key](value) for key, value in known.items()):
        return None
    return job_id, output, known
