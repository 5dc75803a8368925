"""A StableNew installation's history: job_history.jsonl, learning records and discovered experiments.

StableNew (destroyer42/StableNew2) writes times as naive UTC (`datetime.utcnow()`,
`time.gmtime()`), "" / 0 / 0.0 for what it did not record, and keeps its own names
(positive_prompt, base_model, sampler_name, lora_tags, stage_chain), which the service
looks up itself (records.py). What StableNew itself says about a job stays in the record,
under `extra.stablenew`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import Item, Job, Problem, Rating, Where

TERMINAL = ("completed", "failed", "cancelled")
SOURCE = "stablenew"


def epoch(value: Any) -> float | None:
    """A StableNew time (naive ISO-8601 in UTC, or one with a zone) as epoch seconds."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def rating_id(*parts: Any) -> str:
    """A rating event id made of what identifies the rating in its source."""
    return "stablenew-" + hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:32]


def _known(value: Any) -> Any:
    """StableNew's "unknown" ("", 0, 0.0) as None; anything else as it is."""
    if value in ("", None) or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0):
        return None
    return value


def _read_json_lines(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, object or None, why not) for every non-blank line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as error:
                yield number, None, f"not JSON ({error})"
                continue
            yield number, value, None if isinstance(value, dict) else "not a JSON object"


# ---------------------------------------------------------------- data/job_history.jsonl


def job_history(path: Path) -> Iterator[Item]:
    """One job per job id: its event lines (queued, running, completed...) merged in file order,
    later lines adding what earlier ones lacked (a second `completed` line brings the pack).

    A job's lines are spread over the file (jobs run side by side), so a first pass notes
    where each job's lines are (line number, offset, length: memory flat whatever the
    history's size) and a second reads each job's lines back and merges them.
    """
    positions: dict[str, list[tuple[int, int, int]]] = {}
    for number, offset, raw in _raw_lines(path):
        try:
            line = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            yield Problem(Where(str(path), number), f"not JSON ({error})", "skipped")
            continue
        job_id = line.get("job_id") if isinstance(line, dict) else None
        if not isinstance(job_id, str) or not job_id:
            yield Problem(Where(str(path), number), "a job history line without a job_id", "skipped")
            continue
        positions.setdefault(job_id, []).append((number, offset, len(raw)))
    with open(path, "rb") as f:
        for job_id, lines in positions.items():
            merged: dict = {}
            for _, offset, length in lines:
                f.seek(offset)
                for key, value in json.loads(f.read(length)).items():
                    if value is not None or key not in merged:
                        merged[key] = value
            yield from _finished_job(job_id, merged, Where(str(path), lines[0][0]))


def _raw_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, offset, bytes) of every non-blank line."""
    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                yield number, offset, raw
            offset += len(raw)


def _finished_job(job_id: str, merged: dict, where: Where) -> Iterator[Item]:
    status = merged.get("status")
    if status not in TERMINAL:
        yield Problem(where, f"job {job_id} did not finish (its last status is {status!r})", "skipped")
        return
    body = history_job(merged)
    if body is None:
        yield Problem(where, f"job {job_id} ended ({status}) without a time")
    else:
        yield Job(body, where)


def history_job(merged: dict) -> dict | None:
    """The POST body of one finished StableNew job (its merged history lines)."""
    result = merged.get("result") if isinstance(merged.get("result"), dict) else {}
    run = result.get("result") if isinstance(result.get("result"), dict) else {}
    config = result.get("config") if isinstance(result.get("config"), dict) else {}
    snapshot = merged.get("snapshot") if isinstance(merged.get("snapshot"), dict) else None
    njr = snapshot.get("normalized_job", snapshot) if snapshot else None
    completed = epoch(merged.get("completed_at")) or epoch(merged.get("created_at"))
    if completed is None:
        return None
    started = epoch(merged.get("started_at"))
    error = merged.get("error_message") or result.get("error") or run.get("error")
    status = merged["status"]
    if status == "completed" and (error or run.get("success") is False):
        status = "failed"  # StableNew's "completed" means the job ran, not that it succeeded
        error = error or "StableNew reported success: false"
    run_config = dict(config)
    if njr:
        run_config["normalized_job"] = njr
    variant = run.get("variants")[0] if isinstance(run.get("variants"), list) and run.get("variants") else {}
    stages = {
        name: cfg
        for name, cfg in (variant or {}).items()
        if name in ("txt2img", "img2img", "adetailer", "upscale") and isinstance(cfg, dict)
    }
    packs = [
        pack
        for pack in (
            merged.get("prompt_pack_id"),
            (njr or {}).get("prompt_pack_name"),
            (njr or {}).get("prompt_pack_id"),
            config.get("pack_name"),
        )
        if isinstance(pack, str) and pack.strip() and pack != "manual"
    ]
    outputs = [
        p
        for p in (run.get("metadata") or {}).get("stage_outputs") or (njr or {}).get("output_paths") or ()
        if isinstance(p, str) and p.strip()
    ]
    kept = {k: v for k, v in merged.items() if k not in ("job_id", "status", "started_at", "completed_at", "snapshot")}
    if isinstance(kept.get("result"), dict):
        kept["result"] = {k: v for k, v in kept["result"].items() if k != "config"}  # the config is the run_config
    body = {
        "job_id": merged["job_id"],
        "status": status,
        "completed_at": completed,
        "packs": list(dict.fromkeys(packs))[:1],
        "run_config": run_config,
        "stages": stages,
        "outputs": outputs,
        "extra": {SOURCE: {"source": "job_history", **kept}, **({"error": str(error)} if error else {})},
    }
    if started is not None and started <= completed:
        body["started_at"] = started
    if isinstance(run.get("run_id"), str) and run["run_id"]:
        body["run_id"] = run["run_id"]
    if njr:
        index, total = njr.get("variant_index"), njr.get("variant_total")
        if isinstance(index, int) and isinstance(total, int) and 0 <= index < total:
            body["variant_index"], body["variant_total"] = index, total
    return body


# ---------------------------------------------------------------- data/learning/learning_records.jsonl

# StableNew's names of the setting an experiment varies -> the record field it is.
VARIABLES = {
    "cfg scale": "cfg_scale",
    "cfg_scale": "cfg_scale",
    "steps": "steps",
    "sampler": "sampler",
    "scheduler": "scheduler",
    "model": "model",
    "checkpoint": "model",
    "vae": "vae",
    "seed": "seed",
    "width": "width",
    "height": "height",
}


def learning_records(path: Path) -> Iterator[Item]:
    """One job per rated image (StableNew keys a rating by experiment and image path; a later
    line for the same image is a re-rating), with its rating, notes and experiment."""
    seen: set[str] = set()
    for number, line, problem in _read_json_lines(path):
        where = Where(str(path), number)
        if problem:
            yield Problem(where, problem, "skipped")
            continue
        metadata = line.get("metadata") if isinstance(line.get("metadata"), dict) else {}
        image = metadata.get("image_path")
        timestamp = epoch(line.get("timestamp"))
        if timestamp is None:
            yield Problem(where, "a learning record without a timestamp")
            continue
        job_id = line.get("job_id") if isinstance(line.get("job_id"), str) and line.get("job_id") else None
        if job_id is None:
            if not isinstance(image, str) or not image:
                yield Problem(where, "a learning record with neither a job_id nor an image_path")
                continue
            name = metadata.get("experiment_name") or ""
            job_id = "stablenew-" + hashlib.sha256(f"{name}\x00{image}".encode()).hexdigest()[:24]
        if job_id not in seen:
            seen.add(job_id)
            yield Job(learning_job(job_id, line, metadata, image, timestamp), where)
        rating = metadata.get("user_rating")
        if isinstance(rating, int) and not isinstance(rating, bool) and 1 <= rating <= 5:
            yield Rating(job_id, rating, timestamp, SOURCE, rating_id(job_id, line.get("timestamp"), rating), where)


def learning_job(job_id: str, line: dict, metadata: dict, image: Any, timestamp: float) -> dict:
    base = line.get("base_config") if isinstance(line.get("base_config"), dict) else {}
    variable, value = metadata.get("variable_under_test"), metadata.get("variant_value")
    body: dict[str, Any] = {
        "job_id": job_id,
        "completed_at": timestamp,
        "outputs": [image] if isinstance(image, str) and image else [],
        "run_config": base,
        "experiment": {
            k: v
            for k, v in {
                "name": metadata.get("experiment_name"),
                "variable": variable,
                "value": value,
                "description": _known(metadata.get("experiment_description")),
                "context": metadata.get("learning_context"),
            }.items()
            if v not in (None, "")
        },
    }
    for name in ("model", "sampler", "scheduler", "steps", "cfg_scale"):
        if (known := _known(line.get(f"primary_{name}"))) is not None:
            body[name] = known
    target = VARIABLES.get(str(variable or "").strip().casefold())
    if target and value not in (None, "") and target not in body:
        body[target] = value  # the value under test is this job's setting
    if base.get("prompt"):
        body["prompt"] = base["prompt"]
    notes = metadata.get("user_notes")
    kept = {k: v for k, v in line.items() if k not in ("base_config", "metadata", "timestamp")}
    kept["metadata"] = {k: v for k, v in metadata.items() if k not in ("image_path", "user_notes")}
    body["extra"] = {
        SOURCE: {"source": "learning_records", **kept},
        **({"user_notes": notes} if isinstance(notes, str) and notes.strip() else {}),
    }
    return body


# ---------------------------------------------------------------- data/learning/discovered_experiments/<group>/


def is_discovered_group(path: Path) -> bool:
    return path.is_dir() and (path / "items.json").is_file() and (path / "meta.json").is_file()


def discovered_group(folder: Path, output_root: Path) -> Iterator[Item]:
    """One job per image item of a discovered-experiment group, with its review: the rating
    (StableNew's 0 is unrated) and notes; the group is the experiment, its varying fields the
    variable."""
    where = Where(str(folder))
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        yield Problem(where, f"cannot read the group: {error}")
        return
    try:
        review = json.loads((folder / "review_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        review = {}
    except (OSError, ValueError) as error:
        yield Problem(
            Where(str(folder / "review_state.json")),
            f"cannot read the reviews ({error}); items imported unrated",
            "skipped",
        )
        review = {}
    if not isinstance(meta, dict) or not isinstance(items, list):
        yield Problem(where, "meta.json is not an object or items.json not a list")
        return
    group = meta.get("group_id") or folder.name
    varying = [f for f in meta.get("varying_fields") or () if isinstance(f, str)]
    created = epoch(meta.get("created_at"))
    for number, item in enumerate(items, start=1):
        item_where = Where(str(folder / "items.json"), number)
        if not isinstance(item, dict) or not item.get("item_id"):
            yield Problem(item_where, "an item without an item_id")
            continue
        state = {**item, **(review.get(item["item_id"]) or {})}  # the review state wins, as in StableNew
        job_id = f"{group}-{item['item_id']}"[:128]
        artifact = item.get("artifact_path")
        completed = _mtime(artifact, output_root) or created
        if completed is None:
            yield Problem(item_where, "neither the image nor the group says when it was made")
            continue
        body: dict[str, Any] = {
            "job_id": job_id,
            "completed_at": completed,
            "outputs": [artifact] if isinstance(artifact, str) and artifact else [],
            "run_config": {k: v for k, v in item.items() if k not in ("rating", "rating_notes", "rated_at")},
            "experiment": {
                "name": meta.get("display_name") or group,
                "variable": ", ".join(varying) or None,
                "value": ", ".join(f"{f}={item.get(f)}" for f in varying if _known(item.get(f)) is not None) or None,
                "group_id": group,
            },
            "extra": {SOURCE: {"source": "discovered_experiments", "group": meta, "item_id": item["item_id"]}},
        }
        if isinstance(state.get("rating_notes"), str) and state["rating_notes"].strip():
            body["extra"]["user_notes"] = state["rating_notes"]
        yield Job(body, item_where)
        rating = state.get("rating")
        if isinstance(rating, int) and not isinstance(rating, bool) and 1 <= rating <= 5:
            at = epoch(state.get("rated_at")) or epoch(meta.get("updated_at")) or completed
            yield Rating(job_id, rating, at, SOURCE, rating_id(job_id, state.get("rated_at"), rating), item_where)


def _mtime(artifact: Any, output_root: Path) -> float | None:
    """When the image was written, if it is on this machine (StableNew's paths are relative to its folder)."""
    from ..images import resolve

    if not isinstance(artifact, str) or not artifact:
        return None
    path = resolve(artifact, output_root)
    try:
        return path.stat().st_mtime if path is not None else None
    except OSError:
        return None
