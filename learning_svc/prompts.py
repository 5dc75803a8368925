"""LoRA / embedding detection in prompts (SPEC §1.3) and facet-value normalisation."""

from __future__ import annotations

import re

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_NAME = r"[^:<>()\s][^:<>()]*?"

# One alternation so that matches come out in prompt order; the first branch that
# matches at a position wins, so the weighted embedding form is tried first.
_TOKEN = re.compile(
    rf"\(\s*<\s*embedding\s*:\s*(?P<wemb>{_NAME})\s*>\s*:\s*(?P<wembw>{_NUM})\s*\)"
    rf"|<\s*(?:lora|lyco)\s*:\s*(?P<lora>{_NAME})\s*(?::\s*(?P<loraw>{_NUM})\s*(?::\s*{_NUM}\s*)*)?>"
    rf"|<\s*embedding\s*:\s*(?P<emb>{_NAME})\s*>"
    rf"|\bembedding\s*:\s*(?P<bare>[\w.\-]+)"
    # StableNew's own form: an embedding's name alone in angle brackets (`<easynegative-neg>`)
    rf"|<\s*(?P<angled>[A-Za-z0-9_][\w.\-]*)\s*>",
    re.IGNORECASE,
)


def _add(found: dict[str, dict], name: str, weight: float) -> None:
    name = name.strip()
    if name and name.lower() not in found:
        found[name.lower()] = {"name": name, "weight": weight}


def detect(*prompts: str | None) -> tuple[list[dict], list[dict]]:
    """Return (loras, embeddings) named in the prompts, de-duplicated case-insensitively."""
    loras: dict[str, dict] = {}
    embeddings: dict[str, dict] = {}
    for prompt in prompts:
        if not prompt:
            continue
        for m in _TOKEN.finditer(prompt):
            if m["lora"] is not None:
                _add(loras, m["lora"], float(m["loraw"]) if m["loraw"] else 1.0)
            elif m["wemb"] is not None:
                _add(embeddings, m["wemb"], float(m["wembw"]))
            else:
                _add(embeddings, m["emb"] or m["bare"] or m["angled"], 1.0)
    return list(loras.values()), list(embeddings.values())


_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{6,}\]\s*$")
_MODEL_EXT = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$", re.IGNORECASE)


def model_display(raw: str) -> str:
    """`models/juggernautXL.safetensors [dd08fa32f9]` -> `juggernautXL` (for grouping)."""
    name = _HASH_SUFFIX.sub("", raw.strip())
    name = re.split(r"[\\/]", name)[-1]
    return _MODEL_EXT.sub("", name).strip()


# Schedulers that A1111 before 1.9 folded into sampler names ("DPM++ 2M Karras").
_SCHEDULER_SUFFIX = re.compile(
    r"^(?P<sampler>.+?)\s+(?P<scheduler>Karras|Exponential|Polyexponential|SGM Uniform|Align Your Steps"
    r"|KL Optimal|Beta|Simple|Normal|Uniform|DDIM|Turbo)$",
    re.IGNORECASE,
)


def split_sampler(raw: str) -> tuple[str, str | None]:
    """`DPM++ 2M Karras` -> (`DPM++ 2M`, `Karras`); a name without a scheduler suffix stays whole."""
    name = raw.strip()
    m = _SCHEDULER_SUFFIX.match(name)
    return (m["sampler"], m["scheduler"]) if m else (name, None)
