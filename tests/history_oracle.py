"""A history dataset for the query tests and an independent oracle for what the API must answer.

The oracle works from the generated input records (SPEC §1.1 resolution, §1.3 detection,
§2.1 filters and sorts) and from the byte offsets of the lines in the journal file (the
tie-breaking key). It shares no SQL with the project: only `prompts.detect`, which the
spec defines, and a normalisation of model names of its own.
"""

from __future__ import annotations

import copy
import random
import re
import unicodedata
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson

from learning_svc import gen
from learning_svc.prompts import detect

FIELDS = (
    "pack",
    "model",
    "vae",
    "sampler",
    "scheduler",
    "steps",
    "cfg_scale",
    "lora",
    "embedding",
    "status",
    "experiment",
    "variable",
    "variant",
    "generator",
    "tag",  # from review events: the job's current reason tags, flag and image ratings
    "flag",
    "image_rating",
)
REVIEW_FIELDS = ("tag", "flag", "image_rating")
FILE_NAMES = ("model", "vae", "lora", "embedding")  # grouped without folder, extension and [hash]
NUMBERS = ("steps", "cfg_scale")
SORTS = ("-completed_at", "completed_at", "-rating", "rating", "-duration_sec", "duration_sec")
TIE_AT = 1764000900.25  # completed_at of the hand-made tie block (inside the generated range)


# ---------------------------------------------------------------- the dataset


def dataset_records(n: int, seed: int) -> list[dict]:
    """`n` generated records followed by hand-made shapes the generator does not produce."""
    records = list(gen.generate_records(n, seed=seed))
    extra = list(gen.generate_records(80, seed=seed + 1000, start=TIE_AT - 50))
    for i, r in enumerate(extra):
        r["job_id"] = f"extra-{i:03d}-{r['job_id']}"[:128]
    tie_block, unknown_duration, variants, bare = extra[:36], extra[36:52], extra[52:72], extra[72:]
    for i, r in enumerate(tie_block):  # one instant for 36 jobs; durations tie in threes
        r["completed_at"] = TIE_AT
        r["started_at"] = TIE_AT - 40.0 - i // 3
    for i, r in enumerate(unknown_duration):  # no started_at: duration unknown (sorts as -1) or given
        r.pop("started_at")
        if i % 4 == 0:
            r["duration_sec"] = 0.0
    for i, r in enumerate(variants):  # the same facet values written differently (SPEC §1.3, §2.1)
        model = r["run_config"]["model"].split(".safetensors")[0]
        r["model"] = [
            f"models\\Stable-diffusion\\{model.upper()}.safetensors [dd08fa32f9]",
            f"/opt/sd/models/{model}.ckpt",
            f"{model.lower()}.safetensors",
            f"  {model}  ",
        ][i % 4]
        r["sampler"] = r["run_config"]["sampler"].lower() if i % 2 else r["run_config"]["sampler"].upper()
        r["scheduler"] = f" {r['run_config']['scheduler'].swapcase()} "
        r["packs"] = [p.lower() for p in r["packs"]] + (["Extra Pack"] if i % 3 == 0 else [])
        if i % 2:  # listed explicitly: detection is not used, whatever the prompt says
            r["loras"] = [{"name": "ADD-DETAIL_XL", "weight": 0.5}, {"name": "Custom LoRA", "weight": 1.0}]
            r["embeddings"] = []
        r["status"] = ("completed", "failed", "cancelled")[i % 3]
        r["run_config"]["prompt"] = f"Café crème naïve élan, variant {i} " + r["run_config"]["prompt"]
    for r in bare:  # nothing to facet on but the status
        r.update(run_config={}, stages={}, packs=[], randomization_plan=None)
    return records + extra


def post_all(client_factory, records: list[dict], threads: int = 8) -> None:
    """POST every record, several at a time (the service commits them in groups)."""

    def post(record):
        response = client_factory().post("/api/jobs", data=orjson.dumps(record), content_type="application/json")
        assert response.status_code == 201, response.get_data(as_text=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, records))


def rating_events(records: list[dict], seed: int) -> list[tuple[str, int | None]]:
    """Generated ratings (some re-rated, some cleared), plus a few more for the tie block."""
    events = list(gen.generate_ratings([r["job_id"] for r in records], seed=seed))
    ties = [r["job_id"] for r in records if r["job_id"].startswith("extra-")][:36]
    events += [(job_id, 4) for job_id in ties[::2]] + [(job_id, None) for job_id in ties[::6]]
    return events


TAG_WORDS = ("bad hands", "oversaturated", "extra limbs", "blurry", "wrong pose", "Great light")


def review_events(records: list[dict], seed: int) -> list[tuple[str, int | None, dict]]:
    """(job_id, output, set) in the order applied: flags, tags added and removed, image ratings
    (re-rated and cleared), sub-scores and notes, on about a third of the jobs."""
    rng = random.Random(seed)
    events = []
    for record in records:
        if rng.random() > 0.35:
            continue
        job_id, outputs = record["job_id"], len(record.get("outputs") or [])
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(("flag", "tags", "tags", "image", "image", "note", "scores"))
            if kind == "flag":
                events.append((job_id, None, {"flag": rng.choice(("pick", "reject", None))}))
            elif kind == "tags":
                events.append((job_id, None, {"tags": rng.sample(TAG_WORDS, rng.randint(0, 3))}))
            elif kind == "image" and outputs:
                events.append((job_id, rng.randrange(outputs), {"rating": rng.choice((0, 1, 3, 4, 5, 5, None))}))
            elif kind == "note":
                events.append((job_id, None, {"note": rng.choice(("keeper", "too dark", ""))}))
            elif kind == "scores":
                events.append((job_id, None, {"scores": {"anatomy": rng.randint(0, 5), "composition": None}}))
    return events


def final_reviews(events) -> dict[str, dict]:
    """Each job's review state after its events: the latest value per key (per image)."""
    states: dict[str, dict] = defaultdict(dict)
    for job_id, output, changes in events:
        state = states[job_id]
        if output is not None:
            images = state.setdefault("images", {})
            if changes["rating"] is None:
                images.pop(output, None)
            else:
                images[output] = changes["rating"]
        if "flag" in changes:
            state["flag"] = changes["flag"]
        if "tags" in changes:
            state["tags"] = list(changes["tags"])
    return states


def review_all(client_factory, events, threads: int = 8) -> None:
    """Apply review events: each job's in order (single requests and, every few, one batch)."""
    by_job: dict[str, list] = defaultdict(list)
    for job_id, output, changes in events:
        by_job[job_id].append((output, changes))

    def review(item):
        job_id, changes_in_order = item
        client = client_factory()
        for i, (output, changes) in enumerate(changes_in_order):
            if output is not None:
                if changes["rating"] is None:
                    response = client.delete(f"/api/jobs/{job_id}/outputs/{output}/rating")
                else:
                    response = client.put(f"/api/jobs/{job_id}/outputs/{output}/rating", json=changes)
            elif i % 3 == 2:  # the batch endpoint, one item
                body = {"items": [{"job_id": job_id, "set": changes}], "source": "test"}
                response = client.post("/api/ratings:batch", json=body)
            else:
                response = client.post(f"/api/jobs/{job_id}/review", json=changes)
            assert response.status_code == 200, response.get_data(as_text=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(review, by_job.items()))


def rate_all(client_factory, events: list[tuple[str, int | None]], threads: int = 8) -> None:
    """Apply rating events: each job's events in order, different jobs at the same time."""
    by_job: dict[str, list] = defaultdict(list)
    for job_id, rating in events:
        by_job[job_id].append(rating)

    def rate(item):
        job_id, ratings = item
        client = client_factory()
        for rating in ratings:
            if rating is None:
                response = client.delete(f"/api/jobs/{job_id}/rating")
            else:
                response = client.put(f"/api/jobs/{job_id}/rating", json={"rating": rating})
            assert response.status_code == 200, response.get_data(as_text=True)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(rate, by_job.items()))


def journal_offsets(path) -> dict[str, int]:
    """job_id -> byte offset of its line in learning_log_v2.jsonl (the stable unique key)."""
    offsets, offset = {}, 0
    with open(path, "rb") as f:
        for line in f:
            offsets[orjson.loads(line)["job_id"]] = offset
            offset += len(line)
    return offsets


# ---------------------------------------------------------------- normalisation

_MODEL_HASH = re.compile(r"\s*\[[0-9a-f]+\]\s*$", re.I)
_MODEL_FILE = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$", re.I)


def model_group(raw: str) -> str:
    """`dir\\juggernautXL.safetensors [dd08fa32f9]` -> `juggernautXL` (SPEC §1.3)."""
    name = _MODEL_HASH.sub("", raw.strip()).replace("\\", "/").rsplit("/", 1)[-1]
    return _MODEL_FILE.sub("", name).strip()


# A1111 before 1.9 named samplers with their scheduler ("DPM++ 2M Karras").
A1111_SCHEDULERS = (
    "Karras",
    "Exponential",
    "Polyexponential",
    "SGM Uniform",
    "Align Your Steps",
    "KL Optimal",
    "Beta",
    "Simple",
    "Normal",
    "Uniform",
    "DDIM",
    "Turbo",
)


def sampler_parts(raw: str) -> tuple[str, str | None]:
    name = raw.strip()
    for scheduler in sorted(A1111_SCHEDULERS, key=len, reverse=True):
        if name.lower().endswith(" " + scheduler.lower()) and len(name) > len(scheduler) + 1:
            return name[: -len(scheduler)].strip(), name[-len(scheduler) :]
    return name, None


def sampler_label(raw: str) -> tuple[str, str | None]:
    """Other UIs' sampler names in A1111's words (the vocabulary's data is the service's own,
    prompts.SAMPLERS): `dpmpp_2m` -> DPM++ 2M; InvokeAI's `dpmpp_2m_k` -> (DPM++ 2M, Karras)."""
    from learning_svc.prompts import SAMPLERS

    name = raw.strip()
    key = name.lower()
    key = key[2:] if key.startswith("k_") else key
    key = key[:-4] if key.endswith("_gpu") else key
    if key.endswith("_k") and key[:-2] in SAMPLERS:
        return SAMPLERS[key[:-2]], "Karras"
    return SAMPLERS.get(key, name), None


def number_text(value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return f"{round(float(value), 4):.4f}".rstrip("0").rstrip(".")


def display_of(field_name: str, raw) -> str | None:
    """How a value is shown and grouped (None: not a value)."""
    if field_name == "image_rating":  # 0 is a rating here (the worst), not "unknown"
        try:
            number = int(str(raw).strip())
        except (TypeError, ValueError):
            return None
        return str(number) if number >= 0 else None
    if field_name == "variant":
        try:
            return f"{round(float(raw), 4):.4f}".rstrip("0").rstrip(".")
        except (TypeError, ValueError):
            pass
    if field_name in NUMBERS:
        return number_text(raw) if not isinstance(raw, str) else number_text(float(raw))
    if not isinstance(raw, str) or not raw.strip():
        return None
    if field_name in FILE_NAMES:
        return model_group(raw) or None
    if field_name == "sampler":
        return sampler_label(sampler_parts(raw)[0])[0]
    if field_name == "scheduler":
        from learning_svc.prompts import SCHEDULERS

        return SCHEDULERS.get(raw.strip().lower(), raw.strip())
    return raw.strip()


def key_of(field_name: str, raw) -> str:
    """The case-insensitive value a filter or facet compares."""
    return (display_of(field_name, raw) or "").casefold()


_TOKEN = re.compile(r"[^\W_]+")  # runs of letters and digits


def _fold(token: str) -> str:
    if token.isascii():
        return token.lower()
    return "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn").lower()


def _cjk(ch: str) -> bool:
    """An ideograph, a kana or a Hangul syllable (told by its Unicode name, not by ranges)."""
    name = unicodedata.name(ch, "")
    return name.startswith(
        ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA", "HANGUL SYLLABLE")
    )


def fts_tokens(text: str) -> list[str]:
    """FTS5 unicode61 (remove_diacritics 2): letters and digits form tokens, anything else
    separates them; tokens are lower-cased without diacritics. A CJK character is a token of
    its own (the service spaces them out: languages written without spaces between words)."""
    tokens = []
    for token in _TOKEN.findall(text):
        run = ""
        for ch in token:
            if _cjk(ch):
                if run:
                    tokens.append(_fold(run))
                tokens.append(_fold(ch))
                run = ""
            else:
                run += ch
        if run:
            tokens.append(_fold(run))
    return tokens


def _has_phrase(tokens: list[str], phrase: list[str], prefix: bool) -> bool:
    """Does `phrase` occur in `tokens`, its last token as a prefix when `prefix`?"""
    *exact, last = phrase
    for i in range(len(tokens) - len(phrase) + 1):
        if tokens[i : i + len(exact)] == exact:
            token = tokens[i + len(exact)]
            if token.startswith(last) if prefix else token == last:
                return True
    return False


# ---------------------------------------------------------------- the oracle


@dataclass
class Job:
    job_id: str
    offset: int
    record: dict  # the input record, as posted
    status: str
    completed_at: float
    duration: float | None
    tags: dict[str, dict[str, str]]  # field -> {key: raw value as in this record}
    columns: list[list[str]]  # FTS tokens of job_id, packs, prompt, negative prompt
    rating: int | None = None

    def sort_key(self, sort: str):
        name = sort.lstrip("-")
        if name == "completed_at":
            return self.completed_at
        if name == "duration_sec":
            # the index sorts durations to the millisecond (index/project.py duration_key)
            return -1.0 if self.duration is None else float(round(self.duration * 1000))
        if self.rating is None:  # unrated last in both directions
            return -1 if sort == "-rating" else 6
        return self.rating


def _resolve_number(record: dict, name: str):
    """A top-level number, else the run_config or stages.txt2img one."""
    if record.get(name) is not None:
        return record[name]
    for source in (record.get("run_config") or {}, (record.get("stages") or {}).get("txt2img") or {}):
        value = source.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return None


def _resolve(record: dict, name: str, aliases: tuple[str, ...] = ()):
    """A top-level field, else the run_config or stages.txt2img value (SPEC §1.1)."""
    if record.get(name) is not None:
        return record[name]
    for source in (record.get("run_config") or {}, (record.get("stages") or {}).get("txt2img") or {}):
        for key in (name, *aliases):
            if isinstance(source.get(key), str) and source[key]:
                return source[key]
    return None


def oracle_job(record: dict, offset: int) -> Job:
    prompt, negative = _resolve(record, "prompt"), _resolve(record, "negative_prompt")
    loras, embeddings = detect(prompt, negative)
    sampler, scheduler = _resolve(record, "sampler", ("sampler_name",)), _resolve(record, "scheduler")
    folded = (sampler_parts(sampler)[1] or sampler_label(sampler)[1]) if sampler else None
    if folded and (not scheduler or scheduler.strip().lower() == "automatic"):
        scheduler = folded
    raw = {
        "pack": record.get("packs") or [],
        "model": [_resolve(record, "model", ("sd_model_checkpoint", "model_name"))],
        "vae": [_resolve(record, "vae", ("sd_vae",))],
        "sampler": [sampler_parts(sampler)[0] if sampler else None],
        "scheduler": [scheduler],
        "steps": [_resolve_number(record, "steps")],
        "cfg_scale": [_resolve_number(record, "cfg_scale")],
        "lora": [x["name"] for x in record["loras"]] if "loras" in record else [x["name"] for x in loras],
        "embedding": (
            [x["name"] for x in record["embeddings"]] if "embeddings" in record else [x["name"] for x in embeddings]
        ),
        "status": [record.get("status", "completed")],
        "generator": [record.get("generator")],
        **{name: [] for name in REVIEW_FIELDS},  # filled from the review events (Oracle.build)
        **{
            name: [(record.get("experiment") or {}).get(key)]
            for name, key in (("experiment", "name"), ("variable", "variable"), ("variant", "value"))
        },
    }
    tags = {}
    for name, values in raw.items():
        tags[name] = {}
        for value in values:
            if display_of(name, value):
                tags[name].setdefault(key_of(name, value), value)
    duration = record.get("duration_sec")
    if duration is None and record.get("started_at") is not None:
        duration = float(record["completed_at"]) - float(record["started_at"])
    columns = [
        fts_tokens(record["job_id"]),
        fts_tokens(" ".join(record.get("packs") or [])),
        fts_tokens(prompt or ""),
        fts_tokens(negative or ""),
    ]
    return Job(
        record["job_id"], offset, record, raw["status"][0], float(record["completed_at"]), duration, tags, columns
    )


@dataclass
class Oracle:
    jobs: list[Job]  # in journal order
    by_id: dict[str, Job] = field(init=False)
    displays: dict[str, dict[str, str]] = field(init=False)  # field -> key -> first spelling
    _selected: dict = field(init=False, default_factory=dict)

    def __post_init__(self):
        self.jobs.sort(key=lambda job: job.offset)
        self.by_id = {job.job_id: job for job in self.jobs}
        self.displays = {name: {} for name in FIELDS}
        for job in self.jobs:
            for name in FIELDS:
                for key, raw in job.tags[name].items():
                    self.displays[name].setdefault(key, display_of(name, raw))

    @classmethod
    def build(cls, records: list[dict], offsets: dict[str, int], events, reviews=()) -> Oracle:
        jobs = {r["job_id"]: oracle_job(copy.deepcopy(r), offsets[r["job_id"]]) for r in records}
        for job_id, rating in events:  # the last event for a job is its rating
            jobs[job_id].rating = rating
        for job_id, state in final_reviews(reviews).items():
            tags = jobs[job_id].tags
            tags["flag"] = {state["flag"]: state["flag"]} if state.get("flag") else {}
            tags["tag"] = {tag.casefold(): tag for tag in state.get("tags", [])}
            tags["image_rating"] = {str(r): r for r in sorted(set(state.get("images", {}).values()))}
        return cls(list(jobs.values()))

    # -- filters (SPEC §2.1)
    @staticmethod
    def predicate(params: dict):
        """A test of one job against the query parameters of GET /api/jobs."""
        wanted = {name: {key_of(name, v) for v in _values(params, name) if v.strip()} for name in FIELDS}
        if "image_rating_min" in params:  # a range of image ratings: its values from there up
            at_least = {str(n) for n in range(int(params["image_rating_min"]), 6)}
            wanted["image_rating"] = (
                (wanted["image_rating"] & at_least or {"none"}) if wanted["image_rating"] else at_least
            )
        wanted = {name: keys for name, keys in wanted.items() if keys}
        low, high = int(params.get("rating_min", 0)), int(params.get("rating_max", 5))
        rating_filtered = any(k in params for k in ("rating_min", "rating_max")) or params.get("rated") == "true"
        since, until = float(params.get("since", "-inf")), float(params.get("until", "inf"))
        # A word without letters or digits is ignored; the others must each occur in one
        # column as a phrase of tokens, the last one as a prefix when the word ends in *.
        phrases = [
            (phrase, word.endswith("*")) for word in (params.get("q") or "").split() if (phrase := fts_tokens(word))
        ]

        def test(job: Job) -> bool:
            if any(not keys & job.tags[name].keys() for name, keys in wanted.items()):
                return False
            if rating_filtered and (job.rating is None or not low <= job.rating <= high):
                return False
            if params.get("rated") == "false" and job.rating is not None:
                return False
            if not since <= job.completed_at <= until:
                return False
            return all(any(_has_phrase(column, phrase, prefix) for column in job.columns) for phrase, prefix in phrases)

        return test

    def select(self, params: dict) -> list[Job]:
        key = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
        if key not in self._selected:  # ratings do not change once built: cache
            test = self.predicate(params)
            self._selected[key] = [job for job in self.jobs if test(job)]
        return self._selected[key]

    def listing(self, params: dict, sort: str = "-completed_at") -> list[str]:
        """Matching job ids in `sort` order, ties broken by the journal offset."""
        ordered = sorted(
            self.select(params), key=lambda job: (job.sort_key(sort), job.offset), reverse=sort.startswith("-")
        )
        return [job.job_id for job in ordered]

    # -- facets (SPEC §2)
    def facets(self, params: dict, size: int = 1000, newest: int | None = None) -> dict[str, list[dict]]:
        matching = self.select(params)
        if newest is not None:  # only the newest `newest` matching jobs
            keep = set(self.listing(params, "-completed_at")[:newest])
            matching = [job for job in matching if job.job_id in keep]
        result = {}
        for name in FIELDS:
            counts, rated, total = Counter(), Counter(), Counter()
            for job in matching:
                for key in job.tags[name]:
                    counts[key] += 1
                    if job.rating is not None:
                        rated[key] += 1
                        total[key] += job.rating
            keys = sorted(counts, key=lambda k: (-counts[k], k))[:size]
            result[name] = [
                {
                    "value": self.displays[name][k],
                    "count": counts[k],
                    "mean_rating": total[k] / rated[k] if rated[k] else None,
                }
                for k in keys
            ]
        ratings = Counter(job.rating for job in matching)
        order = sorted(ratings, key=lambda r: (-ratings[r], "none" if r is None else str(r)))
        result["rating"] = [
            {"value": r, "count": ratings[r], "mean_rating": None if r is None else float(r)} for r in order
        ]
        return result


def _values(params: dict, name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
