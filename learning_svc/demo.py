"""`learning-svc demo`: realistic sample jobs with generated placeholder images, in their own data dir."""

from __future__ import annotations

import colorsys
import random
import time

from PIL import Image, ImageDraw

from . import records
from .config import Settings
from .gen import generate_ratings, generate_records


def _image(path, seed: int, label: str) -> None:
    rng = random.Random(seed)
    w, h = 384, 512
    top = [int(255 * c) for c in colorsys.hsv_to_rgb(rng.random(), 0.55, 0.85)]
    bottom = [int(255 * c) for c in colorsys.hsv_to_rgb(rng.random(), 0.6, 0.35)]
    img = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(img)
    for y in range(h):
        t = y / h
        draw.line((0, y, w, y), fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    for _ in range(6):
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(20, 90)
        shade = tuple(min(255, c + 60) for c in top)
        draw.ellipse((x - r, y - r, x + r, y + r), outline=shade, width=3)
    draw.text((12, h - 24), label, fill=(255, 255, 255))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "PNG", optimize=False)


def load_demo(settings: Settings, count: int = 120) -> int:
    """Record `count` generated jobs (ending now) with images under output_root; rate some."""
    from .service import Service

    root = settings.output_root
    start = time.time() - count * 20
    service = Service(settings).start()
    job_ids = []
    try:
        if service.health()["index"]["jobs"]:
            return 0  # loaded by an earlier run: serve what is there
        for i, body in enumerate(generate_records(count, seed=7, start=start)):
            outputs = []
            for k in range(len(body.get("outputs") or [])):
                relative = f"demo/{i:04d}_{k}.png"
                if not (i == 3 and k == 0):  # one output left missing, to show the placeholder
                    _image(root / relative, i * 10 + k, f"{body['job_id'][:12]} #{k + 1}")
                outputs.append(relative)
            body["outputs"] = outputs
            body.pop("num_outputs", None)
            service.record_job(records.parse(records.JobIn, body))
            job_ids.append(body["job_id"])
        for job_id, rating in generate_ratings(job_ids[: count // 2], seed=7, fraction=0.6):
            service.rate_job(job_id, rating, "demo")
    finally:
        service.close()
    return len(job_ids)
