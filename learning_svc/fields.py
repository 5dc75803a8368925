"""The field registry: every filterable and facetable value of a job, one small object each.

A field says how its values are read from a stored line, how a value is normalised for
grouping (the facet key) and shown, how a query parameter is checked, and how it is
labelled on the page. The projection (index/project.py), the query parameters
(params.py), the OpenAPI document, the facets, the CSV export and the page's pickers
(`GET /api/fields`) all iterate over FIELDS: adding a field is one entry here (plus a
test); the index is rebuilt at the next start because its projection changed.

Values are rows of the index's `job_tags` table: (job, field name, key), so a filter on
any field is one index range in any sort order (index/tables.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .prompts import SCHEDULERS, model_display, sampler_name, split_sampler

STATUSES = ("completed", "failed", "cancelled")


def canonical_number(value: float) -> str:
    """7.0 -> "7", 6.499999999999998 -> "6.5": the facet value of a number (4 decimals)."""
    text = f"{round(float(value), 4):.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class Field:
    """One filterable, facetable value of a job.

    `read` yields the raw values of a stored line (none, one, or several for `multi`
    fields); `show` turns a raw value into its display form (None: not a value);
    the facet key, which filters match, is the display form case-folded.
    """

    name: str  # query parameter, facet name, job_tags.field
    label: str  # the page's singular label ("Model")
    plural: str  # the picker's "any" option ("Models")
    read: Callable[[dict], Iterable[Any]]
    show: Callable[[Any], str | None]
    kind: str = "text"  # "text" | "number" | "choice"
    choices: tuple[str, ...] = ()
    multi: bool = False  # several values per job (packs, LoRAs)
    facet: bool = True  # counted in /api/facets and offered as a picker
    groups: bool = False  # the value shown differs from the raw one (a model without its file extension)
    description: str = ""
    review: bool = False  # read from the job's review state (reviews.py), not from its record
    whole: tuple[int, int] | None = None  # a number field of integers in this range only (a rating: 0 to 5)

    def tag(self, raw: Any) -> tuple[str, str] | None:
        """(facet key, display) of one raw value, or None when it is not a value (blank, 0 steps)."""
        display = self.show(raw)
        return (display.casefold(), display) if display else None

    def values(self, line: dict) -> list[tuple[str, str]]:
        """The distinct (key, display) pairs of a stored line, in reading order."""
        found: dict[str, str] = {}
        for raw in self.read(line):
            tag = self.tag(raw)
            if tag is not None:
                found.setdefault(tag[0], tag[1])
        return list(found.items())

    def parse(self, text: str) -> str:
        """A query parameter value -> the facet key it filters by; ValueError says why not."""
        if self.kind == "choice" and text.strip().casefold() not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, got {text[:40]!r}")
        if self.whole:  # `image_rating=7` or `=2.5` is no job's value: it matched nothing, a 200
            low, high = self.whole
            try:
                whole = int(text)
            except ValueError:
                raise ValueError(f"must be an integer from {low} to {high}, got {text[:40]!r}") from None
            if not low <= whole <= high:
                raise ValueError(f"must be an integer from {low} to {high}, got {whole}")
            return str(whole)
        if self.kind == "number":
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"must be a number, got {text[:40]!r}") from None
            if not math.isfinite(number):  # nan, inf, 1e999: no job's value, and no canonical form
                raise ValueError(f"must be a finite number, got {text[:40]!r}")
            return canonical_number(number).casefold()
        tag = self.tag(text)
        return tag[0] if tag else text.strip().casefold()

    def shown(self, text: str) -> str:
        """A query parameter value as the facets list the value it filters by ("dpmpp_2m" ->
        "DPM++ 2M", "7.0" -> "7"), so that a link's spelling finds its facet entry. Only for a
        text `parse` accepts."""
        if self.kind == "number":
            return canonical_number(float(text))
        tag = self.tag(text)
        return tag[1] if tag else text.strip()

    def describe(self) -> dict:
        """What the page needs to build a picker (GET /api/fields)."""
        return {
            "name": self.name,
            "label": self.label,
            "plural": self.plural,
            "kind": self.kind,
            "multi": self.multi,
            "facet": self.facet,
            "choices": list(self.choices) or None,
            "description": self.description,
        }


# ---------------------------------------------------------------- readers and display forms


def _one(key: str) -> Callable[[dict], list]:
    return lambda line: [line.get(key)]


def _names(key: str) -> Callable[[dict], list]:
    return lambda line: [item.get("name") for item in line.get(key) or () if isinstance(item, dict)]


def _text(raw: Any) -> str | None:
    return raw.strip() if isinstance(raw, str) else None


def _words(raw: Any) -> str | None:
    """Whitespace collapsed, as review tags are stored (reviews.clean_tags)."""
    return " ".join(raw.split()) if isinstance(raw, str) else None


def _file_name(raw: Any) -> str | None:
    """Model-like names group without folder, extension or ` [hash]` (SPEC §1.3)."""
    return model_display(raw) if isinstance(raw, str) else None


def _positive(kind: type) -> Callable[[Any], str | None]:
    """A number that is a value only when above 0 (StableNew writes 0 for "unknown")."""

    def show(raw: Any) -> str | None:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not raw > 0:
            return None
        return str(int(raw)) if kind is int else canonical_number(raw)

    return show


def _positive_or_zero(raw: Any) -> str | None:
    """A rating: 0 is a value here (the worst), unlike steps or CFG."""
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        return None
    return str(raw)


def _sampler_label(raw: Any) -> str | None:
    """One name for a sampler whichever UI or pipeline wrote it, A1111's: `dpmpp_2m` (ComfyUI),
    `dpmpp_2m_k` (InvokeAI) and `DPM++ 2M Karras` (A1111 before 1.9) are `DPM++ 2M`. The
    record keeps what was written; the facet and the filter use this."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    return sampler_name(split_sampler(raw)[0])[0]


def scheduler_in_sampler(raw: Any) -> str | None:
    """The scheduler a sampler name carries (`DPM++ 2M Karras`, InvokeAI's `dpmpp_2m_k`: Karras),
    as the scheduler facet names it; None when it carries none."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    name, scheduler = split_sampler(raw)
    return _scheduler_label(scheduler or sampler_name(name)[1])


def _scheduler_label(raw: Any) -> str | None:
    """`karras` (ComfyUI) is `Karras`, as A1111 writes it."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    return SCHEDULERS.get(raw.strip().lower(), raw.strip())


def _scheduler(line: dict) -> list:
    """The scheduler given, unless it is blank or "automatic" and the A1111 sampler name
    carries one (`DPM++ 2M Karras`): then that one."""
    given, raw = line.get("scheduler"), line.get("sampler")
    folded = (split_sampler(raw)[1] or sampler_name(raw)[1]) if isinstance(raw, str) else None
    if isinstance(given, str) and given.strip() and not (folded and given.strip().casefold() == "automatic"):
        return [given]
    return [folded]


def _status(line: dict) -> list:
    return [line.get("status") or "completed"]


def _experiment(key: str) -> Callable[[dict], list]:
    def read(line: dict) -> list:
        experiment = line.get("experiment")
        return [experiment.get(key)] if isinstance(experiment, dict) else []

    return read


def _value(raw: Any) -> str | None:
    """A setting's value under test: a number by value (10.0 and "10.0" -> "10"), else its text."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return canonical_number(raw)
    text = _text(raw)
    try:
        number = float(text) if text else None
    except ValueError:
        return text
    return canonical_number(number) if number is not None and math.isfinite(number) else text


# fmt: off
FIELDS: tuple[Field, ...] = (
    Field("pack", "Pack", "Packs", read=lambda line: line.get("packs") or (), show=_text, multi=True,
          description="prompt pack name"),
    Field("model", "Model", "Models", read=_one("model"), show=_file_name, groups=True,
          description="checkpoint; folder, extension and [hash] are ignored"),
    Field("vae", "VAE", "VAEs", read=_one("vae"), show=_file_name, groups=True,
          description="VAE; folder and extension are ignored"),
    Field("sampler", "Sampler", "Samplers", read=_one("sampler"), show=_sampler_label, groups=True,
          description="sampler, named as A1111 does whichever UI wrote it (`dpmpp_2m` is `DPM++ 2M`); "
          "an A1111 name such as `DPM++ 2M Karras` counts as `DPM++ 2M`, and as a filter is `DPM++ 2M` "
          "with scheduler `Karras`"),
    Field("scheduler", "Scheduler", "Schedulers", read=_scheduler, show=_scheduler_label, groups=True,
          description="scheduler, or the one folded into an A1111 sampler name"),
    Field("steps", "Steps", "Steps", read=_one("steps"), show=_positive(int), kind="number",
          description="sampling steps"),
    Field("cfg_scale", "CFG", "CFG", read=_one("cfg_scale"), show=_positive(float), kind="number",
          description="CFG scale"),
    Field("lora", "LoRA", "LoRAs", read=_names("loras"), show=_file_name, multi=True, groups=True,
          description="LoRA name; folder, extension and [hash] are ignored"),
    Field("embedding", "Embedding", "Embeddings", read=_names("embeddings"), show=_file_name, multi=True,
          groups=True, description="textual inversion embedding"),
    Field("status", "Status", "Status", read=_status, show=_text, kind="choice", choices=STATUSES),
    Field("experiment", "Experiment", "Experiments", read=_experiment("name"), show=_text,
          description="the experiment a job was part of (StableNew learning experiments)"),
    Field("variable", "Variable", "Variables", read=_experiment("variable"), show=_text,
          description="the setting an experiment varied, e.g. `CFG Scale`"),
    Field("variant", "Value", "Values", read=_experiment("value"), show=_value,
          description="this job's value of the setting under test"),
    Field("generator", "Generator", "Generators", read=_one("generator"), show=_text,
          description="what made the image (AUTOMATIC1111, Forge, ComfyUI, ...; imported images)"),
    Field("run_id", "Run", "Runs", read=_one("run_id"), show=_text, facet=False,
          description="the pipeline run a job belongs to (many jobs share one)"),
    # From the review events (reviews.py): `read` gets the job's review state.
    Field("tag", "Tag", "Tags", read=lambda state: state.get("tags") or (), show=_words, multi=True, review=True,
          description="a reason tag given in review (`bad hands`)"),
    Field("flag", "Flag", "Flags", read=lambda state: [state.get("flag")], show=_text, kind="choice",
          choices=("pick", "reject"), review=True, description="pick or reject"),
    Field("image_rating", "Image rating", "Image ratings", read=lambda state: (state.get("images") or {}).values(),
          show=_positive_or_zero, kind="number", multi=True, review=True, whole=(0, 5),
          description="a rating given to one of the job's images (any of them)"),
)
# fmt: on
BY_NAME: dict[str, Field] = {field.name: field for field in FIELDS}
RECORD_FIELDS: tuple[Field, ...] = tuple(field for field in FIELDS if not field.review)
REVIEW_FIELDS: tuple[Field, ...] = tuple(field for field in FIELDS if field.review)
FACETED: tuple[Field, ...] = tuple(field for field in FIELDS if field.facet)


def line_tags(line: dict) -> list[tuple[str, str, str]]:
    """(field, key, display) of every field value of a stored line: its job_tags rows."""
    return [(field.name, key, display) for field in FIELDS for key, display in field.values(line)]
