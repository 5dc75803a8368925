"""LoRA / embedding detection in prompts (SPEC §1.3) and facet-value normalisation."""

from __future__ import annotations

import re
from typing import Any

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


# One vocabulary for samplers: ComfyUI, Fooocus, InvokeAI and NovelAI names -> A1111's labels.
SAMPLERS = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "lms": "LMS",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "ddim": "DDIM",
    "ddpm": "DDPM",
    "plms": "PLMS",
    "uni_pc": "UniPC",
    "unipc": "UniPC",
    "uni_pc_bh2": "UniPC",
    "lcm": "LCM",
    "deis": "DEIS",
    "ipndm": "iPNDM",
    "restart": "Restart",
    "heunpp2": "Heun++ 2",
    # InvokeAI's own names (its `_k` variants are these with Karras)
    "euler_a": "Euler a",
    "dpmpp_2s": "DPM++ 2S",
    "dpmpp_3m": "DPM++ 3M",
    "kdpm_2": "DPM2",
    "kdpm_2_a": "DPM2 a",
    "pndm": "PNDM",
    "tcd": "TCD",
    # ComfyUI's newer samplers, with Forge's labels where it has them
    "euler_cfg_pp": "Euler CFG++",
    "euler_ancestral_cfg_pp": "Euler a CFG++",
    "dpmpp_2m_cfg_pp": "DPM++ 2M CFG++",
    "dpmpp_2s_ancestral_cfg_pp": "DPM++ 2S a CFG++",
    "res_multistep": "Res Multistep",
    "res_multistep_cfg_pp": "Res Multistep CFG++",
    "res_multistep_ancestral": "Res Multistep a",
    "gradient_estimation": "Gradient Estimation",
    "er_sde": "ER SDE",
    "seeds_2": "SEEDS 2",
    "seeds_3": "SEEDS 3",
    "sa_solver": "SA-Solver",
    "ipndm_v": "iPNDM v",
}
SCHEDULERS = {
    "karras": "Karras",
    "exponential": "Exponential",
    "normal": "Normal",
    "simple": "Simple",
    "sgm_uniform": "SGM Uniform",
    "beta": "Beta",
    "ddim_uniform": "DDIM Uniform",
    "polyexponential": "Polyexponential",
    "kl_optimal": "KL Optimal",
    "align_your_steps": "Align Your Steps",
}


def sampler_name(raw: Any) -> tuple[str | None, str | None]:
    """(sampler, scheduler folded into its name) in A1111's words: `dpmpp_2m_sde_gpu` -> DPM++ 2M SDE,
    InvokeAI's `dpmpp_2m_k` -> (DPM++ 2M, Karras), NovelAI's `k_euler_ancestral` -> Euler a."""
    if not isinstance(raw, str) or not raw.strip():
        return None, None
    name = raw.strip()
    key = name.lower().removeprefix("k_").removesuffix("_gpu")
    scheduler = None
    head, _, tail = key.rpartition(" ")  # comfy-image-saver's A1111-style line: `euler_ancestral karras`
    if head and tail in SCHEDULERS and head.removesuffix("_gpu") in SAMPLERS:
        key, scheduler = head.removesuffix("_gpu"), SCHEDULERS[tail]
    if key.endswith("_k") and key[:-2] in SAMPLERS:
        key, scheduler = key[:-2], "Karras"
    return SAMPLERS.get(key, name), scheduler
