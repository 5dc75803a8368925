"""Realistic job records and rating events for tests, benchmarks and the demo.

The records are POST /api/jobs bodies shaped like those of a StableNew-style pipeline
(SPEC §1.1): a full `run_config` snapshot with nested stage configs, `stages`, an
optional `randomization_plan`, packs, outputs with Windows and POSIX paths, epoch
timestamps with many ties on `completed_at`, timings and a shared `run_id`; about 4 KB
each once serialised compactly.

Values are skewed the way real histories are: a few models, samplers, packs, LoRAs and
embeddings are very common and a long tail is rare, so that every filter and facet has
both big and small groups. The prompts carry every token form of SPEC §1.3, including
the awkward ones (`<lyco:…>`, `<lora:name>`, `<lora:name:0.8:0.5>`, bare
`embedding:name`, mixed-case duplicates, negative and float-noise weights), and are
sometimes written in CJK or with emoji.

Everything is deterministic for a given (seed, start): `generate_records(10)` yields the
first ten records of `generate_records(1000)`, and job ids never repeat. Generation is
cheap (lookup tables, no deep copies), so millions of records take seconds, not minutes.

    python -m learning_svc.gen 100000 jobs.jsonl --seed 1 --check
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

try:
    import orjson
except ImportError:  # the generator also runs without the project's dependencies
    orjson = None

DEFAULT_START = 1764000000.0

# ---------------------------------------------------------------- lookup tables
# A table is a tuple of _TABLE_SIZE slots in which each item occupies slots in
# proportion to its weight: `table[getrandbits(_TABLE_BITS)]` is a weighted pick in
# one indexing operation, much faster than random.choices().

_TABLE_BITS = 12
_TABLE_SIZE = 1 << _TABLE_BITS


def _table(weighted: Iterable[tuple[Any, float]]) -> tuple:
    """Lookup table for (item, weight) pairs; every item keeps at least one slot."""
    pairs = list(weighted)
    total = sum(weight for _, weight in pairs)
    counts = [max(1, round(weight / total * _TABLE_SIZE)) for _, weight in pairs]
    counts[counts.index(max(counts))] += _TABLE_SIZE - sum(counts)
    return tuple(item for (item, _), count in zip(pairs, counts) for _ in range(count))


def _zipf(items: Sequence, s: float = 1.2) -> tuple:
    """Lookup table where the item of rank r has weight 1 / r**s (first item commonest)."""
    return _table((item, 1.0 / rank**s) for rank, item in enumerate(items, 1))


def _uniform(items: Sequence) -> tuple:
    return _table((item, 1.0) for item in items)


def _distinct(bits, table: tuple, k: int) -> list:
    """k different items drawn from a lookup table (the table must hold at least k)."""
    picked: list = []
    while len(picked) < k:
        item = table[bits(_TABLE_BITS)]
        if item not in picked:
            picked.append(item)
    return picked


# ---------------------------------------------------------------- vocabulary

# (checkpoint name, family, short hash); first ones are the popular ones.
_MODEL_INFO = (
    ("juggernautXL_ragnarokBy", "sdxl", "dd08fa32f9"),
    ("realvisxlV50_v50Bakedvae", "sdxl", "4e2a1a8c3d"),
    ("dreamshaperXL_v21TurboDPMSDE", "sdxl", "4496b36d48"),
    ("ponyDiffusionV6XL_v6StartWithThisOne", "sdxl", "67ab2fd8ec"),
    ("animagineXL40_v4Opt", "sdxl", "6327eca98b"),
    ("sd_xl_base_1.0", "sdxl", "31e35c80fc"),
    ("epicrealismXL_vxviLastfameRealism", "sdxl", "0a8ef65a9f"),
    ("babesByStableYogiPony_xlV4", "sdxl", "b2c1a8e7f0"),
    ("realisticVisionV60B1_v51HyperVAE", "sd15", "f47e942ad4"),
    ("v1-5-pruned-emaonly", "sd15", "6ce0161689"),
)
_MODELS = _table(zip(_MODEL_INFO, (30, 18, 12, 9, 8, 6, 4, 3, 2, 1)))
_SDXL_MODEL_NAMES = [name for name, family, _ in _MODEL_INFO if family == "sdxl"]
_VAE = {"sdxl": "sdxl_vae.safetensors", "sd15": "vae-ft-mse-840000-ema-pruned.safetensors"}
_SIZES = {
    "sdxl": _table(
        (
            ((1024, 1024), 20),
            ((832, 1216), 18),
            ((768, 1280), 12),
            ((896, 1152), 14),
            ((1024, 1408), 10),
            ((1216, 832), 6),
            ((1344, 768), 3),
            ((512, 768), 2),
        )
    ),
    "sd15": _table((((512, 768), 10), ((512, 512), 6), ((768, 512), 3), ((640, 960), 1))),
}
# Seconds per sampling step, by family.
_STEP_SECONDS = {"sdxl": (0.9, 2.4), "sd15": (0.35, 0.9)}

_SAMPLERS = _table(
    (
        ("DPM++ 2M", 35),
        ("DPM++ 2M SDE", 15),
        ("Euler a", 14),
        ("Euler", 8),
        ("DPM++ SDE", 8),
        ("UniPC", 6),
        ("DDIM", 4),
        ("DPM++ 3M SDE", 3),
        ("Heun", 1),
        ("LMS", 1),
    )
)
_SCHEDULERS = _table(
    (("Karras", 45), ("automatic", 20), ("Normal", 15), ("Exponential", 8), ("SGM Uniform", 7), ("Simple", 5))
)
_STEPS = _table(((25, 20), (30, 18), (34, 16), (28, 14), (20, 12), (40, 10), (42, 3), (50, 3), (8, 2), (60, 1)))
_CFG = _table(
    (
        (7.0, 22),
        (6.0, 16),
        (5.5, 12),
        (7.5, 12),
        (6.499999999999998, 10),
        (5.0, 10),
        (4.5, 6),
        (9.5, 4),
        (3.5, 3),
        (2.0, 2),
        (12.0, 1),
    )
)

_PACK_CATEGORIES = ("PORTRAIT", "FANTASY", "LANDSCAPE", "SCIFI", "PHOTOREAL", "ANIME")
_PACK_STYLES = ("moody", "closeup", "wide", "action", "basic")
# 30 distinct names (category and style cycle with coprime periods 6 and 5).
_PACK_NAMES = [
    f"{_PACK_CATEGORIES[i % 6]}_{_PACK_STYLES[i % 5]}_{(i * 17 + 1) % 50:02d}_{_SDXL_MODEL_NAMES[i * 5 % 8]}"
    for i in range(30)
]
_PACKS = _zipf(_PACK_NAMES, 1.1)

_LORA_BASES = (
    "add-detail",
    "FantasyArt",
    "skin_texture",
    "neon_glow",
    "film_grain",
    "eyes_detail",
    "hand_fix",
    "CinematicStyle",
    "oil_paint",
    "pastel",
    "pixel_art",
    "watercolor_wash",
)
_LORA_SUFFIXES = ("_xl", "_v2", "_SDXL", "_pony", "_v1.5")
_LORAS = _zipf([base + suffix for suffix in _LORA_SUFFIXES for base in _LORA_BASES])  # 60 names
_LORA_KEYWORDS = _table((("<lora:", 95), ("<lyco:", 5)))
# What follows the name: a weight, nothing (weight 1.0) or a weight plus a second number.
_LORA_TAILS = _table(
    (
        (":1.0>", 20),
        (":0.8>", 16),
        (":0.7>", 12),
        (":0.65>", 8),
        (":0.5>", 10),
        (":0.3>", 6),
        (":1.2>", 5),
        (":-0.5>", 4),
        (":-1.0>", 1),
        (":0.25>", 3),
        (":0.39560439560439564>", 4),
        (":0.6000000000000001>", 2),
        (":0.7999999999999999>", 1),
        (">", 4),
        (":0.8:0.5>", 2),
        (":1:0.6>", 1),
    )
)

_EMBEDDING_BASES = (
    "easynegative",
    "SDXLneg",
    "DeepNegative_",
    "negative_hands",
    "bad_anatomy_",
    "ac_neg",
    "zPDXL",
    "Stable_Yogis_Realism_Positives_",
)
_EMBEDDING_SUFFIXES = ("", "V1", "v2", "XL", "_v1.3")
# 40 names, distinct case-insensitively.
_EMBEDDINGS = _zipf([base + suffix for suffix in _EMBEDDING_SUFFIXES for base in _EMBEDDING_BASES])
# (before the name, after the name)
_EMBEDDING_FORMS = _table(
    (
        (("<embedding:", ">"), 60),
        (("(<embedding:", ">:0.9)"), 8),
        (("(<embedding:", ">:0.86)"), 10),
        (("(<embedding:", ">:0.95)"), 10),
        (("(<embedding:", ">:1.1)"), 8),
        (("embedding:", ""), 4),
    )
)

_SUBJECTS = _uniform(
    (
        "a castle on a cliff at dawn",
        "cyberpunk street market",
        "portrait of a dancer in motion",
        "still life with pomegranates",
        "misty forest with a lone deer",
        "astronaut reading in a library",
        "close-up portrait of an elderly fisherman",
        "neon-lit ramen shop, rain",
        "a red fox in fresh snow",
        "old lighthouse on a rocky coast",
        "knight in ornate armor, battle-worn",
        "desert caravan under a starry sky",
        "steampunk airship over a harbour",
        "a girl with an umbrella in the rain",
        "mountain lake at sunrise",
        "cozy reading nook with a cat",
        "futuristic city skyline at night",
        "portrait of a cat \\(calico\\)",
        'neon sign that says "OPEN 24h"',
        "Mädchen mit Sonnenhut im Weizenfeld",
        "café terrace at night, Arles",
        "古い寺院と桜",
        "雨の夜の東京の路地",
        "一只在竹林里的熊猫",
        "한옥 마을의 가을 풍경",
        "the lighthouse — storm 🌊",
        "cozy cabin 🏡❄️ at night",
        "dragon 🐉 over a jade mountain",
    )
)
_QUALITY = _uniform(
    (
        "(masterpiece, best quality)",
        "(ultra detailed:1.2)",
        "35mm film",
        "high contrast",
        "cinematic lighting",
        "[dramatic lighting]",
        "soft focus",
        "volumetric fog",
    )
)
_MOODS = _uniform(
    (
        "golden hour light",
        "soft focus",
        "volumetric fog",
        "35mm film",
        "high contrast",
        "[dramatic lighting]",
        "cinematic lighting",
        "(ultra detailed:1.2)",
        "(masterpiece, best quality)",
    )
)
_NEGATIVE_TAILS = _uniform(
    (
        "blurry, low quality, watermark",
        "lowres, bad hands, jpeg artifacts, signature",
        "deformed, extra fingers, text, watermark, worst quality",
        "(worst quality:1.4), (low quality:1.4), monochrome",
    )
)

_MATRIX_SLOTS = {
    "time": ("golden hour", "dusk", "noon", "midnight"),
    "weather": ("rain", "fog", "clear sky", "snow"),
    "lens": ("35mm", "85mm", "fisheye"),
}
_SWEEPS = {
    "cfg_scale": ("CFG_Scale", (4.0, 6.0, 8.0, 10.0, 12.0)),
    "steps": ("Steps", (20, 30, 40, 50, 60)),
    "sampler": ("Sampler", ("Euler a", "DPM++ 2M", "DDIM", "UniPC", "Heun")),
}
_PLAN_KINDS = _table((("matrix", 70), ("sweep", 30)))

_AD_MODELS = _table(
    (("face_yolov8n.pt", 45), ("mediapipe_face_full", 35), ("hand_yolov8n.pt", 12), ("person_yolov8n-seg.pt", 8))
)
_AD_CONFIDENCE = _uniform((0.3, 0.35, 0.5, 0.6, 0.69))
_UPSCALERS = _table(
    (
        ("4xUltrasharp_4xUltrasharpV10", 40),
        ("R-ESRGAN 4x+", 25),
        ("4x-AnimeSharp", 12),
        ("SwinIR_4x", 8),
        ("Latent", 10),
        ("LDSR", 5),
    )
)

_OUTPUT_ROOTS = _table(
    (  # (directory holding output\Pipeline, separator)
        (("output", "\\"), 30),
        (("C:\\Users\\Jo Smith\\StableNew\\output", "\\"), 20),
        (("C:\\Users\\rob\\projects\\StableNew\\output", "\\"), 15),
        (("D:\\AI Art\\Stable Diffusion\\output", "\\"), 5),
        (("/home/ana/sd/output", "/"), 20),
        (("/Users/kim/Pictures/SD Out", "/"), 7),
        (("/mnt/data/stablenew/output", "/"), 3),
    )
)
_ID_STYLES = _table((("hex", 55), ("dashed", 30), ("learning", 15)))
_STATUSES = _table((("completed", 96), ("failed", 3), ("cancelled", 1)))
_ERRORS = _uniform(
    (
        "WebUI returned HTTP 500 during txt2img",
        "CUDA out of memory. Tried to allocate 2.50 GiB",
        "Timeout after 300 s waiting for the WebUI",
        "Connection refused: http://127.0.0.1:7860",
        "ADetailer: model file not found",
    )
)
_GROUP_SIZES = _table(((1, 45), (2, 25), (3, 25), (4, 3), (6, 2)))  # jobs sharing one completed_at
_RATINGS = _table(((0, 4), (1, 6), (2, 12), (3, 28), (4, 32), (5, 18)))


# ---------------------------------------------------------------- records


class _Clock:
    """completed_at values: groups of jobs finish at the same instant (0.25 s grid), a
    few seconds apart; now and then a longer pause or a job that reports late."""

    def __init__(self, rng: random.Random, start: float):
        self._rng = rng
        self.now = start
        self._left = 0

    def next(self) -> float:
        rng = self._rng
        if self._left == 0:
            self._left = _GROUP_SIZES[rng.getrandbits(_TABLE_BITS)]
            self.now += 0.25 * (2 + rng.getrandbits(5))
            if rng.random() < 0.0005:
                self.now += 3600.0 * (1 + rng.getrandbits(3))
        self._left -= 1
        if rng.random() < 0.01:
            return self.now - 0.25 * (1 + rng.getrandbits(7))
        return self.now


class _Run:
    """What the jobs of one pack run share: packs, model, sampler, sizes, stage setup,
    variants, output folder and the style of their job ids."""

    def __init__(self, rng: random.Random, now: float):
        bits, rand = rng.getrandbits, rng.random
        model, self.family, model_hash = _MODELS[bits(_TABLE_BITS)]
        self.model = f"{model}.safetensors [{model_hash}]" if rand() < 0.15 else model
        self.model_hash = model_hash
        self.packs = _distinct(bits, _PACKS, 2 if rand() < 0.12 else 1)
        self.sampler = _SAMPLERS[bits(_TABLE_BITS)]
        self.scheduler = _SCHEDULERS[bits(_TABLE_BITS)]
        self.steps = _STEPS[bits(_TABLE_BITS)]
        self.cfg_scale = _CFG[bits(_TABLE_BITS)]
        self.width, self.height = _SIZES[self.family][bits(_TABLE_BITS)]
        low, high = _STEP_SECONDS[self.family]
        self.step_seconds = low + (high - low) * rand()
        self.images = 1 + bits(2) % 3
        self.batch_size = 2 if rand() < 0.15 else 1
        self.rows = 1 + bits(2)
        self.variant_total = 1 if rand() < 0.7 else 2 + bits(2)
        self.plan_kind = _PLAN_KINDS[bits(_TABLE_BITS)] if self.variant_total > 1 else None
        self.sweep = ("cfg_scale", "steps", "sampler")[bits(2) % 3]
        self.slots = ("time",) if rand() < 0.7 else ("time", "weather", "lens")[: 2 + bits(1)]
        self.base_seed = bits(32)
        self.adetailer = rand() < 0.8
        self.ad_model = _AD_MODELS[bits(_TABLE_BITS)]
        self.upscale = rand() < 0.75
        self.upscaler = _UPSCALERS[bits(_TABLE_BITS)]
        self.upscale_by = (1.5, 2.0, 2.0, 4.0)[bits(2)]
        self.img2img = rand() < 0.15
        self.hires = rand() < 0.06
        self.refiner = self.family == "sdxl" and rand() < 0.05
        self.source = "gui" if rand() < 0.8 else "cli"
        self.explicit_status = rand() < 0.5
        self.id_style = _ID_STYLES[bits(_TABLE_BITS)]
        self.stamp = stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(now))
        self.run_id = f"{stamp}_{self.packs[0][:12]}-{model[:10]}"
        self.model_short = model[:16]
        root, sep = _OUTPUT_ROOTS[bits(_TABLE_BITS)]
        self.out_dir = sep.join((root, "Pipeline", self.run_id, ""))
        self.final_stage = "upscale" if self.upscale else "adetailer" if self.adetailer else "txt2img"
        self.stage_names = ["txt2img"] + [
            name
            for name, on in (("img2img", self.img2img), ("adetailer", self.adetailer), ("upscale", self.upscale))
            if on
        ]

    def plan(self) -> dict | None:
        """A fresh randomization_plan snapshot (null for single-variant runs)."""
        if self.plan_kind is None:
            return None
        if self.plan_kind == "sweep":
            return {
                "enabled": True,
                "mode": "sweep",
                "variable": self.sweep,
                "values": list(_SWEEPS[self.sweep][1][: self.variant_total]),
                "seed_mode": "fixed",
                "base_seed": self.base_seed,
            }
        return {
            "enabled": True,
            "mode": "matrix",
            "max_variants": self.variant_total,
            "seed_mode": "per_variant",
            "base_seed": self.base_seed,
            "slots": {name: list(_MATRIX_SLOTS[name]) for name in self.slots},
        }


def _job_id(run: _Run, bits, unique: int, variant_value: Any) -> str:
    """An id in the run's style; its last 8 hex digits are `unique`, so ids never repeat."""
    if run.id_style == "hex":
        return f"{bits(96):024x}{unique:08x}"
    if run.id_style == "dashed":
        h = f"{bits(88):022x}"
        return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[bits(2)]}{h[15:18]}-{h[18:]}{unique:08x}"
    label = _SWEEPS[run.sweep][0] if run.plan_kind == "sweep" else "Baseline"
    return (
        f"learning_{run.stamp}_txt2img_{label}_{run.model_short}_{run.scheduler}_{variant_value}_{unique:08x}"
    ).replace(" ", "_")


def _prompts(bits, rand) -> tuple[str, str]:
    """(prompt, negative_prompt) with 3–5 LoRAs and 6–12 embeddings."""
    loras = [
        _LORA_KEYWORDS[bits(_TABLE_BITS)] + name + _LORA_TAILS[bits(_TABLE_BITS)]
        for name in _distinct(bits, _LORAS, 3 + bits(2) % 3)
    ]
    names = _distinct(bits, _EMBEDDINGS, 6 + bits(3) % 7)
    if rand() < 0.06:  # the same embedding again in another case
        name = names[bits(2)]
        names.append(name.lower() if name.lower() != name else name.upper())
    embeddings = []
    for name in names:
        before, after = _EMBEDDING_FORMS[bits(_TABLE_BITS)]
        embeddings.append(before + name + after)
    split = 1 + bits(2)
    prompt = " ".join(
        (
            *embeddings[:split],
            _QUALITY[bits(_TABLE_BITS)],
            _SUBJECTS[bits(_TABLE_BITS)] + ",",
            _MOODS[bits(_TABLE_BITS)],
            *loras,
        )
    )
    negative = ", ".join((*embeddings[split:], _NEGATIVE_TAILS[bits(_TABLE_BITS)]))
    return prompt, negative


def _timings(run: _Run, steps: int, rand, status: str) -> dict[str, float]:
    """Seconds per enabled stage; a failed or cancelled job stops after txt2img."""
    txt2img = steps * run.step_seconds * (0.9 + 0.2 * rand())
    timings = {"txt2img": round(txt2img, 3)}
    if status != "completed":
        return timings
    if run.hires:
        timings["hires"] = round(txt2img * (0.5 + 0.2 * rand()), 3)
    if run.refiner:
        timings["refiner"] = round(txt2img * (0.18 + 0.05 * rand()), 3)
    if run.img2img:
        timings["img2img"] = round(txt2img * (0.3 + 0.1 * rand()), 3)
    if run.adetailer:
        timings["adetailer"] = round(txt2img * (0.33 + 0.06 * rand()), 3)
    if run.upscale:
        timings["upscale"] = round(txt2img * (0.42 + 0.08 * rand()) * run.upscale_by / 2, 3)
    return timings


def _outputs(run: _Run, bits, row: int, variant: int, count: int) -> list[str]:
    prefix = f"{run.out_dir}{run.final_stage}_p{row + 1:02d}_v{variant + 1:02d}_{run.packs[0][:10]} "
    return [f"{prefix}{bits(32):08x}_batch{i}.png" for i in range(count)]


def _stage_configs(run: _Run, bits, sampler: str, steps: int, cfg_scale: float) -> dict[str, dict]:
    """The nested stage configs of run_config, keyed by their run_config key."""
    refiner_on = run.refiner
    return {
        "txt2img": {
            "stage_type": "txt2img",
            "enabled": True,
            "steps": steps,
            "cfg_scale": cfg_scale,
            "sampler_name": sampler,
            "scheduler": run.scheduler,
            "model": run.model,
            "vae": _VAE[run.family],
            "width": run.width,
            "height": run.height,
            "seed": -1,
            "clip_skip": 2,
            "enable_hr": run.hires,
            "hr_scale": 2.0,
            "hr_upscaler": "Latent",
            "denoising_strength": 0.7,
            "hypernetwork": "None",
            "styles": [],
            "refiner_switch_at": 0.8,
        },
        "img2img": {
            "enabled": run.img2img,
            "steps": 15,
            "cfg_scale": 7.0,
            "denoising_strength": 0.3,
            "mask_mode": "none",
        },
        "adetailer": {
            "enabled": run.adetailer,
            "ad_model": run.ad_model,
            "ad_confidence": _AD_CONFIDENCE[bits(_TABLE_BITS)],
            "ad_steps": 16,
            "ad_cfg_scale": 5.7,
            "ad_sampler": "DPM++ SDE",
            "ad_denoising_strength": 0.22,
            "max_detections": 2,
            "ad_mask_blur": 4,
            "ad_prompt": "",
            "ad_negative_prompt": "",
        },
        "upscale": {
            "enabled": run.upscale,
            "upscaler": run.upscaler,
            "upscale_mode": "single",
            "upscaling_resize": run.upscale_by,
            "denoising_strength": 0.18,
            "steps": 15,
            "sampler_name": "Euler a",
            "scheduler": "Normal",
            "tile_size": 0,
            "face_restore": False,
        },
        "hires_fix": (
            {"enabled": True, "upscaler": "Latent", "scale": 1.5, "steps": 10, "denoise": 0.45} if run.hires else {}
        ),
        "refiner": {
            "enabled": refiner_on,
            "refiner_checkpoint": "sd_xl_refiner_1.0" if refiner_on else "",
            "refiner_switch_at": 0.8,
        },
    }


def _record(rng: random.Random, run: _Run, row: int, variant: int, unique: int, completed_at: float) -> dict:
    bits, rand = rng.getrandbits, rng.random
    status = _STATUSES[bits(_TABLE_BITS)]
    sampler, steps, cfg_scale = run.sampler, run.steps, run.cfg_scale
    variant_value: Any = cfg_scale
    if run.plan_kind == "sweep":
        variant_value = _SWEEPS[run.sweep][1][variant]
        if run.sweep == "cfg_scale":
            cfg_scale = variant_value
        elif run.sweep == "steps":
            steps = variant_value
        else:
            sampler = variant_value
        seed = run.base_seed
    elif run.plan_kind == "matrix":
        seed = (run.base_seed + variant) & 0xFFFFFFFF
    else:
        seed = bits(40) if rand() < 0.003 else bits(32)
    prompt, negative = _prompts(bits, rand)
    configs = _stage_configs(run, bits, sampler, steps, cfg_scale)
    stages = {
        "txt2img": dict(configs["txt2img"], styles=[]),
        "img2img": dict(configs["img2img"]),
        "adetailer": dict(configs["adetailer"]),
        "upscale": dict(configs["upscale"]),
    }
    if run.hires:
        stages["hires"] = dict(configs["hires_fix"])
    if run.refiner:
        stages["refiner"] = dict(configs["refiner"])
    pack = run.packs[0]
    run_config = {
        "run_mode": "queue",
        "source": run.source,
        "prompt_source": "pack",
        "prompt": prompt,
        "negative_prompt": negative,
        "model": run.model,
        "sampler": sampler,
        "scheduler": run.scheduler,
        "steps": steps,
        "cfg_scale": cfg_scale,
        "width": run.width,
        "height": run.height,
        "seed": -1,
        "subseed_strength": 0.5,
        "clip_skip": 2,
        "sd_model_hash": run.model_hash,
        "pack_path": f"packs\\{pack}.txt",
        "prompt_pack_row_index": row,
        "output_dir": run.out_dir,
        "filename_pattern": "{stage}_p{row:02d}_v{variant:02d}_{pack:.10} {hash}_batch{n}",
        "pipeline": {
            "images_per_prompt": run.images,
            "loop_count": 1,
            "seed_mode": "random",
            "batch_size": run.batch_size,
        },
        "stages": list(run.stage_names),
        **configs,
        "api": {"base_url": "http://127.0.0.1:7860", "timeout": 300},
        "matrix_slot_values": {
            name: _MATRIX_SLOTS[name][(variant + row) % len(_MATRIX_SLOTS[name])] for name in run.slots
        },
    }
    if status == "completed":
        n_outputs = 0 if rand() < 0.015 else run.images
    else:
        n_outputs = 0 if status == "failed" else bits(2) % run.images
    timings = _timings(run, steps, rand, status)
    duration = sum(timings.values()) + 0.5 + 2.0 * rand()
    record = {
        "job_id": _job_id(run, bits, unique, variant_value),
        "variant_index": variant,
        "variant_total": run.variant_total,
        "packs": list(run.packs),
        "run_config": run_config,
        "randomization_plan": run.plan(),
        "stages": stages,
        "seed": seed,
        "outputs": _outputs(run, bits, row, variant, n_outputs),
        "started_at": round(completed_at - duration, 3),
        "completed_at": completed_at,
        "timings": timings,
        "run_id": run.run_id,
    }
    if status != "completed" or run.explicit_status:
        record["status"] = status
    if run.plan_kind == "sweep":  # a learning experiment: one setting varied across the variants
        record["experiment"] = {
            "name": f"{run.packs[0][:24]} {run.sweep} sweep",
            "variable": _SWEEPS[run.sweep][0].replace("_", " "),
            "value": variant_value,
        }
    if run.batch_size > 1:
        record["batch_index"] = (row * run.variant_total + variant) % run.batch_size
        record["batch_total"] = run.batch_size
    if status == "failed":
        record["extra"] = {"error": _ERRORS[bits(_TABLE_BITS)]}
    elif status == "cancelled":
        record["extra"] = {"reason": "cancelled by user"}
    return record


def generate_records(n: int, seed: int = 0, start: float = DEFAULT_START) -> Iterator[dict]:
    """Yield n POST /api/jobs bodies, deterministic for (seed, start), unique job ids.

    Jobs come in runs (one pack, rows × variants, a shared run_id); completed_at moves
    forward from `start` by a few seconds per group of jobs sharing the same value.
    """
    rng = random.Random(seed)
    # A bijection on 32 bits: distinct counters give distinct id suffixes.
    mask = rng.getrandbits(32)
    clock = _Clock(rng, start)
    made = 0
    while made < n:
        run = _Run(rng, clock.now)
        for row in range(run.rows):
            for variant in range(run.variant_total):
                if made == n:
                    return
                unique = ((made * 0x9E3779B1) & 0xFFFFFFFF) ^ mask
                yield _record(rng, run, row, variant, unique, clock.next())
                made += 1


# ---------------------------------------------------------------- ratings


def generate_ratings(job_ids: Sequence[str], seed: int = 0, fraction: float = 0.4) -> Iterator[tuple[str, int | None]]:
    """Yield (job_id, rating 0–5, or None to clear) for about `fraction` of the jobs.

    Ratings follow the order of job_ids; about 12% of rated jobs are rated again and 3%
    cleared, some jobs later (the last event for a job is its current rating).
    """
    rng = random.Random(seed)
    bits, rand = rng.getrandbits, rng.random
    later: list[tuple[int, int, str, int | None]] = []  # (due position, tie-break, job_id, rating)
    for position, job_id in enumerate(job_ids):
        while later and later[0][0] <= position:
            _, _, due_id, rating = heapq.heappop(later)
            yield due_id, rating
        if rand() >= fraction:
            continue
        yield job_id, _RATINGS[bits(_TABLE_BITS)]
        change = rand()
        if change < 0.15:
            rating = _RATINGS[bits(_TABLE_BITS)] if change < 0.12 else None
            heapq.heappush(later, (position + 1 + bits(8), position, job_id, rating))
    while later:
        _, _, due_id, rating = heapq.heappop(later)
        yield due_id, rating


# ---------------------------------------------------------------- files

if orjson is not None:

    def _line(record: dict) -> bytes:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
else:

    def _line(record: dict) -> bytes:
        return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write one compact JSON line per record (UTF-8); return the number of lines."""
    count = 0
    with open(path, "wb", buffering=1 << 20) as out:
        for record in records:
            out.write(_line(record))
            count += 1
    return count


def _check_file(path: str | os.PathLike) -> list[str]:
    """Problems found in a generated file (empty when every invariant holds)."""
    problems, seen = [], set()
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            record = json.loads(line)
            if record["job_id"] in seen:
                problems.append(f"line {number}: duplicate job_id {record['job_id']}")
            seen.add(record["job_id"])
            if not 0 <= record["variant_index"] < record["variant_total"]:
                problems.append(f"line {number}: variant_index out of range")
            if record["started_at"] > record["completed_at"]:
                problems.append(f"line {number}: started_at after completed_at")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m learning_svc.gen", description="Write N realistic job records (POST /api/jobs bodies) as JSONL."
    )
    parser.add_argument("n", type=int, help="number of records")
    parser.add_argument("out", help="output .jsonl file (overwritten)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--start",
        type=float,
        default=DEFAULT_START,
        help=f"epoch seconds of the first completed_at (default {DEFAULT_START:.0f})",
    )
    parser.add_argument(
        "--check", action="store_true", help="re-read the file and check unique ids, variants and timestamps"
    )
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("n must be >= 0")
    began = time.perf_counter()
    count = write_jsonl(args.out, generate_records(args.n, args.seed, args.start))
    elapsed = time.perf_counter() - began
    size = os.path.getsize(args.out)
    print(
        f"wrote {count} records to {args.out} in {elapsed:.1f} s "
        f"({size} bytes, {size / max(count, 1):.0f} bytes per record)",
        file=sys.stderr,
    )
    if args.check:
        problems = _check_file(args.out)
        for problem in problems[:20]:
            print(problem, file=sys.stderr)
        print(f"check: {len(problems)} problem(s)", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
