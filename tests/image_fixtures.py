"""Images written the way each UI writes them, for the image importer's tests (Pillow + stdlib only).

Usage:  python tests/image_fixtures.py OUTDIR     (the tests call write_good / write_bad on a temp dir)

Writes OUTDIR/good/*  (one image per UI / format variant, metadata laid out the
way each UI really writes it) and OUTDIR/bad/* (failure cases for the importer).

Every "good" fixture is also described in OUTDIR/good/expected.json with the
values an importer should extract, so the file doubles as a test oracle.

Each writer mirrors the UI's own save code (see images.md for the source refs):
  A1111/Forge/SD.Next PNG : PngInfo.add_text("parameters", infotext)  -> tEXt (iTXt if non-latin-1)
  A1111/SD.Next JPEG/WEBP : piexif.dump({"Exif": {UserComment: UserComment.dump(info, "unicode")}})
                            == Exif-IFD(0x8769) tag 0x9286, b"UNICODE\\0" + UTF-16BE, big-endian TIFF
  ComfyUI PNG             : tEXt "prompt" = json.dumps(api_graph), tEXt "workflow" = json.dumps(ui_graph)
  InvokeAI >=3 PNG        : tEXt "invokeai_metadata" (+ "invokeai_graph" / "invokeai_workflow")
  InvokeAI 2.x PNG        : tEXt "sd-metadata" (JSON) + tEXt "Dream" (dream command line)
  Fooocus PNG             : tEXt "parameters" (JSON or A1111 text) + tEXt "fooocus_scheme"
  Fooocus JPEG/WEBP       : Pillow Exif() in IFD0: 0x9286 UserComment (plain str!), 0x927C MakerNote = scheme,
                            0x0131 Software = "Fooocus v2.5.5"
  NovelAI PNG             : tEXt Title/Description/Software/Source/Generation time/Comment(JSON)
  stealth (NovelAI / A1111 stealth-pnginfo ext.) : LSB of alpha, column-major, "stealth_pngcomp"+len+gzip
"""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import sys
import zlib

from PIL import Image
from PIL.PngImagePlugin import PngInfo

W, H = 64, 96  # small but non-square so Size mismatches are visible


# --------------------------------------------------------------------------- helpers
def base_image(mode: str = "RGB", size=(W, H)) -> Image.Image:
    """Deterministic gradient so JPEG/WEBP encoders have something to chew on."""
    w, h = size
    im = Image.new("RGB", size)
    im.putdata([((x * 4) % 256, (y * 3) % 256, (x + y) % 256) for y in range(h) for x in range(w)])
    if mode != "RGB":
        im = im.convert(mode)
    return im


def save_png_text(path: str, chunks: dict[str, str], image: Image.Image | None = None) -> None:
    info = PngInfo()
    for k, v in chunks.items():
        info.add_text(k, v)  # tEXt if latin-1, else iTXt (exactly what the UIs do)
    (image or base_image()).save(path, format="PNG", pnginfo=info)


def a1111_quote(value) -> str:
    """modules/infotext_utils.quote(): JSON-quote values containing , : or newline."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def a1111_infotext(prompt: str, negative: str, params: dict) -> str:
    """modules/processing.create_infotext(): identical assembly rules."""
    gen = ", ".join(k if k == v else f"{k}: {a1111_quote(v)}" for k, v in params.items() if v is not None)
    neg = f"\nNegative prompt: {negative}" if negative else ""
    return f"{prompt}{neg}\n{gen}".strip()


def exif_usercomment_unicode(text: str) -> bytes:
    """Byte-exact equivalent of what A1111 / SD.Next write:
        piexif.dump({"Exif": {piexif.ExifIFD.UserComment:
                              piexif.helper.UserComment.dump(text, encoding="unicode")}})
    i.e. big-endian TIFF, IFD0 = {0x8769 ExifIFD pointer}, Exif IFD = {0x9286 UserComment,
    type 7 UNDEFINED, b'UNICODE\\0' + UTF-16BE text}. (piexif omits the Exif IFD's next-IFD
    pointer; we reproduce that.) Verified identical to piexif 1.1.3 output.
    NB: Pillow's own Image.Exif would write 0x9286 as type BYTE, not UNDEFINED, which
    piexif-based readers (A1111's own PNG Info tab) choke on - so we build it by hand.
    A1111 itself saves the image first, then piexif.insert()s this blob; SD.Next passes
    it as exif= to Image.save. Either way the APP1/EXIF chunk carries these bytes."""
    return exif_usercomment_raw(b"UNICODE\x00" + text.encode("utf_16_be"))


def exif_usercomment_raw(uc: bytes) -> bytes:
    """piexif-layout EXIF blob carrying an arbitrary UserComment byte string."""
    tiff = b"MM\x00\x2a\x00\x00\x00\x08"
    tiff += struct.pack(">H", 1) + struct.pack(">HHII", 0x8769, 4, 1, 26) + struct.pack(">I", 0)
    tiff += struct.pack(">H", 1) + struct.pack(">HHII", 0x9286, 7, len(uc), 40) + uc
    return b"Exif\x00\x00" + tiff


def fooocus_exif(parameters: str, scheme: str, version: str) -> Image.Exif:
    """modules/meta_parser.get_exif(): tags set on the *root* Exif object (IFD0), str values."""
    exif = Image.Exif()
    exif[0x9286] = parameters  # UserComment, but in IFD0 and as a plain string
    exif[0x0131] = "Fooocus v" + version  # Software
    exif[0x927C] = scheme  # MakerNote ("fooocus" | "a1111")
    return exif


def stealth_encode(image: Image.Image, payload: str, compressed: bool = True) -> Image.Image:
    """stealth-pnginfo / NovelAI alpha LSB encoding (column-major: x outer, y inner)."""
    im = image.convert("RGBA")
    sig = "stealth_pngcomp" if compressed else "stealth_pnginfo"
    data = gzip.compress(payload.encode("utf-8"), mtime=0) if compressed else payload.encode("utf-8")
    bits = "".join(f"{b:08b}" for b in sig.encode()) + f"{len(data) * 8:032b}" + "".join(f"{b:08b}" for b in data)
    w, h = im.size
    if len(bits) > w * h:
        raise ValueError(f"image too small for stealth payload: need {len(bits)} px, have {w * h}")
    px = im.load()
    i = 0
    for x in range(w):
        for y in range(h):
            r, g, b, a = px[x, y]
            a = (a & ~1) | (int(bits[i]) if i < len(bits) else (a & 1))
            px[x, y] = (r, g, b, a)
            i += 1
            if i >= len(bits):
                return im
    return im


def png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def raw_png(
    width: int,
    height: int,
    pre_idat: list[tuple[bytes, bytes]] = (),
    post_idat: list[tuple[bytes, bytes]] = (),
    idat: bytes | None = None,
) -> bytes:
    """Hand-assembled RGB 8-bit PNG so chunk order/sizes can be anything we like."""
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    for t, d in pre_idat:
        out += png_chunk(t, d)
    if idat is None:
        raw = b"".join(b"\x00" + bytes(3 * width) for _ in range(height))
        idat = zlib.compress(raw, 9)
    out += png_chunk(b"IDAT", idat)
    for t, d in post_idat:
        out += png_chunk(t, d)
    return out + png_chunk(b"IEND", b"")


# --------------------------------------------------------------------------- sample data
MODEL_HASH = "31e35c80fc"  # A1111 "Model hash" = sha256[:10]
LORA_HASHES = {"add_detail": "7c6bad76eb54", "lcm-lora-sdxl": "2f8f8c9c21b3"}  # sha256[:12]
TI_HASHES = {"easynegative": "c74b4e810b03", "badhandv4": "5e40d722fc3d"}

A1111_PROMPT = (
    "masterpiece, best quality, 1girl, red hair, (looking at viewer:1.2), city at night, "
    "<lora:add_detail:0.8>, <lora:lcm-lora-sdxl:0.35>"
)
A1111_NEG = "easynegative, badhandv4, (worst quality, low quality:1.4), watermark"


def a1111_params_v110() -> dict:
    """A1111 v1.10 key order (create_infotext) incl. hires fix + extra networks."""
    return {
        "Steps": 30,
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": 7,
        "Seed": 1234567890,
        "Size": "832x1216",
        "Model hash": MODEL_HASH,
        "Model": "juggernautXL_v9Rundiffusionphoto2",
        "VAE hash": "235745af8d",
        "VAE": "sdxl_vae.safetensors",
        "Denoising strength": 0.4,
        "Clip skip": 2,
        "Hires upscale": 1.5,
        "Hires steps": 15,
        "Hires upscaler": "4x-UltraSharp",
        "Lora hashes": ", ".join(f"{k}: {v}" for k, v in LORA_HASHES.items()),
        "TI hashes": ", ".join(f"{k}: {v}" for k, v in TI_HASHES.items()),
        "Emphasis": "Original",
        "Version": "v1.10.1",
    }


def comfy_custom_nodes_graph() -> dict:
    """A ComfyUI 'prompt' (API format) as saved when the graph uses popular custom nodes: the
    KSampler's seed, steps and the latent's size come through links from value nodes, the
    positive prompt from a string primitive, the model from pysssss' loader, LoRAs from rgthree's."""
    return {
        "1": {
            "inputs": {"ckpt_name": {"content": "juggernautXL_v9.safetensors", "image": None}},
            "class_type": "CheckpointLoader|pysssss",
        },
        "2": {
            "inputs": {
                "PowerLoraLoaderHeaderWidget": {"type": "PowerLoraLoaderHeaderWidget"},
                "lora_1": {"on": True, "lora": "add_detail.safetensors", "strength": 0.6},
                "lora_2": {"on": False, "lora": "switched_off.safetensors", "strength": 1},
                "➕ Add Lora": "",
                "model": ["1", 0],
                "clip": ["1", 1],
            },
            "class_type": "Power Lora Loader (rgthree)",
        },
        "3": {"inputs": {"seed": 424242424242}, "class_type": "Seed (rgthree)"},
        "4": {"inputs": {"value": "a lighthouse at dusk, volumetric light"}, "class_type": "PrimitiveStringMultiline"},
        "5": {"inputs": {"text": ["4", 0], "clip": ["2", 1]}, "class_type": "CLIPTextEncode"},
        "6": {"inputs": {"text": "blurry", "clip": ["2", 1]}, "class_type": "CLIPTextEncode"},
        "7": {"inputs": {"value": 896}, "class_type": "INTConstant"},
        "8": {"inputs": {"value": 1152}, "class_type": "INTConstant"},
        "9": {"inputs": {"width": ["7", 0], "height": ["8", 0], "batch_size": 1}, "class_type": "EmptyLatentImage"},
        "10": {
            "inputs": {
                "seed": ["3", 0],
                "steps": ["11", 0],
                "cfg": 5.5,
                "sampler_name": "euler_ancestral",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["2", 0],
                "positive": ["5", 0],
                "negative": ["6", 0],
                "latent_image": ["9", 0],
            },
            "class_type": "KSampler",
        },
        "11": {"inputs": {"int": 28}, "class_type": "Primitive integer [Crystools]"},
        "12": {"inputs": {"samples": ["10", 0], "vae": ["1", 2]}, "class_type": "VAEDecode"},
        "13": {"inputs": {"filename_prefix": "ComfyUI", "images": ["12", 0]}, "class_type": "SaveImage"},
    }


def comfy_graphs():
    """ComfyUI 'prompt' (API format) and 'workflow' (UI/litegraph format) for
    Checkpoint -> LoRA -> CLIPTextEncode x2 -> KSampler -> VAEDecode -> SaveImage."""
    prompt = {
        "3": {
            "inputs": {
                "seed": 156680208700286,
                "steps": 20,
                "cfg": 8.0,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 1.0,
                "model": ["10", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "class_type": "KSampler",
            "_meta": {"title": "KSampler"},
        },
        "4": {
            "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
            "class_type": "CheckpointLoaderSimple",
            "_meta": {"title": "Load Checkpoint"},
        },
        "5": {
            "inputs": {"width": 1024, "height": 1024, "batch_size": 1},
            "class_type": "EmptyLatentImage",
            "_meta": {"title": "Empty Latent Image"},
        },
        "6": {
            "inputs": {
                "text": "beautiful scenery nature glass bottle landscape, purple galaxy bottle",
                "clip": ["10", 1],
            },
            "class_type": "CLIPTextEncode",
            "_meta": {"title": "CLIP Text Encode (Prompt)"},
        },
        "7": {
            "inputs": {"text": "text, watermark", "clip": ["10", 1]},
            "class_type": "CLIPTextEncode",
            "_meta": {"title": "CLIP Text Encode (Prompt)"},
        },
        "8": {
            "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
            "class_type": "VAEDecode",
            "_meta": {"title": "VAE Decode"},
        },
        "9": {
            "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
            "class_type": "SaveImage",
            "_meta": {"title": "Save Image"},
        },
        "10": {
            "inputs": {
                "lora_name": "add_detail.safetensors",
                "strength_model": 0.8,
                "strength_clip": 1.0,
                "model": ["4", 0],
                "clip": ["4", 1],
            },
            "class_type": "LoraLoader",
            "_meta": {"title": "Load LoRA"},
        },
    }
    # links: [link_id, origin_node, origin_slot, target_node, target_slot, type]
    links = [
        [1, 4, 0, 10, 0, "MODEL"],
        [2, 4, 1, 10, 1, "CLIP"],
        [3, 10, 0, 3, 0, "MODEL"],
        [4, 10, 1, 6, 0, "CLIP"],
        [5, 10, 1, 7, 0, "CLIP"],
        [6, 6, 0, 3, 1, "CONDITIONING"],
        [7, 7, 0, 3, 2, "CONDITIONING"],
        [8, 5, 0, 3, 3, "LATENT"],
        [9, 3, 0, 8, 0, "LATENT"],
        [10, 4, 2, 8, 1, "VAE"],
        [11, 8, 0, 9, 0, "IMAGE"],
    ]

    def node(nid, ntype, order, inputs, outputs, widgets, pos):
        return {
            "id": nid,
            "type": ntype,
            "pos": pos,
            "size": [315, 98],
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": inputs,
            "outputs": outputs,
            "properties": {"Node name for S&R": ntype},
            "widgets_values": widgets,
        }

    nodes = [
        node(
            4,
            "CheckpointLoaderSimple",
            0,
            [],
            [
                {"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0},
                {"name": "CLIP", "type": "CLIP", "links": [2], "slot_index": 1},
                {"name": "VAE", "type": "VAE", "links": [10], "slot_index": 2},
            ],
            ["sd_xl_base_1.0.safetensors"],
            [26, 474],
        ),
        node(
            10,
            "LoraLoader",
            1,
            [{"name": "model", "type": "MODEL", "link": 1}, {"name": "clip", "type": "CLIP", "link": 2}],
            [
                {"name": "MODEL", "type": "MODEL", "links": [3], "slot_index": 0},
                {"name": "CLIP", "type": "CLIP", "links": [4, 5], "slot_index": 1},
            ],
            ["add_detail.safetensors", 0.8, 1.0],
            [380, 474],
        ),
        node(
            5,
            "EmptyLatentImage",
            2,
            [],
            [{"name": "LATENT", "type": "LATENT", "links": [8], "slot_index": 0}],
            [1024, 1024, 1],
            [473, 609],
        ),
        node(
            6,
            "CLIPTextEncode",
            3,
            [{"name": "clip", "type": "CLIP", "link": 4}],
            [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [6], "slot_index": 0}],
            [prompt["6"]["inputs"]["text"]],
            [415, 186],
        ),
        node(
            7,
            "CLIPTextEncode",
            4,
            [{"name": "clip", "type": "CLIP", "link": 5}],
            [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [7], "slot_index": 0}],
            [prompt["7"]["inputs"]["text"]],
            [413, 389],
        ),
        node(
            3,
            "KSampler",
            5,
            [
                {"name": "model", "type": "MODEL", "link": 3},
                {"name": "positive", "type": "CONDITIONING", "link": 6},
                {"name": "negative", "type": "CONDITIONING", "link": 7},
                {"name": "latent_image", "type": "LATENT", "link": 8},
            ],
            [{"name": "LATENT", "type": "LATENT", "links": [9], "slot_index": 0}],
            [156680208700286, "randomize", 20, 8.0, "dpmpp_2m", "karras", 1.0],
            [863, 186],
        ),
        node(
            8,
            "VAEDecode",
            6,
            [{"name": "samples", "type": "LATENT", "link": 9}, {"name": "vae", "type": "VAE", "link": 10}],
            [{"name": "IMAGE", "type": "IMAGE", "links": [11], "slot_index": 0}],
            [],
            [1209, 188],
        ),
        node(9, "SaveImage", 7, [{"name": "images", "type": "IMAGE", "link": 11}], [], ["ComfyUI"], [1451, 189]),
    ]
    workflow = {
        "last_node_id": 10,
        "last_link_id": 11,
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}},
        "version": 0.4,
    }
    return prompt, workflow


INVOKE5_META = {
    "generation_mode": "sdxl_txt2img",
    "positive_prompt": "a robot reading a book in a cosy library, warm light",
    "negative_prompt": "blurry, low quality",
    "width": 1024,
    "height": 1024,
    "seed": 591741300,
    "rand_device": "cpu",
    "cfg_scale": 5.0,
    "cfg_rescale_multiplier": 0.0,
    "steps": 30,
    "scheduler": "dpmpp_2m_sde_k",
    "clip_skip": 0,
    "model": {
        "key": "db73016a-176e-4d59-81d2-8e6278ed2399",
        "hash": "blake3:8967e7e6df2e97e08c61543779f7cc6b43b364287c375cd6dbff1627fd044312",
        "name": "juggernautXL_v9",
        "base": "sdxl",
        "type": "main",
    },
    "vae": {
        "key": "5e4a3c09-6f36-4bd2-8d79-0b5c39c10a8e",
        "hash": "blake3:0f2c0b6cbe1b",
        "name": "sdxl-vae-fp16-fix",
        "base": "sdxl",
        "type": "vae",
    },
    "loras": [
        {
            "model": {
                "key": "b1c1e3a2-0000-4000-8000-000000000001",
                "hash": "blake3:aa11bb22cc33",
                "name": "add_detail_xl",
                "base": "sdxl",
                "type": "lora",
            },
            "weight": 0.75,
        }
    ],
    "positive_style_prompt": "a robot reading a book in a cosy library, warm light",
    "negative_style_prompt": "",
    "app_version": "5.4.2",
}

INVOKE3_META = {
    "generation_mode": "txt2img",
    "positive_prompt": "digital artwork, oil painting, holidays",
    "negative_prompt": "grainy, photo, oversaturated",
    "width": 512,
    "height": 768,
    "seed": 3293022630,
    "rand_device": "cpu",
    "cfg_scale": 8.0,
    "cfg_rescale_multiplier": 0.0,
    "steps": 35,
    "scheduler": "euler",
    "clip_skip": 0,
    "model": {"model_name": "stable-diffusion-v1-5", "base_model": "sd-1", "model_type": "main"},
    "vae": {"model_name": "sd-vae-ft-mse", "base_model": "sd-1"},
    "loras": [{"lora": {"model_name": "add_detail", "base_model": "sd-1"}, "weight": 0.6}],
    "app_version": "3.6.2",
}

INVOKE2_SDMETA = {
    "model": "stable diffusion",
    "model_weights": "stable-diffusion-1.5",
    "model_hash": "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516",
    "app_id": "invoke-ai/InvokeAI",
    "app_version": "2.3.5",
    "image": {
        "prompt": [{"prompt": "a fantasy castle on a hill [ugly, blurry]", "weight": 1.0}],
        "steps": 50,
        "cfg_scale": 7.5,
        "threshold": 0,
        "perlin": 0,
        "height": 512,
        "width": 512,
        "seed": 42,
        "seamless": False,
        "hires_fix": False,
        "type": "txt2img",
        "postprocessing": None,
        "sampler": "k_lms",
        "variations": [],
    },
}

FOOOCUS_JSON = {  # meta_parser.FooocusMetadataParser.parse_string(): json.dumps(dict(sorted(res.items())))
    "adm_guidance": "(1.5, 0.8, 0.3)",
    "base_model": "juggernautXL_v8Rundiffusion",
    "base_model_hash": "aeb7e9e689",
    "clip_skip": 2,
    "full_negative_prompt": ["(worst quality, low quality:1.4), watermark", "anime, cartoon, blurry"],
    "full_prompt": [
        "cinematic still a smiling goldfish . emotional, harmonious, vignette",
        "a smiling goldfish, deep focus, intricate, elegant, highly detailed",
    ],
    "guidance_scale": 4,
    "lora_combined_1": "sd_xl_offset_example-lora_1.0 : 0.1",
    "loras": [["sd_xl_offset_example-lora_1.0", 0.1, "4852686128"]],
    "metadata_scheme": "fooocus",
    "negative_prompt": "",
    "performance": "Speed",
    "prompt": "a smiling goldfish",
    "prompt_expansion": "a smiling goldfish, deep focus, intricate, elegant, highly detailed",
    "refiner_model": "None",
    "refiner_switch": 0.5,
    "resolution": "(896, 1152)",
    "sampler": "dpmpp_2m_sde_gpu",
    "scheduler": "karras",
    "seed": "6952411511246973023",
    "sharpness": 2,
    "steps": 30,
    "styles": "['Fooocus V2', 'Fooocus Enhance', 'Fooocus Sharp']",
    "vae": "Default (model)",
    "version": "Fooocus v2.5.5",
}

NOVELAI_COMMENT = {
    "prompt": "1girl, solo, silver hair, night sky, very aesthetic, masterpiece",
    "steps": 28,
    "height": 1216,
    "width": 832,
    "scale": 5.0,
    "uncond_scale": 0.0,
    "cfg_rescale": 0.0,
    "seed": 1881290394,
    "n_samples": 1,
    "hide_debug_overlay": False,
    "noise_schedule": "karras",
    "legacy_v3_extend": False,
    "reference_information_extracted_multiple": [],
    "reference_strength_multiple": [],
    "sampler": "k_euler_ancestral",
    "controlnet_strength": 1.0,
    "controlnet_model": None,
    "dynamic_thresholding": False,
    "dynamic_thresholding_percentile": 0.999,
    "dynamic_thresholding_mimic_scale": 10.0,
    "sm": False,
    "sm_dyn": False,
    "skip_cfg_above_sigma": None,
    "skip_cfg_below_sigma": 0.0,
    "lora_unet_weights": None,
    "lora_clip_weights": None,
    "deliberate_euler_ancestral_bug": False,
    "prefer_brownian": True,
    "cfg_sched_eligibility": "enable_for_post_summer_samplers",
    "explike_fine_detail": False,
    "minimize_sigma_inf": False,
    "uncond_per_vibe": True,
    "wonky_vibe_correlation": True,
    "version": 1,
    "uc": "lowres, bad anatomy, bad hands, text, error, worst quality",
    "request_type": "PromptGenerateRequest",
    "signed_hash": "X2Yz0FAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKE==",
}


def novelai_chunks() -> dict[str, str]:
    return {
        "Title": "NovelAI generated image",
        "Description": NOVELAI_COMMENT["prompt"],
        "Software": "NovelAI",
        "Source": "NovelAI Diffusion V4.5 4BDE2A90",
        "Generation time": "6.312",
        "Comment": json.dumps(NOVELAI_COMMENT),
    }


# --------------------------------------------------------------------------- writers
def write_good(d: str) -> dict:
    os.makedirs(d, exist_ok=True)
    expected: dict[str, dict] = {}
    p = lambda name: os.path.join(d, name)  # noqa: E731

    # 1. A1111 v1.10 PNG (sampler + separate Schedule type, hires, Lora/TI hashes, VAE)
    params = a1111_params_v110()
    info = a1111_infotext(A1111_PROMPT, A1111_NEG, params)
    save_png_text(p("a1111_v110.png"), {"parameters": info})
    expected["a1111_v110.png"] = {
        "generator": "AUTOMATIC1111",
        "prompt": A1111_PROMPT,
        "negative": A1111_NEG,
        "sampler": "DPM++ 2M",
        "scheduler": "Karras",
        "steps": 30,
        "cfg": 7,
        "seed": 1234567890,
        "size": [832, 1216],
        "model": params["Model"],
        "model_hash": MODEL_HASH,
        "vae": "sdxl_vae.safetensors",
        "loras": {"add_detail": 0.8, "lcm-lora-sdxl": 0.35},
        "lora_hashes": LORA_HASHES,
        "ti_hashes": TI_HASHES,
    }

    # 2. legacy A1111 (<1.9): scheduler baked into sampler name, batch info, multi-line prompt
    legacy = {
        "Steps": 20,
        "Sampler": "DPM++ 2M Karras",
        "CFG scale": 7.5,
        "Seed": 3021,
        "Size": "512x768",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Batch size": 4,
        "Batch pos": 2,
        "Clip skip": 2,
        "ENSD": 31337,
        "Version": "v1.5.1",
    }
    lp = "a photo of an astronaut riding a horse,\nhighly detailed, 8k\nSteps: in the prompt should not confuse"
    ln = "cartoon,\nblurry"
    save_png_text(p("a1111_legacy_batch.png"), {"parameters": a1111_infotext(lp, ln, legacy)})
    expected["a1111_legacy_batch.png"] = {
        "generator": "AUTOMATIC1111",
        "prompt": lp,
        "negative": ln,
        "sampler": "DPM++ 2M",
        "scheduler": "Karras",
        "steps": 20,
        "cfg": 7.5,
        "seed": 3021,
        "batch_size": 4,
        "batch_pos": 2,
        "note": "legacy sampler name carries the scheduler",
    }

    # 3. non-latin-1 prompt -> Pillow writes iTXt
    up = "桜の木の下の少女, 1girl, cherry blossoms, 🌸"
    save_png_text(
        p("a1111_unicode_itxt.png"),
        {
            "parameters": a1111_infotext(
                up,
                "",
                {
                    "Steps": 25,
                    "Sampler": "Euler a",
                    "Schedule type": "Automatic",
                    "CFG scale": 6,
                    "Seed": 77,
                    "Size": "512x512",
                    "Model hash": "e6bb9ea85b",
                    "Model": "anything-v5",
                    "Version": "v1.10.1",
                },
            )
        },
    )
    expected["a1111_unicode_itxt.png"] = {
        "generator": "AUTOMATIC1111",
        "prompt": up,
        "negative": "",
        "sampler": "Euler a",
        "scheduler": "Automatic",
        "steps": 25,
        "seed": 77,
    }

    # 4. Forge (Flux) PNG
    forge = {
        "Steps": 20,
        "Sampler": "Euler",
        "Schedule type": "Simple",
        "CFG scale": 1,
        "Distilled CFG Scale": 3.5,
        "Seed": 2817542428,
        "Size": "896x1152",
        "Model hash": "bea01d51bd",
        "Model": "flux1-dev-bnb-nf4-v2",
        "Lora hashes": "flux_realism: 5c6e7d3fa2b1",
        "Version": "f2.0.1v1.10.1-previous-313-g8a042934",
        "Diffusion in Low Bits": "Automatic (fp16 LoRA)",
        "Module 1": "ae",
        "Module 2": "clip_l",
        "Module 3": "t5xxl_fp8_e4m3fn",
    }
    fp = "a cat wearing a tiny wizard hat, photo <lora:flux_realism:1>"
    save_png_text(p("forge_flux.png"), {"parameters": a1111_infotext(fp, "", forge)})
    expected["forge_flux.png"] = {
        "generator": "AUTOMATIC1111 (Forge)",
        "prompt": fp,
        "negative": "",
        "sampler": "Euler",
        "scheduler": "Simple",
        "steps": 20,
        "cfg": 1,
        "distilled_cfg": 3.5,
        "seed": 2817542428,
        "model": "flux1-dev-bnb-nf4-v2",
        "vae_modules": ["ae", "clip_l", "t5xxl_fp8_e4m3fn"],
        "loras": {"flux_realism": 1.0},
        "lora_hashes": {"flux_realism": "5c6e7d3fa2b1"},
    }

    # 5. SD.Next PNG (processing_info.create_infotext key set)
    sdn = {
        "Steps": 20,
        "Seed": 998877,
        "Sampler": "DPM++ 2M",
        "CFG scale": 6,
        "Size": "1024x1024",
        "Batch": "1x4",
        "Index": "1x3",
        "Parser": "native",
        "Model": "sd_xl_base_1.0",
        "Model hash": "31e35c80fc",
        "VAE": "sdxl-vae-fp16-fix",
        "Clip skip": None,
        "Lora hashes": "add_detail: 7c6bad76eb54",
        "Backend": "Diffusers",
        "App": "SD.Next",
        "Version": "2ad4b5f",
        "Operations": "txt2img",
        "Pipeline": "StableDiffusionXLPipeline",
        "Sampler spacing": "trailing",
    }
    sp = "analog photo of a lighthouse in a storm <lora:add_detail:0.5>"
    save_png_text(p("sdnext.png"), {"parameters": a1111_infotext(sp, "lowres", sdn)})
    expected["sdnext.png"] = {
        "generator": "SD.Next",
        "prompt": sp,
        "negative": "lowres",
        "sampler": "DPM++ 2M",
        "scheduler": None,
        "steps": 20,
        "cfg": 6,
        "seed": 998877,
        "batch": "1x4",
        "index": "1x3",
        "model": "sd_xl_base_1.0",
        "vae": "sdxl-vae-fp16-fix",
    }

    # 5b. Civitai-style "Hashes: {json}" (written by the Civitai extension / civitai.com generator);
    #     note the JSON is NOT quoted, so naive comma splitting breaks it.
    civ = dict(params)
    civ.pop("Lora hashes")
    civ.pop("TI hashes")
    civ_text = a1111_infotext(A1111_PROMPT, A1111_NEG, civ)
    hashes = {
        "model": "31e35c80fc",
        "vae": "235745af8d",
        "lora:add_detail": "7c6bad76eb54",
        "embed:easynegative": "c74b4e810b03",
    }
    civ_text += ", Hashes: " + json.dumps(hashes)
    save_png_text(p("a1111_civitai_hashes.png"), {"parameters": civ_text})
    expected["a1111_civitai_hashes.png"] = {
        "generator": "AUTOMATIC1111",
        "prompt": A1111_PROMPT,
        "negative": A1111_NEG,
        "sampler": "DPM++ 2M",
        "scheduler": "Karras",
        "steps": 30,
        "seed": 1234567890,
        "model_hash": MODEL_HASH,
        "hashes": hashes,
    }

    # 6/7. A1111 JPEG + WEBP (EXIF UserComment UNICODE/UTF-16BE in Exif IFD)
    rgb = base_image()
    rgb.save(p("a1111.jpg"), format="JPEG", quality=90, exif=exif_usercomment_unicode(info))
    rgb.save(p("a1111.webp"), format="WEBP", quality=90, exif=exif_usercomment_unicode(info))
    for n in ("a1111.jpg", "a1111.webp"):
        expected[n] = dict(expected["a1111_v110.png"])

    # 8. ComfyUI PNG (SaveImage)
    prompt, workflow = comfy_graphs()
    save_png_text(p("comfyui.png"), {"prompt": json.dumps(prompt), "workflow": json.dumps(workflow)})
    expected["comfyui.png"] = {
        "generator": "ComfyUI",
        "prompt": prompt["6"]["inputs"]["text"],
        "negative": prompt["7"]["inputs"]["text"],
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "steps": 20,
        "cfg": 8.0,
        "seed": 156680208700286,
        "size": [1024, 1024],
        "model": "sd_xl_base_1.0.safetensors",
        "loras": {"add_detail.safetensors": 0.8},
    }
    # 9. ComfyUI API-only (only "prompt" chunk, e.g. workflow stripped / saved via API with no extra_pnginfo)
    save_png_text(p("comfyui_prompt_only.png"), {"prompt": json.dumps(prompt)})
    expected["comfyui_prompt_only.png"] = dict(expected["comfyui.png"])
    # 9b. ComfyUI with common custom nodes: values wired in from a Seed (rgthree), constants and a
    # string primitive, pysssss' checkpoint loader (its name in a dict), rgthree's Power Lora Loader
    save_png_text(p("comfyui_custom_nodes.png"), {"prompt": json.dumps(comfy_custom_nodes_graph())})
    expected["comfyui_custom_nodes.png"] = {
        "generator": "ComfyUI",
        "prompt": "a lighthouse at dusk, volumetric light",
        "negative": "blurry",
        "sampler": "euler_ancestral",
        "seed": 424242424242,
        "steps": 28,
        "cfg": 5.5,
        "size": [896, 1152],
        "model": "juggernautXL_v9.safetensors",
        "loras": {"add_detail.safetensors": 0.6},
    }

    # 9c. SwarmUI: JSON in the "parameters" chunk (PNG) or the EXIF UserComment (JPEG), as its
    # docs' "Image Metadata Format" gives it; values may come as strings and lists as "a,b"
    swarm = {
        "sui_image_params": {
            "prompt": "a red lighthouse on a cliff, <embed:FastNegativeV2>",
            "negativeprompt": "lowres",
            "model": "OfficialStableDiffusion/sd_xl_base_1.0",
            "seed": 20241113,
            "steps": "24",
            "cfgscale": "6.5",
            "aspectratio": "Custom",
            "width": 832,
            "height": 1216,
            "sampler": "euler_ancestral",
            "scheduler": "normal",
            "vae": "OfficialStableDiffusion/sdxl_vae",
            "loras": "arcane_style,detail_tweaker",
            "loraweights": "0.8,0.5",
            "swarm_version": "0.9.3.1",
        },
        "sui_extra_data": {"date": "2024-11-13", "generation_time": "6.11 (prep) and 4.84 (gen) seconds"},
        "sui_models": [
            {
                "name": "OfficialStableDiffusion/sd_xl_base_1.0.safetensors",
                "param": "model",
                "hash": "0x31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
            }
        ],
    }
    save_png_text(p("swarmui.png"), {"parameters": json.dumps(swarm, indent=2)})
    base_image().save(p("swarmui.jpg"), format="JPEG", quality=90, exif=exif_usercomment_unicode(json.dumps(swarm)))

    # 10. InvokeAI 4/5
    graph = {
        "id": "sdxl_graph:7LKd5LqgBD",
        "nodes": {"noise:JhAzOy0T42": {"seed": 591741300, "type": "noise"}},
        "edges": [],
    }
    save_png_text(
        p("invokeai_v5.png"), {"invokeai_metadata": json.dumps(INVOKE5_META), "invokeai_graph": json.dumps(graph)}
    )
    expected["invokeai_v5.png"] = {
        "generator": "InvokeAI",
        "prompt": INVOKE5_META["positive_prompt"],
        "negative": INVOKE5_META["negative_prompt"],
        "scheduler": "dpmpp_2m_sde_k",
        "steps": 30,
        "cfg": 5.0,
        "seed": 591741300,
        "size": [1024, 1024],
        "model": "juggernautXL_v9",
        "model_hash": INVOKE5_META["model"]["hash"],
        "vae": "sdxl-vae-fp16-fix",
        "loras": {"add_detail_xl": 0.75},
    }
    # 11. InvokeAI 3.x
    save_png_text(p("invokeai_v3.png"), {"invokeai_metadata": json.dumps(INVOKE3_META)})
    expected["invokeai_v3.png"] = {
        "generator": "InvokeAI",
        "prompt": INVOKE3_META["positive_prompt"],
        "negative": INVOKE3_META["negative_prompt"],
        "scheduler": "euler",
        "steps": 35,
        "cfg": 8.0,
        "seed": 3293022630,
        "model": "stable-diffusion-v1-5",
        "vae": "sd-vae-ft-mse",
        "loras": {"add_detail": 0.6},
    }
    # 12. InvokeAI 2.x (sd-metadata + Dream)
    dream = '"a fantasy castle on a hill [ugly, blurry]" -s 50 -S 42 -W 512 -H 512 -C 7.5 -A k_lms'
    save_png_text(p("invokeai_v2.png"), {"Dream": dream, "sd-metadata": json.dumps(INVOKE2_SDMETA)})
    expected["invokeai_v2.png"] = {
        "generator": "InvokeAI",
        "prompt": "a fantasy castle on a hill",
        "negative": "ugly, blurry",
        "sampler": "k_lms",
        "steps": 50,
        "cfg": 7.5,
        "seed": 42,
        "model": "stable-diffusion-1.5",
    }

    # 13. Fooocus PNG (fooocus scheme)
    save_png_text(p("fooocus.png"), {"parameters": json.dumps(FOOOCUS_JSON), "fooocus_scheme": "fooocus"})
    expected["fooocus.png"] = {
        "generator": "Fooocus",
        "prompt": "a smiling goldfish",
        "negative": "",
        "sampler": "dpmpp_2m_sde_gpu",
        "scheduler": "karras",
        "steps": 30,
        "cfg": 4,
        "seed": 6952411511246973023,
        "size": [896, 1152],
        "model": "juggernautXL_v8Rundiffusion",
        "model_hash": "aeb7e9e689",
        "vae": "Default (model)",
        "loras": {"sd_xl_offset_example-lora_1.0": 0.1},
    }
    # 14. Fooocus PNG, a1111 scheme (meta_parser.A1111MetadataParser.parse_string)
    fa = {
        "Steps": 30,
        "Sampler": "DPM++ 2M SDE Karras",
        "Seed": "6952411511246973023",
        "Size": "896x1152",
        "CFG scale": 4,
        "Sharpness": 2,
        "ADM Guidance": "(1.5, 0.8, 0.3)",
        "Model": "juggernautXL_v8Rundiffusion",
        "Model hash": "aeb7e9e689",
        "Performance": "Speed",
        "Scheduler": "karras",
        "VAE": "Default (model)",
        "Raw prompt": "a smiling goldfish",
        "Raw negative prompt": "",
        "Lora hashes": "sd_xl_offset_example-lora_1.0: 4852686128",
        "Lora weights": "sd_xl_offset_example-lora_1.0: 0.1",
        "Version": "Fooocus v2.5.5",
    }
    fa_prompt = ", ".join(FOOOCUS_JSON["full_prompt"])
    fa_neg = ", ".join(FOOOCUS_JSON["full_negative_prompt"])
    fooocus_a1111_text = a1111_infotext(fa_prompt, fa_neg, fa)
    save_png_text(p("fooocus_a1111_scheme.png"), {"parameters": fooocus_a1111_text, "fooocus_scheme": "a1111"})
    expected["fooocus_a1111_scheme.png"] = {
        "generator": "Fooocus",
        "prompt": fa_prompt,
        "negative": fa_neg,
        "sampler": "DPM++ 2M SDE",
        "scheduler": "karras",
        "steps": 30,
        "cfg": 4,
        "model_hash": "aeb7e9e689",
        "loras": {"sd_xl_offset_example-lora_1.0": 0.1},
    }
    # 15/16. Fooocus JPEG / WEBP (get_exif -> IFD0 tags)
    rgb.save(
        p("fooocus.jpg"), format="JPEG", quality=95, exif=fooocus_exif(json.dumps(FOOOCUS_JSON), "fooocus", "2.5.5")
    )
    rgb.save(
        p("fooocus.webp"), format="WEBP", quality=95, exif=fooocus_exif(json.dumps(FOOOCUS_JSON), "fooocus", "2.5.5")
    )
    expected["fooocus.jpg"] = dict(expected["fooocus.png"])
    expected["fooocus.webp"] = dict(expected["fooocus.png"])

    # 17. NovelAI PNG text chunks
    save_png_text(p("novelai.png"), novelai_chunks(), image=base_image("RGBA"))
    nai_exp = {
        "generator": "NovelAI",
        "prompt": NOVELAI_COMMENT["prompt"],
        "negative": NOVELAI_COMMENT["uc"],
        "sampler": "k_euler_ancestral",
        "scheduler": "karras",
        "steps": 28,
        "cfg": 5.0,
        "seed": 1881290394,
        "size": [832, 1216],
        "model": "NovelAI Diffusion V4.5",
        "model_hash": "4BDE2A90",
    }
    expected["novelai.png"] = nai_exp
    # 18. NovelAI stealth only (text chunks stripped, e.g. after re-upload) - payload = JSON of the chunks
    big = base_image("RGBA", size=(256, 256))
    stealth_encode(big, json.dumps(novelai_chunks())).save(p("novelai_stealth.png"), format="PNG")
    expected["novelai_stealth.png"] = dict(nai_exp)
    # 19. A1111 stealth-pnginfo extension (payload = infotext)
    stealth_encode(big, info).save(p("a1111_stealth.png"), format="PNG")
    expected["a1111_stealth.png"] = dict(expected["a1111_v110.png"])

    # 20. no metadata at all
    base_image().save(p("no_metadata.png"), format="PNG")
    base_image().save(p("no_metadata.jpg"), format="JPEG")
    expected["no_metadata.png"] = {"generator": None}
    expected["no_metadata.jpg"] = {"generator": None}

    # 21. A1111 params stored *after* IDAT (legal PNG; some tools re-write chunks this way)
    with open(p("a1111_text_after_idat.png"), "wb") as f:
        f.write(raw_png(W, H, post_idat=[(b"tEXt", b"parameters\x00" + info.encode("latin-1"))]))
    expected["a1111_text_after_idat.png"] = dict(expected["a1111_v110.png"])

    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1, ensure_ascii=False)
    return expected


def write_bad(d: str) -> None:
    os.makedirs(d, exist_ok=True)
    p = lambda name: os.path.join(d, name)  # noqa: E731
    open(p("empty.png"), "wb").close()
    with open(p("not_an_image.png"), "w") as f:
        f.write("Steps: 20, Sampler: Euler, CFG scale: 7, Seed: 1\nthis is a text file\n")
    good = io.BytesIO()
    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x96")
    base_image().save(good, format="PNG", pnginfo=info)
    data = good.getvalue()
    with open(p("truncated_after_text.png"), "wb") as f:  # text chunk intact, IDAT cut
        idat = data.index(b"IDAT")
        f.write(data[: idat + 20])
    with open(p("truncated_in_header.png"), "wb") as f:
        f.write(data[:30])
    with open(p("jpeg_named_png.png"), "wb") as f:  # wrong extension, valid JPEG
        base_image().save(
            f, format="JPEG", exif=exif_usercomment_unicode("a dog\nSteps: 5, Sampler: Euler, CFG scale: 7, Seed: 9")
        )
    # huge declared dimensions (30000x30000 = 900 MP > 2*MAX_IMAGE_PIXELS) with metadata before IDAT
    txt = b"parameters\x00a bomb\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 30000x30000"
    with open(p("bomb_30000x30000.png"), "wb") as f:
        f.write(raw_png(30000, 30000, pre_idat=[(b"tEXt", txt)], idat=zlib.compress(b"\x00" * 1000)))
    # 10000x10000 = 100 MP: between MAX_IMAGE_PIXELS (89.5 MP) and 2x (179 MP) -> DecompressionBombWarning only
    with open(p("warn_10000x10000.png"), "wb") as f:
        f.write(raw_png(10000, 10000, pre_idat=[(b"tEXt", txt)], idat=zlib.compress(b"\x00" * 1000)))
    # 8000x8000 (64 MP, under the limit) whose IDAT really inflates to 192 MB, *no* metadata:
    # a valid image that sd-parsers' DEFAULT eagerness will fully decode (Image.text -> load()).
    with open(p("valid_8000x8000_nometa.png"), "wb") as f:
        co = zlib.compressobj(9)
        row = b"\x00" + bytes(3 * 8000)
        idat = b"".join(co.compress(row) for _ in range(8000)) + co.flush()
        f.write(raw_png(8000, 8000, idat=idat))
    # truncated IDAT and no metadata in the header part
    plain = io.BytesIO()
    base_image().save(plain, format="PNG")
    pdata = plain.getvalue()
    with open(p("truncated_no_text.png"), "wb") as f:
        f.write(pdata[: pdata.index(b"IDAT") + 20])
    # 50 MB tEXt chunk (under MAX_TEXT_MEMORY=64 MiB) and 2 x 40 MB (over it)
    huge = b"parameters\x00" + b"x" * (50 * 1024 * 1024) + b"\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 1"
    with open(p("text_50mb.png"), "wb") as f:
        f.write(raw_png(8, 8, pre_idat=[(b"tEXt", huge)]))
    two = b"x" * (40 * 1024 * 1024)
    with open(p("text_2x40mb.png"), "wb") as f:
        f.write(raw_png(8, 8, pre_idat=[(b"tEXt", b"parameters\x00" + two), (b"tEXt", b"workflow\x00" + two)]))
    # zTXt that inflates beyond MAX_TEXT_CHUNK (1 MiB) -> "Decompressed data too large"
    with open(p("ztxt_2mb.png"), "wb") as f:
        f.write(raw_png(8, 8, pre_idat=[(b"zTXt", b"parameters\x00\x00" + zlib.compress(b"y" * (2 * 1024 * 1024)))]))
    # corrupt CRC on the text chunk
    blob = bytearray(
        raw_png(8, 8, pre_idat=[(b"tEXt", b"parameters\x00a\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 1")])
    )
    i = blob.index(b"tEXt")
    ln = struct.unpack(">I", blob[i - 4 : i])[0]
    blob[i + 4 + ln] ^= 0xFF
    with open(p("bad_crc_text.png"), "wb") as f:
        f.write(bytes(blob))
    # garbage JSON in ComfyUI / InvokeAI / Fooocus chunks
    save_png_text(p("comfy_bad_json.png"), {"prompt": "{not json", "workflow": "{}"})
    save_png_text(p("invoke_bad_json.png"), {"invokeai_metadata": "{not json"})
    save_png_text(p("params_no_sampler.png"), {"parameters": "just a prompt, no settings line"})
    # JPEG whose UserComment is ASCII-prefixed (some tools) and one with UTF-16LE (exiftool on II files)
    e = exif_usercomment_raw(b"ASCII\x00\x00\x00" + b"a cow\nSteps: 5, Sampler: Euler, CFG scale: 7, Seed: 3")
    base_image().save(p("usercomment_ascii.jpg"), format="JPEG", exif=e)
    e = exif_usercomment_raw(
        b"UNICODE\x00" + "a pig\nSteps: 5, Sampler: Euler, CFG scale: 7, Seed: 4".encode("utf_16_le")
    )
    base_image().save(p("usercomment_utf16le.jpg"), format="JPEG", exif=e)


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    exp = write_good(os.path.join(out, "good"))
    write_bad(os.path.join(out, "bad"))
    print(f"wrote {len(exp)} good fixtures + bad cases under {out}")


if __name__ == "__main__":
    main()
