"""A StableNew installation's history files, generated in the shapes StableNew writes them.

For the importer's tests and its benchmark: `data/job_history.jsonl` (event lines per job:
queued, running, completed or failed, some enriched by a second `completed` line with the
pack, some never finished), `data/learning/learning_records.jsonl` (rated experiment
images, some rated again later) and `data/learning/discovered_experiments/<group>/`. The
shapes follow destroyer42/StableNew2 (job_history_store.py, learning_record.py,
discovered_review_store.py): naive UTC times, "" / 0 for what StableNew did not know, its
own key names. Prompts are made up here; nothing comes from a real installation.

    python -m learning_svc.gen_stablenew FOLDER --jobs 1000
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from datetime import UTC, datetime
from pathlib import Path

START = datetime(2025, 11, 22, 23, 51, 39, 174724)  # naive, UTC (datetime.utcnow())
MODELS = ("juggernautXL_ragnarokBy", "realvisxlV50_v50Bakedvae", "sd_xl_base_1.0", "ponyDiffusionV6XL")
SAMPLERS = ("DPM++ 2M", "Euler a", "DPM++ SDE")
PACKS = ("FANTASY_closeup", "PORTRAIT_soft", "LANDSCAPE_wide")
SUBJECTS = ("a lighthouse at dusk", "a castle in fog", "a fox in snow", "a market street", "an old sailor")


def _iso(moment: datetime) -> str:
    return moment.isoformat()  # microseconds dropped when 0, as StableNew's isoformat() does


def _prompt(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)}, masterpiece, <lora:add-detail-xl:{rng.choice((0.3, 0.5, 0.8))}>"


def _result(rng: random.Random, kind: str, job_id: str) -> dict | None:
    config = {
        "prompt": _prompt(rng) if rng.random() < 0.7 else "",
        "model": rng.choice(MODELS + ("",)),
        "sampler": rng.choice(SAMPLERS + ("",)),
        "width": 1024,
        "height": 1024,
        "steps": rng.choice((20, 30)),
        "cfg_scale": rng.choice((6.5, 7.0)),
        "negative_prompt": "",
        "pack_name": None,
        "metadata": {"negative_prompt": ""},
    }
    if kind == "config":
        return {"config": config}
    if kind == "error":
        return {"config": config, "error": "img2img requires input image from previous stage"}
    variant = {
        "txt2img": {
            "steps": config["steps"],
            "sampler_name": config["sampler"] or "Euler a",
            "scheduler": "Karras",
            "cfg_scale": config["cfg_scale"],
            "model": config["model"],
            "vae": "",
            "seed": -1,
            "enabled": True,
        },
        "upscale": {"upscaler": "R-ESRGAN 4x+", "steps": 0, "enabled": False},
    }
    return {
        "config": config,
        "result": {
            "run_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "success": kind == "ok",
            "error": None,
            "variants": [variant],
            "learning_records": [],
            "randomizer_mode": "",
            "randomizer_plan_size": 1,
            "metadata": {"stage_outputs": [f"output\\job_{job_id[:8]}\\txt2img_p01_v01.png"] if kind == "ok" else []},
            "stage_plan": {"stages": []},
            "stage_events": [],
        },
    }


def _snapshot(rng: random.Random, job_id: str) -> dict:
    """asdict(NormalizedJobRecord): StableNew's names, defaults for what it did not know."""
    return {
        "job_id": job_id,
        "config": {},
        "seed": rng.getrandbits(32),
        "variant_index": 0,
        "variant_total": 1,
        "positive_prompt": _prompt(rng) + " <easynegative-neg>",
        "negative_prompt": "blurry",
        "steps": 0,
        "cfg_scale": 0.0,
        "width": 0,
        "height": 0,
        "sampler_name": "",
        "scheduler": "",
        "base_model": "",
        "vae": None,
        "lora_tags": [{"name": "add-detail-xl", "weight": 0.30000000000000004}],
        "positive_embeddings": [],
        "negative_embeddings": ["easynegative"],
        "prompt_pack_id": "",
        "stage_chain": [
            {
                "stage_type": "txt2img",
                "enabled": True,
                "steps": 28,
                "cfg_scale": 5.5,
                "sampler_name": "DPM++ 2M",
                "scheduler": "Karras",
                "model": rng.choice(MODELS),
                "vae": None,
                "extra": {},
            },
            {"stage_type": "adetailer", "enabled": True, "extra": {"prompt": "detailed face <lora:face:0.6>"}},
            {"stage_type": "upscale", "enabled": False, "extra": {}},
        ],
    }


def job_history_lines(jobs: int, seed: int = 0) -> list[dict]:
    """The lines of data/job_history.jsonl for `jobs` jobs, interleaved as a running queue writes them."""
    rng = random.Random(seed)
    lines: list[tuple[float, int, dict]] = []
    for n in range(jobs):
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        created = START.timestamp() + n * 37.5 + rng.random()
        started, completed = created + rng.random() * 2, created + 5 + rng.random() * 60
        fate = rng.random()
        final = "failed" if fate < 0.05 else None if fate < 0.15 else "completed"
        kind = rng.choice(("config", "ok", "not-ok", "error"))
        base = {
            "job_id": job_id,
            "created_at": _iso(datetime.fromtimestamp(created, UTC).replace(tzinfo=None)),
            "status": "queued",
            "payload_summary": "callable payload",
            "started_at": None,
            "completed_at": None,
            "error_message": None,
            "worker_id": "local",
            "run_mode": "queue",
            "result": None,
            "prompt_source": "manual",
            "prompt_pack_id": None,
            "prompt_keys": None,
            "snapshot": _snapshot(rng, job_id) if rng.random() < 0.3 else None,
        }
        at = lambda t: _iso(datetime.fromtimestamp(t, UTC).replace(tzinfo=None))  # noqa: E731
        events = [(created, base), (started, {**base, "status": "running", "started_at": at(started)})]
        if final:
            done = {
                **base,
                "status": final,
                "started_at": at(started),
                "completed_at": at(completed),
                "result": _result(rng, kind, job_id) if final == "completed" else None,
                "error_message": "CUDA out of memory" if final == "failed" else None,
            }
            events.append((completed, done))
            if final == "completed" and rng.random() < 0.3:  # JobHistoryService.record(): the pack comes later
                events.append(
                    (
                        completed + 0.5,
                        {
                            **done,
                            "prompt_source": "pack",
                            "prompt_pack_id": rng.choice(PACKS),
                            "prompt_keys": ["row-1"],
                        },
                    )
                )
        lines += [(when, n, line) for when, line in events]
    return [line for _, _, line in sorted(lines, key=lambda item: (item[0], item[1]))]


def learning_record_lines(images: int, seed: int = 0) -> list[dict]:
    """data/learning/learning_records.jsonl: one line per rating of an experiment's image."""
    rng = random.Random(seed + 1)
    lines = []
    for n in range(images):
        value = float(1 + n % 10)
        stamp = datetime.fromtimestamp(START.timestamp() + 3600 + n * 11, UTC)
        image = f"C:\\Users\\pat\\StableNew\\output\\20260309_learning_CFG\\txt2img_p01_v01_{n:04d}.png"
        line = {
            "base_config": {"cfg scale": value, "prompt": "", "stage": "txt2img"},
            "metadata": {
                "experiment_description": "",
                "experiment_name": f"CFG sweep {n // 10}",
                "image_path": image,
                "learning_context": {"experiment_id": f"CFG sweep {n // 10}", "variant_id": str(value)},
                "user_notes": "too soft" if n % 7 == 0 else "",
                "user_rating": 1 + n % 5,
                "variable_under_test": "CFG Scale",
                "variant_value": value,
            },
            "outputs": [],
            "primary_cfg_scale": 0.0,
            "primary_model": "",
            "primary_sampler": "",
            "primary_scheduler": "",
            "primary_steps": 0,
            "randomizer_mode": "learning_experiment",
            "randomizer_plan_size": 1,
            "run_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "sidecar_priors": {},
            "stage_events": [],
            "stage_plan": [],
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S"),
            "variant_configs": [{"cfg scale": value}],
        }
        lines.append(line)
        if n % 6 == 0:  # rated again a minute later: the later line is the rating
            again = json.loads(json.dumps(line))
            again["metadata"]["user_rating"] = 5 - n % 5
            again["timestamp"] = datetime.fromtimestamp(stamp.timestamp() + 60, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            lines.append(again)
    return lines


def discovered_group(folder: Path, items: int, seed: int = 0, rated: int = 2) -> str:
    """One discovered_experiments/<group>/ folder (items.json, meta.json, review_state.json)."""
    rng = random.Random(seed + 2)
    group = f"disc-{rng.getrandbits(64):016x}"
    path = folder / group
    path.mkdir(parents=True, exist_ok=True)
    entries, review = [], {}
    for n in range(items):
        item_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        model = MODELS[n % len(MODELS)]
        entries.append(
            {
                "item_id": item_id,
                "artifact_path": f"output\\20260106_{group}\\txt2img_p01_v{n:02d}.png",
                "manifest_path": "",
                "stage": "txt2img",
                "model": model,
                "sampler": "",
                "scheduler": "",
                "steps": 0,
                "cfg_scale": 0.0,
                "seed": -1,
                "width": 0,
                "height": 0,
                "positive_prompt": "a castle in fog, <embedding:detail>",
                "negative_prompt": "blurry",
                "extra_fields": {},
                "rating": 0,
                "rating_notes": "",
                "rated_at": "",
            }
        )
        review[item_id] = (
            {
                "rating": 1 + n % 5,
                "rating_notes": "good hands" if n == 0 else "",
                "rated_at": f"2026-03-12T0{n % 10}:15:00Z",
            }
            if n < rated
            else {"rating": 0, "rating_notes": "", "rated_at": ""}
        )
    meta = {
        "created_at": "2026-03-12T01:18:59Z",
        "display_name": "TXT2IMG · varying model",
        "group_id": group,
        "input_lineage_key": "",
        "notes": "",
        "prompt_hash": f"{rng.getrandbits(64):016x}",
        "scan_source_dirs": [],
        "schema_version": "1.0",
        "stage": "txt2img",
        "status": "waiting_review",
        "updated_at": "2026-03-12T01:18:59Z",
        "varying_fields": ["model"],
    }
    (path / "items.json").write_text(json.dumps(entries, indent=2))
    (path / "meta.json").write_text(json.dumps(meta, indent=2))
    (path / "review_state.json").write_text(json.dumps(review, indent=2))
    return group


def write_installation(root: Path, jobs: int = 200, images: int = 20, groups: int = 2, seed: int = 0) -> Path:
    """A StableNew folder: data/job_history.jsonl, data/learning/learning_records.jsonl and groups."""
    data = root / "data"
    (data / "learning" / "discovered_experiments").mkdir(parents=True, exist_ok=True)
    with open(data / "job_history.jsonl", "w", encoding="utf-8") as f:
        for line in job_history_lines(jobs, seed):
            f.write(json.dumps(line, ensure_ascii=True) + "\n")  # StableNew writes with ensure_ascii=True
    with open(data / "learning" / "learning_records.jsonl", "w", encoding="utf-8") as f:
        for line in learning_record_lines(images, seed):
            f.write(json.dumps(line, sort_keys=True) + "\n")
    for n in range(groups):
        discovered_group(data / "learning" / "discovered_experiments", 5, seed + n)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m learning_svc.gen_stablenew", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_installation(args.folder, args.jobs, args.images, args.groups, args.seed)
    print(f"wrote a StableNew installation with {args.jobs} jobs to {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
