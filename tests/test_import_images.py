"""`learning-svc import` of folders of generated images: every UI's metadata, identity by content,
and every kind of bad file reported without stopping the rest."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from learning_svc import create_app
from learning_svc.config import Settings
from learning_svc.importers import images
from learning_svc.importers.run import run_import

import image_fixtures

# What each fixture must give: the UI's values, with learning_svc's one sampler vocabulary
# (A1111's labels; a scheduler folded into a name is the scheduler), "" as absent.
EXPECTED = {
    "a1111_v110.png": dict(
        generator="AUTOMATIC1111",
        sampler="DPM++ 2M",
        scheduler="Karras",
        steps=30,
        cfg_scale=7.0,
        seed=1234567890,
        width=832,
        height=1216,
        model="juggernautXL_v9Rundiffusionphoto2",
        vae="sdxl_vae.safetensors",
        loras={"add_detail": 0.8, "lcm-lora-sdxl": 0.35},
    ),
    "a1111.jpg": dict(generator="AUTOMATIC1111", sampler="DPM++ 2M", seed=1234567890, width=832, height=1216),
    "a1111.webp": dict(generator="AUTOMATIC1111", sampler="DPM++ 2M", seed=1234567890, width=832, height=1216),
    "a1111_legacy_batch.png": dict(
        generator="AUTOMATIC1111", sampler="DPM++ 2M Karras", steps=20, cfg_scale=7.5, seed=3021, width=512, height=768
    ),
    "a1111_unicode_itxt.png": dict(
        generator="AUTOMATIC1111",
        prompt="桜の木の下の少女, 1girl, cherry blossoms, 🌸",
        negative_prompt=None,
        sampler="Euler a",
        seed=77,
    ),
    "a1111_civitai_hashes.png": dict(generator="AUTOMATIC1111", steps=30, seed=1234567890),
    "forge_flux.png": dict(
        generator="Forge",
        sampler="Euler",
        scheduler="Simple",
        seed=2817542428,
        model="flux1-dev-bnb-nf4-v2",
        loras={"flux_realism": 1.0},
    ),
    "sdnext.png": dict(
        generator="SD.Next",
        sampler="DPM++ 2M",
        seed=998877,
        model="sd_xl_base_1.0",
        vae="sdxl-vae-fp16-fix",
        negative_prompt="lowres",
    ),
    "comfyui.png": dict(
        generator="ComfyUI",
        sampler="DPM++ 2M",
        scheduler="Karras",
        steps=20,
        cfg_scale=8.0,
        seed=156680208700286,
        width=1024,
        height=1024,
        model="sd_xl_base_1.0.safetensors",
        negative_prompt="text, watermark",
        loras={"add_detail.safetensors": 0.8},
    ),
    "comfyui_prompt_only.png": dict(
        generator="ComfyUI", sampler="DPM++ 2M", seed=156680208700286, model="sd_xl_base_1.0.safetensors"
    ),
    "comfyui_custom_nodes.png": dict(
        generator="ComfyUI",
        prompt="a lighthouse at dusk, volumetric light",
        negative_prompt="blurry",
        sampler="Euler a",
        scheduler="Normal",
        steps=28,
        cfg_scale=5.5,
        seed=424242424242,
        width=896,
        height=1152,
        model="juggernautXL_v9.safetensors",
        loras={"add_detail.safetensors": 0.6},
    ),
    "swarmui.png": dict(
        generator="SwarmUI",
        prompt="a red lighthouse on a cliff, <embed:FastNegativeV2>",
        negative_prompt="lowres",
        sampler="Euler a",
        scheduler="Normal",
        steps=24,
        cfg_scale=6.5,
        seed=20241113,
        width=832,
        height=1216,
        model="OfficialStableDiffusion/sd_xl_base_1.0",
        vae="OfficialStableDiffusion/sdxl_vae",
        loras={"arcane_style": 0.8, "detail_tweaker": 0.5},
    ),
    "swarmui.jpg": dict(
        generator="SwarmUI",
        sampler="Euler a",
        steps=24,
        seed=20241113,
        loras={"arcane_style": 0.8, "detail_tweaker": 0.5},
    ),
    "invokeai_v5.png": dict(
        generator="InvokeAI",
        sampler="DPM++ 2M SDE",
        scheduler="Karras",
        steps=30,
        cfg_scale=5.0,
        seed=591741300,
        model="juggernautXL_v9",
        vae="sdxl-vae-fp16-fix",
        loras={"add_detail_xl": 0.75},
    ),
    "invokeai_v3.png": dict(
        generator="InvokeAI",
        sampler="Euler",
        steps=35,
        seed=3293022630,
        model="stable-diffusion-v1-5",
        vae="sd-vae-ft-mse",
        loras={"add_detail": 0.6},
    ),
    "invokeai_v2.png": dict(
        generator="InvokeAI",
        sampler="LMS",
        steps=50,
        seed=42,
        model="stable-diffusion-1.5",
        prompt="a fantasy castle on a hill",
        negative_prompt="ugly, blurry",
    ),
    "fooocus.png": dict(
        generator="Fooocus",
        sampler="DPM++ 2M SDE",
        scheduler="Karras",
        steps=30,
        seed=6952411511246973023,
        width=896,
        height=1152,
        model="juggernautXL_v8Rundiffusion",
        loras={"sd_xl_offset_example-lora_1.0": 0.1},
        vae=None,  # Fooocus writes "Default (model)": the model's own, no VAE of its own
    ),
    "fooocus.jpg": dict(generator="Fooocus", sampler="DPM++ 2M SDE", seed=6952411511246973023),
    "fooocus.webp": dict(generator="Fooocus", sampler="DPM++ 2M SDE", seed=6952411511246973023),
    "fooocus_a1111_scheme.png": dict(
        generator="Fooocus", scheduler="Karras", steps=30, loras={"sd_xl_offset_example-lora_1.0": 0.1}, vae=None
    ),
    "novelai.png": dict(
        generator="NovelAI",
        sampler="Euler a",
        scheduler="Karras",
        steps=28,
        cfg_scale=5.0,
        seed=1881290394,
        width=832,
        height=1216,
        model="NovelAI Diffusion V4.5",
    ),
    # nothing before the pixel data: the alpha channel's lowest bits (decoded), or text chunks after it
    "novelai_stealth.png": dict(
        generator="NovelAI",
        sampler="Euler a",
        scheduler="Karras",
        steps=28,
        seed=1881290394,
        model="NovelAI Diffusion V4.5",
    ),
    "a1111_stealth.png": dict(
        generator="AUTOMATIC1111",
        sampler="DPM++ 2M",
        scheduler="Karras",
        steps=30,
        seed=1234567890,
        model="juggernautXL_v9Rundiffusionphoto2",
        loras={"add_detail": 0.8, "lcm-lora-sdxl": 0.35},
    ),
    "a1111_text_after_idat.png": dict(
        generator="AUTOMATIC1111", sampler="DPM++ 2M", steps=30, seed=1234567890, vae="sdxl_vae.safetensors"
    ),
    "no_metadata.png": dict(generator="no metadata", width=64, height=96),
    "no_metadata.jpg": dict(generator="no metadata", width=64, height=96),
}
BAD = {  # file -> what the report says
    "empty.png": "empty file",
    "not_an_image.png": "not a PNG, JPEG or WEBP image",
    "truncated_in_header.png": "truncated",
    "truncated_after_text.png": "truncated",
    "truncated_no_text.png": "truncated",
    "bomb_30000x30000.png": "decompression bomb",
    # Text chunks Pillow refuses (too large one by one, or together): the image is imported,
    # its generator "unreadable metadata", and the report says which chunk was not read.
    "text_2x40mb.png": "metadata 'parameters' not read: 40.0 MiB",
    "ztxt_2mb.png": "metadata 'parameters' not read: inflates past 1 MiB",
    # A text chunk whose checksum is wrong is dropped, as libpng does (it refused the image whole).
    "bad_crc_text.png": "metadata 'parameters' not read: damaged (its checksum does not match)",
    # One Pillow reads (under its 64 MiB for all text chunks) made a 50 MiB record, refused whole
    # (the image lost; a new-user run: `serve --watch` took it): it is left out the same way.
    "text_50mb.png": "metadata 'parameters' not read: 50.0 MiB",
}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    image_fixtures.write_good(str(root / "good"))
    image_fixtures.write_bad(str(root / "bad"))
    (root / "good" / "expected.json").unlink()
    return root


def listed_by_file(settings: Settings) -> dict[str, dict]:
    app = create_app(settings)
    try:
        client = app.test_client()
        jobs = client.get("/api/jobs?limit=500").json["jobs"]
        return {Path(job["outputs"][0]).name: client.get(f"/api/jobs/{job['job_id']}").json["record"] for job in jobs}
    finally:
        app.extensions["learning_svc"].close()


def test_each_ui_s_metadata_becomes_a_job(tmp_path, fixtures):
    settings = Settings(data_dir=tmp_path / "learning", output_root=fixtures)
    result = run_import(settings, [fixtures / "good"])
    assert result.tally.total()["imported"] == len(EXPECTED) and not result.tally.problems
    records = listed_by_file(settings)
    for name, expected in EXPECTED.items():
        record = records[name]
        for key, value in expected.items():
            got = {x["name"]: x["weight"] for x in record["loras"]} if key == "loras" else record[key]
            assert got == value, (name, key)
        assert record["job_id"] == images.content_id((fixtures / "good" / name).read_bytes())
        assert record["outputs"] == [f"good/{name}"]  # relative to the output root: thumbnails find it
        if expected["generator"] != "no metadata":
            assert record["run_config"]["metadata"] and record["extra"]["image"]["metadata"] is True
    a1111 = records["a1111_v110.png"]
    assert a1111["run_config"]["lora_hashes"] == {"add_detail": "7c6bad76eb54", "lcm-lora-sdxl": "2f8f8c9c21b3"}
    assert a1111["run_config"]["ti_hashes"] == {"easynegative": "c74b4e810b03", "badhandv4": "5e40d722fc3d"}
    assert (
        a1111["run_config"]["model_hash"] == "31e35c80fc" and a1111["run_config"]["parameters"]["Hires steps"] == "15"
    )
    assert records["a1111_civitai_hashes.png"]["run_config"]["hashes"]["lora:add_detail"] == "7c6bad76eb54"
    # A1111 names a textual inversion bare in the prompt: its TI hashes (Civitai's embed:) say which
    # words are embeddings. Every A1111 image had none.
    for name in ("a1111_v110.png", "a1111.jpg", "a1111.webp", "a1111_stealth.png"):
        assert [e["name"] for e in records[name]["embeddings"]] == ["easynegative", "badhandv4"], name
    assert "easynegative" in [e["name"] for e in records["a1111_civitai_hashes.png"]["embeddings"]]
    assert records["invokeai_v5.png"]["run_config"]["model_hash"].startswith("blake3:")
    # each UI's own sampler name is kept beside the one vocabulary (an outside run: ComfyUI's,
    # InvokeAI's and NovelAI's were dropped)
    assert records["comfyui.png"]["run_config"]["parameters"]["samplers"][0]["sampler_name"] == "dpmpp_2m"
    assert records["invokeai_v5.png"]["run_config"]["parameters"]["sampler"] == "dpmpp_2m_sde_k"
    assert records["novelai.png"]["run_config"]["parameters"]["sampler"] == "k_euler_ancestral"
    swarm = records["swarmui.png"]
    assert swarm["run_config"]["model_hash"] == "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b"
    assert [e["name"] for e in swarm["embeddings"]] == ["FastNegativeV2"]
    assert swarm["run_config"]["parameters"]["sui_extra_data"]["date"] == "2024-11-13"
    # the facets group the UIs' words: one sampler, one scheduler
    app = create_app(settings)
    try:
        facets = app.test_client().get("/api/facets").json["facets"]
        assert {"value": "DPM++ 2M", "count": 10, "mean_rating": None} in facets[
            "sampler"
        ]  # A1111 (also stealth, after IDAT), legacy, Comfy
        assert {v["value"] for v in facets["generator"]} == {
            "AUTOMATIC1111",
            "Forge",
            "SD.Next",
            "ComfyUI",
            "SwarmUI",
            "InvokeAI",
            "Fooocus",
            "NovelAI",
            "no metadata",
        }
        thumbnail = app.test_client().get(f"/api/jobs/{a1111['job_id']}/outputs/0/thumbnail")
        assert thumbnail.status_code == 200 and thumbnail.mimetype == "image/jpeg"
        assert "X-Learning-Placeholder" not in thumbnail.headers
    finally:
        app.extensions["learning_svc"].close()


def test_the_same_image_anywhere_is_the_same_job(tmp_path, fixtures):
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    first, second = tmp_path / "outputs", tmp_path / "copies" / "deeper"
    shutil.copytree(fixtures / "good", first)
    second.parent.mkdir()
    shutil.copytree(fixtures / "good", second)
    result = run_import(settings, [first])
    size = settings.log_path.stat().st_size
    again = run_import(settings, [first, second])
    assert again.tally.total()["imported"] == 0
    assert again.tally.total()["already present"] == 2 * result.tally.total()["imported"]
    assert settings.log_path.stat().st_size == size  # not one byte written
    assert all(r["outputs"][0].startswith("outputs/") for r in listed_by_file(settings).values())


def test_bad_files_are_reported_and_never_stop_the_rest(tmp_path, fixtures):
    settings = Settings(data_dir=tmp_path / "learning", output_root=fixtures)
    folder = tmp_path / "mixed"
    shutil.copytree(fixtures / "bad", folder)
    shutil.copy(fixtures / "good" / "a1111_v110.png", folder / "fine.png")
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a symlink loop: not followed
    odd = os.fsencode(folder) + b"/caf\xe9 \xff.png"  # not UTF-8: Linux allows any bytes
    with open(odd, "wb") as f:
        f.write((fixtures / "good" / "no_metadata.png").read_bytes())
    spaced = folder / "a name with spaces, [brackets] & ünïcode.png"
    shutil.copy(fixtures / "good" / "comfyui.png", spaced)
    result = run_import(settings, [folder])
    reasons = {Path(p["file"]).name: p["reason"] for p in result.tally.problems}
    for name, reason in BAD.items():
        assert reason in reasons[name], (name, reasons.get(name))
    assert "not valid UTF-8" in reasons["caf\\xe9 \\xff.png"]  # the name's own bytes, as a user can find it
    records = listed_by_file(settings)
    assert {"fine.png", spaced.name, "jpeg_named_png.png", "warn_10000x10000.png", "valid_8000x8000_nometa.png"} <= set(
        records
    )
    assert records["jpeg_named_png.png"]["prompt"] == "a dog"
    for name in (
        "text_2x40mb.png",
        "ztxt_2mb.png",
        "bad_crc_text.png",
        "text_50mb.png",
    ):  # rated like any image, why kept
        assert records[name]["generator"] == "unreadable metadata", name
        assert records[name]["run_config"]["metadata"]["parameters"].startswith("<not read"), name
    assert records["warn_10000x10000.png"]["width"] == 30000  # the metadata's Size; the pixels never decoded
    assert len(result.report.read_text().splitlines()) == len(result.tally.problems)


def test_completeness_of_each_format(fixtures):
    for name in ("a1111_v110.png", "a1111.jpg", "a1111.webp"):
        data = (fixtures / "good" / name).read_bytes()
        assert images.complete(data) and not images.complete(data[:-10]), name


def test_an_image_with_bytes_after_its_end_is_complete_and_imported(fixtures, tmp_path):
    """A new-user run: a PNG or JPEG with bytes after its end (a phone's motion photo, a tool's
    trailer) was "truncated: still being written?" for ever, in `import` and in the watcher.
    Its chunks (PNG) or segments (JPEG) are walked now; a cut file stays incomplete, also a
    JPEG whose EXIF thumbnail holds an end marker of its own."""
    for name in ("a1111_v110.png", "a1111.jpg"):
        data = (fixtures / "good" / name).read_bytes()
        trailed = data + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256))
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"trailed-{name}").write_bytes(trailed)
        assert images.complete(trailed), name
        assert not any(images.complete(data[:cut]) for cut in range(len(data) - 64, len(data) - 1)), name
    thumbnail = Image.new("RGB", (16, 16))
    exif = Image.Exif()
    exif[0x9286] = "Steps: 20"
    with_thumb = io.BytesIO()
    inner = io.BytesIO()
    thumbnail.save(inner, "JPEG")
    assert inner.getvalue().endswith(b"\xff\xd9")
    Image.new("RGB", (64, 64), (200, 10, 10)).save(with_thumb, "JPEG", exif=exif.tobytes() + inner.getvalue())
    data = with_thumb.getvalue()
    scan = data.rindex(b"\xff\xda")  # the image's own scan (the thumbnail has one before it)
    assert b"\xff\xd9" in data[:scan]  # the thumbnail's end marker, before the scan
    assert images.complete(data) and not images.complete(data[: scan + 20])
    result = run_import(Settings(data_dir=tmp_path / "learning"), [tmp_path / "in"])
    assert result.tally.total()["imported"] == 2, result.tally.problems


def stealth_bits(image, bits: str):
    """Write `bits` into the alpha channel's lowest bits, column by column (as stealth-pnginfo does)."""
    pixels = image.load()
    width, height = image.size
    for i, bit in enumerate(bits):
        x, y = divmod(i, height)
        r, g, b, a = pixels[x, y]
        pixels[x, y] = (r, g, b, (a & ~1) | int(bit))
    return image


def test_forged_stealth_data_is_no_metadata_and_big_images_are_not_decoded_for_it(tmp_path, monkeypatch):
    """Stealth data is read from the alpha bits only: a length past 1 MiB, a cut payload or
    one that is not gzip is no metadata (the image still imported); an image over the pixel
    limit is not decoded for it at all."""
    from PIL import Image

    signature = "".join(f"{byte:08b}" for byte in b"stealth_pngcomp")
    cases = {
        "huge_length.png": signature + f"{0xFFFFFFF8:032b}",
        "cut_payload.png": signature + f"{4000 * 8:032b}" + "1" * 64,
        "not_gzip.png": signature + f"{8 * 8:032b}" + "01" * 32,
    }
    folder = tmp_path / "forged"
    folder.mkdir()
    for name, bits in cases.items():
        stealth_bits(Image.new("RGBA", (64, 64), (10, 20, 30, 255)), bits).save(folder / name)
    for name in cases:
        assert images.hidden_chunks((folder / name).read_bytes()) == {}
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    result = run_import(settings, [folder])
    assert result.tally.total()["imported"] == 3 and not result.tally.problems

    real = image_fixtures.stealth_encode(Image.new("RGBA", (64, 64)), "a cat\nSteps: 5, Sampler: Euler, Seed: 3")
    real.save(folder / "real.png")
    assert images.hidden_chunks((folder / "real.png").read_bytes())["parameters"].startswith("a cat")
    monkeypatch.setattr(images, "STEALTH_MAX_PIXELS", 64 * 64 - 1)
    assert images.hidden_chunks((folder / "real.png").read_bytes()) == {}


def test_a_learning_svc_data_folder_inside_what_is_imported_gives_no_thumbnails_as_jobs(tmp_path, fixtures):
    """A StableNew installation laid out as the README's client example holds its learning_svc
    data folder (logs/learning): importing the installation imported every cached thumbnail of
    it as a job without metadata, and more at each import as the cache grew."""
    root = tmp_path / "StableNew"
    shutil.copytree(fixtures / "good", root / "output")
    data = Settings(data_dir=root / "logs" / "learning", output_root=root)
    assert run_import(data, [root / "output"]).tally.total()["imported"] == len(EXPECTED)
    app = create_app(data)
    try:  # the page asked for thumbnails: the cache is filled
        client = app.test_client()
        for job in client.get("/api/jobs?limit=500").json["jobs"][:5]:
            assert client.get(f"/api/jobs/{job['job_id']}/outputs/0/thumbnail").status_code == 200
        client.put(f"/api/jobs/{job['job_id']}/rating", json={"rating": 4})
    finally:
        app.extensions["learning_svc"].close()
    assert len(list((data.data_dir / "thumbnails").rglob("*.jpg"))) >= 5

    elsewhere = Settings(data_dir=tmp_path / "elsewhere", output_root=root)
    result = run_import(elsewhere, [root])
    assert result.tally.total()["imported"] == len(EXPECTED)  # the images once; no thumbnail, no report
    reasons = {Path(p["file"]).name: p["reason"] for p in result.tally.problems}
    assert not any("thumbnails" in p["file"] or "imports" in p["file"] for p in result.tally.problems), reasons
    assert "import that folder's export" in reasons["learning_ratings_v2.jsonl"], reasons


def test_dynamic_prompts_template_lines_after_the_settings_keep_the_settings(tmp_path):
    """Dynamic Prompts writes `Template:` and `Negative Template:` lines after A1111's settings
    line: the settings were lost (no steps, seed, sampler, model) and read into the negative prompt."""
    infotext = image_fixtures.a1111_infotext(
        "a red car <lora:carlora:0.6>",
        "ugly",
        {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 11, "Size": "512x512", "Model": "mdl"},
    )
    infotext += "\nTemplate: a {red|blue} car <lora:carlora:0.6>\nNegative Template: ugly"
    (tmp_path / "images").mkdir()
    image_fixtures.save_png_text(str(tmp_path / "images" / "dynprompts.png"), {"parameters": infotext})
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    assert run_import(settings, [tmp_path / "images"]).tally.total()["imported"] == 1
    [record] = listed_by_file(settings).values()
    assert (record["prompt"], record["negative_prompt"]) == ("a red car <lora:carlora:0.6>", "ugly")
    assert (record["steps"], record["seed"], record["sampler"], record["model"]) == (20, 11, "Euler a", "mdl")
    assert (record["width"], record["height"]) == (512, 512)
    assert record["run_config"]["parameters"]["Template"] == "a {red|blue} car <lora:carlora:0.6>"
    assert record["run_config"]["parameters"]["Negative Template"] == "ugly"


def test_without_an_output_root_an_import_records_absolute_paths_the_service_finds_from_anywhere(
    tmp_path, fixtures, monkeypatch
):
    """With LEARNING_SVC_OUTPUT_ROOT unset, paths were recorded relative to the working directory
    of the import command: a service started in another folder showed "image not found"."""
    shutil.copytree(fixtures / "good", tmp_path / "outputs")
    monkeypatch.chdir(tmp_path)  # the import is typed here ...
    settings = Settings(data_dir=tmp_path / "learning")
    assert run_import(settings, [Path("outputs")]).tally.total()["imported"] == len(EXPECTED)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # ... and the service started there
    app = create_app(settings)
    try:
        client = app.test_client()
        job = client.get("/api/jobs?limit=1").json["jobs"][0]
        assert Path(job["outputs"][0]).is_absolute() and Path(job["outputs"][0]).parent == tmp_path / "outputs"
        image = client.get(f"/api/jobs/{job['job_id']}/outputs/0")
        assert image.status_code == 200 and "X-Learning-Placeholder" not in image.headers
    finally:
        app.extensions["learning_svc"].close()


def test_metadata_that_cannot_be_read_is_kept_under_a_generator_of_its_own(tmp_path, fixtures):
    """A UI's metadata the importer cannot read (broken JSON, a ComfyUI workflow without its
    prompt) was called "no metadata" and dropped; an image without any stays "no metadata"."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("comfy_bad_json.png", "invoke_bad_json.png"):
        shutil.copy(fixtures / "bad" / name, folder / name)
    image_fixtures.save_png_text(str(folder / "workflow_only.png"), {"workflow": '{"nodes": []}'})
    image_fixtures.base_image().save(folder / "plain.png")
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    assert run_import(settings, [folder]).tally.total()["imported"] == 4
    records = listed_by_file(settings)
    assert records["comfy_bad_json.png"]["run_config"]["metadata"] == {"prompt": "{not json", "workflow": "{}"}
    assert records["invoke_bad_json.png"]["run_config"]["metadata"] == {"invokeai_metadata": "{not json"}
    assert records["workflow_only.png"]["run_config"]["metadata"] == {"workflow": '{"nodes": []}'}
    for name in ("comfy_bad_json.png", "invoke_bad_json.png", "workflow_only.png"):
        assert records[name]["generator"] == "unreadable metadata", name
    assert records["plain.png"]["generator"] == "no metadata" and records["plain.png"]["run_config"] == {}


def test_an_image_written_over_by_another_shows_as_replaced_not_as_the_new_one(tmp_path, fixtures):
    """A UI writing a new image over an imported one's file: the old job's viewer and thumbnail
    showed the new image, which its parameters did not make."""
    folder = tmp_path / "out"
    folder.mkdir()
    shutil.copy(fixtures / "good" / "a1111_v110.png", folder / "new1.png")
    shutil.copy(fixtures / "good" / "sdnext.png", folder / "touched.png")
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    assert run_import(settings, [folder]).tally.total()["imported"] == 2
    first = images.content_id((folder / "new1.png").read_bytes())
    touched = images.content_id((folder / "touched.png").read_bytes())
    shutil.copy(fixtures / "good" / "comfyui.png", folder / "new1.png")
    os.utime(folder / "new1.png", (1_800_000_000, 1_800_000_000))
    os.utime(folder / "touched.png", (1_800_000_000, 1_800_000_000))  # a new time, the same image
    assert run_import(settings, [folder]).tally.total()["imported"] == 1  # the new image: a job of its own
    app = create_app(settings)
    try:
        client = app.test_client()
        for path in (f"/api/jobs/{first}/outputs/0", f"/api/jobs/{first}/outputs/0/thumbnail"):
            assert client.get(path).headers.get("X-Learning-Placeholder") == "replaced", path
        second = images.content_id((folder / "new1.png").read_bytes())
        served = client.get(f"/api/jobs/{second}/outputs/0")
        assert "X-Learning-Placeholder" not in served.headers and served.data == (folder / "new1.png").read_bytes()
        assert "X-Learning-Placeholder" not in client.get(f"/api/jobs/{touched}/outputs/0").headers
    finally:
        app.extensions["learning_svc"].close()


def test_the_final_table_stays_aligned_with_wide_characters_in_file_names():
    """`ünïcødé 画像 🌸.png` shifted its row: the names were padded by characters, not columns."""
    from learning_svc.importers import Where
    from learning_svc.importers.run import Tally, _columns, table

    tally = Tally()
    for name in ("/x/ünïcødé 画像 🌸/a.png", "/x/plain/b.png"):  # a row per folder of images
        tally.add(Where(name), "imported")
    lines = table(tally).splitlines()
    ends = {_columns(line[: line.index(" 1 ") + 2]) for line in lines[2:4]}  # up to the read count
    assert len(ends) == 1 and _columns("画像🌸") == 6, lines


def test_comfyui_settings_wired_from_a_config_node_and_a_random_seed():
    """rgthree's KSampler Config feeds steps, cfg, sampler and scheduler through links (its
    input for steps is `steps_total`); a seed node left at -1 ("random") saved no seed."""
    import json

    graph = image_fixtures.comfy_custom_nodes_graph()
    graph["20"] = {
        "inputs": {
            "steps_total": 32,
            "refiner_step": 28,
            "cfg": 6.5,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
        },
        "class_type": "KSampler Config (rgthree)",
    }
    graph["10"]["inputs"].update(
        steps=["20", 0], cfg=["20", 2], sampler_name=["20", 3], scheduler=["20", 4], seed=["21", 0]
    )
    graph["21"] = {"inputs": {"seed": -1}, "class_type": "Seed (rgthree)"}
    graph["22"] = {"inputs": {"a": ["7", 0], "b": 2, "value": "a*b"}, "class_type": "SimpleMath+"}
    graph["9"]["inputs"]["width"] = ["22", 0]  # computed: not a size that can be read
    found = images.from_comfyui({"prompt": json.dumps(graph)})
    assert (found["steps"], found["cfg_scale"], found["scheduler"], found["seed"]) == (32, 6.5, "karras", None)
    assert found["sampler"] == "dpmpp_2m" and (found["width"], found["height"]) == (None, None)
    assert (
        found["prompt"] == "a lighthouse at dusk, volumetric light" and found["model"] == "juggernautXL_v9.safetensors"
    )


def test_comfyui_efficiency_nodes_loader():
    """The efficiency pack's Efficient Loader holds the model, VAE, one LoRA (its strength is
    `lora_model_strength`), both prompts and the empty latent's size in one node."""
    import json

    graph = {
        "1": {
            "inputs": {
                "ckpt_name": "dreamshaper_8.safetensors",
                "vae_name": "vae-ft-mse-840000-ema-pruned.safetensors",
                "clip_skip": -2,
                "lora_name": "epi_noiseoffset2.safetensors",
                "lora_model_strength": 0.7,
                "lora_clip_strength": 1.0,
                "positive": "a red fox in snow",
                "negative": "lowres",
                "token_normalization": "none",
                "weight_interpretation": "comfy",
                "empty_latent_width": 512,
                "empty_latent_height": 768,
                "batch_size": 1,
            },
            "class_type": "Efficient Loader",
        },
        "2": {
            "inputs": {
                "seed": 99,
                "steps": 25,
                "cfg": 7.0,
                "sampler_name": "dpmpp_2m",
                "scheduler": "karras",
                "denoise": 1.0,
                "preview_method": "auto",
                "vae_decode": "true",
                "model": ["1", 0],
                "positive": ["1", 1],
                "negative": ["1", 2],
                "latent_image": ["1", 3],
                "optional_vae": ["1", 4],
            },
            "class_type": "KSampler (Efficient)",
        },
    }
    found = images.from_comfyui({"prompt": json.dumps(graph)})
    assert (found["prompt"], found["negative_prompt"]) == ("a red fox in snow", "lowres")
    assert (found["width"], found["height"], found["seed"], found["steps"]) == (512, 768, 99, 25)
    assert found["model"] == "dreamshaper_8.safetensors" and found["lora_weights"] == {
        "epi_noiseoffset2.safetensors": 0.7
    }
    assert found["vae"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    # both prompts wired in from string nodes: each side its own (the negative was the positive)
    graph["1"]["inputs"].update(positive=["6", 0], negative=["7", 0])
    graph["6"] = {"inputs": {"value": "a blue whale"}, "class_type": "PrimitiveStringMultiline"}
    graph["7"] = {"inputs": {"string": "text, signature"}, "class_type": "String Literal"}
    found = images.from_comfyui({"prompt": json.dumps(graph)})
    assert (found["prompt"], found["negative_prompt"]) == ("a blue whale", "text, signature")


def test_the_final_table_has_a_row_per_folder_of_images_not_per_image(tmp_path, fixtures):
    """Importing 20,000 images printed a table of 20,000 rows; a row per folder says as much."""
    from learning_svc.importers.run import _short, table

    tree = tmp_path / "outputs"
    for day in ("2024-11-12", "2024-11-13"):
        shutil.copytree(fixtures / "good", tree / "txt2img-images" / day)
    (tree / "txt2img-images" / "2024-11-13" / "empty.png").write_bytes(b"")
    result = run_import(Settings(data_dir=tmp_path / "learning"), [tree])
    rows = table(result.tally).splitlines()[2:]
    per_day = len(EXPECTED)
    assert [row.split()[:3] for row in rows] == [
        [_short(str(tree / "txt2img-images" / "2024-11-12") + os.sep), str(per_day), str(per_day)],
        [_short(str(tree / "txt2img-images" / "2024-11-13") + os.sep), str(per_day + 1), "0"],
        ["total", str(2 * per_day + 1), str(per_day)],
    ]
    assert [p["file"] for p in result.tally.problems] == [str(tree / "txt2img-images" / "2024-11-13" / "empty.png")]


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("euler_a", ("Euler a", None)),  # InvokeAI
        ("dpmpp_3m_k", ("DPM++ 3M", "Karras")),
        ("kdpm_2_a", ("DPM2 a", None)),
        ("kdpm_2_k", ("DPM2", "Karras")),
        ("pndm", ("PNDM", None)),
        ("tcd", ("TCD", None)),
        ("euler_cfg_pp", ("Euler CFG++", None)),  # ComfyUI
        ("res_multistep", ("Res Multistep", None)),
        ("dpmpp_2m_sde_gpu", ("DPM++ 2M SDE", None)),
        ("Some Custom Sampler", ("Some Custom Sampler", None)),  # unknown: kept as it came
    ],
)
def test_every_ui_s_sampler_names_are_one_vocabulary(raw, named):
    """InvokeAI's `euler_a` was a facet value of its own beside A1111's `Euler a`."""
    assert images.sampler_name(raw) == named


def test_images_that_are_outputs_of_imported_jobs_are_not_jobs_of_their_own(tmp_path, fixtures):
    """`learning-svc import ~/StableNew` made two jobs of every output image: StableNew's job
    (its outputs as it recorded them, from Windows) and the image's own. The history files are
    now read first; an image they name is that job's output."""
    import orjson

    tree = tmp_path / "StableNew"
    run = tree / "output" / "20260318_035123_pack-model"
    run.mkdir(parents=True)
    shutil.copy(fixtures / "good" / "a1111_v110.png", run / "txt2img_p01_v01.png")
    shutil.copy(fixtures / "good" / "sdnext.png", run / "not_in_the_history.png")
    job = {
        "job_id": "sn-1",
        "completed_at": 1_764_000_000,
        "outputs": ["output\\20260318_035123_pack-model\\TXT2IMG_p01_v01.png"],
    }
    (tree / "zz_history.jsonl").write_bytes(orjson.dumps(job) + b"\n")  # walked after output/ by name
    for dry_run in (True, False):
        result = run_import(Settings(data_dir=tmp_path / "learning"), [tree], dry_run=dry_run)
        total = result.tally.total()
        assert (total["imported"], total["already present"]) == (2, 1), dry_run
    app = create_app(Settings(data_dir=tmp_path / "learning"))
    try:
        jobs = app.test_client().get("/api/jobs").json["jobs"]
        assert sorted(j["job_id"] for j in jobs) == sorted(
            ["sn-1", images.content_id((run / "not_in_the_history.png").read_bytes())]
        )
    finally:
        app.extensions["learning_svc"].close()


def test_a_comfyui_image_with_a_compressed_workflow_over_pillow_s_limit_is_imported(tmp_path):
    """A ComfyUI PNG whose `workflow` was saved compressed (zTXt) and inflates past 1 MiB was
    skipped whole ("Decompressed data too large"); the same graph uncompressed was imported."""
    import json

    from PIL import Image, PngImagePlugin

    prompt, workflow = image_fixtures.comfy_graphs()
    workflow["extra"] = {"notes": "n" * (1536 * 1024)}  # a big workflow (groups, notes, previews)
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    info.add_text("workflow", json.dumps(workflow), zip=True)
    folder = tmp_path / "out"
    folder.mkdir()
    Image.new("RGB", (64, 96)).save(folder / "big_workflow.png", pnginfo=info)
    result = run_import(Settings(data_dir=tmp_path / "learning", output_root=tmp_path), [folder])
    assert result.tally.total()["imported"] == 1
    [problem] = result.tally.problems
    assert problem["outcome"] == "imported" and "metadata 'workflow' not read" in problem["reason"]
    [record] = listed_by_file(Settings(data_dir=tmp_path / "learning", output_root=tmp_path)).values()
    assert (record["generator"], record["seed"], record["model"]) == (
        "ComfyUI",
        156680208700286,
        "sd_xl_base_1.0.safetensors",
    )


def test_a1111_loras_of_the_adetailer_and_hires_prompts_keep_their_weights(tmp_path):
    """A LoRA named in `Lora hashes` and used only in the ADetailer prompt got the weight 1.0,
    made up; the hires fix prompt's LoRAs were not seen at all."""
    text = (
        "a cat <lora:main:0.7>\nNegative prompt: bad\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, ADetailer model: face_yolov8n.pt, "
        'ADetailer prompt: "detailed face, <lora:face_detail:0.4>, smile", Hires prompt: "<lora:hiresonly:0.3> sharp", '
        'Lora hashes: "main: aaaaaaaaaaaa, face_detail: bbbbbbbbbbbb"'
    )
    image_fixtures.save_png_text(str(tmp_path / "a.png"), {"parameters": text})
    # without Lora hashes (Forge writes none for some): the detail prompts' LoRAs were lost
    unhashed = text.replace(', Lora hashes: "main: aaaaaaaaaaaa, face_detail: bbbbbbbbbbbb"', "")
    image_fixtures.save_png_text(str(tmp_path / "b.png"), {"parameters": unhashed})
    assert images.image_job(tmp_path / "b.png", None).body["loras"] == [
        {"name": "main", "weight": 0.7},
        {"name": "face_detail", "weight": 0.4},
        {"name": "hiresonly", "weight": 0.3},
    ]
    job = images.image_job(tmp_path / "a.png", None)
    assert job.body["loras"] == [
        {"name": "main", "weight": 0.7},
        {"name": "face_detail", "weight": 0.4},
        {"name": "hiresonly", "weight": 0.3},
    ]


def test_an_image_named_by_a_refused_history_line_is_still_imported(tmp_path, fixtures):
    """The outputs of every history line were taken before the line was validated: an image
    that only a refused line named was counted "already present" and never imported."""
    import orjson

    tree = tmp_path / "t"
    (tree / "imgs" / "shots").mkdir(parents=True)
    shutil.copy(fixtures / "good" / "a1111_v110.png", tree / "imgs" / "shots" / "a.png")
    shutil.copy(fixtures / "good" / "sdnext.png", tree / "imgs" / "shots" / "b.png")
    lines = [
        {"job_id": "bad/id", "completed_at": 1_764_003_600, "outputs": ["shots/a.png"]},  # refused: the id
        {"job_id": "ok-1", "completed_at": 1_764_003_600, "num_outputs": 5, "outputs": ["shots/b.png"]},  # refused
    ]
    (tree / "records.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    for dry_run in (True, False):
        total = run_import(Settings(data_dir=tmp_path / "learning"), [tree], dry_run=dry_run).tally.total()
        assert (total["refused"], total["imported"], total["already present"]) == (2, 2, 0), dry_run


def test_images_given_by_name_alone_have_a_row_and_one_is_said_in_the_singular(tmp_path, fixtures):
    """`cd folder && learning-svc import *.png` showed a blank source cell, and the closing line
    said "1 were imported (1 jobs, ...)"."""
    import subprocess

    from procs import PYTHON, cli_env

    shutil.copy(fixtures / "good" / "a1111_v110.png", tmp_path / "one.png")
    command = [PYTHON, "-m", "learning_svc.cli", "import", "--data-dir", str(tmp_path / "d"), "one.png"]
    done = subprocess.run(command, capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    row = done.stdout.splitlines()[2]
    assert row.split()[:3] == ["./", "1", "1"], done.stdout
    assert "1 entry read in" in done.stdout and "1 was imported (1 job, 0 ratings)" in done.stdout


@pytest.mark.both_backends
def test_an_image_a_job_recorded_earlier_names_is_that_job_s_output(settings, fixtures, tmp_path):
    """Only the history files read in the same import run were asked: importing a StableNew
    history and then its output folder (or pointing `serve --watch` at the folder a pipeline
    POSTs jobs for) made every image a second job beside the job that names it."""
    import orjson

    from learning_svc.verify import verify_index

    outputs = settings.output_root
    run = outputs / "20260318_035123_pack-model"
    run.mkdir(parents=True)
    good = fixtures / "good"
    shutil.copy(good / "a1111_v110.png", run / "txt2img_p01_v01.png")  # named by the history (Windows path)
    shutil.copy(good / "sdnext.png", run / "upscaled.png")  # named by a later amendment of a job
    shutil.copy(good / "fooocus.png", outputs / "bare.png")  # named by a POSTed job as a bare file name
    shutil.copy(good / "novelai.png", run / "nobody_s.png")  # named by no job
    history = tmp_path / "history.jsonl"
    history.write_bytes(
        orjson.dumps(
            {
                "job_id": "sn-1",
                "completed_at": 1_764_000_000,
                "outputs": ["D:\\SD\\output\\20260318_035123_PACK-MODEL\\TXT2IMG_p01_v01.png"],
            }
        )
        + b"\n"
    )
    assert run_import(settings, [history]).tally.total()["imported"] == 1
    app = create_app(settings)
    try:
        client = app.test_client()
        for job in (
            {"job_id": "pipe-1", "completed_at": 1_764_000_100, "outputs": ["bare.png"]},
            {"job_id": "pipe-2", "completed_at": 1_764_000_200},
        ):
            assert client.post("/api/jobs", json=job).status_code == 201
        patched = client.patch("/api/jobs/pipe-2", json={"outputs": ["20260318_035123_pack-model/upscaled.png"]})
        assert patched.status_code == 200 and patched.json["amended"]
    finally:
        app.extensions["learning_svc"].close()
    for dry_run in (True, False):
        tally = run_import(settings, [outputs], dry_run=dry_run).tally
        total = tally.total()
        assert (total["imported"], total["already present"], tally.outputs_of_jobs) == (1, 3, 3), (dry_run, total)
    app = create_app(settings)
    try:
        listed = sorted(j["job_id"] for j in app.test_client().get("/api/jobs").json["jobs"])
    finally:
        app.extensions["learning_svc"].close()
    assert listed == sorted(["sn-1", "pipe-1", "pipe-2", images.content_id((run / "nobody_s.png").read_bytes())])
    assert verify_index(settings) == []  # the outputs' rows are the journal's, rebuilt


def test_another_folder_s_image_of_the_same_name_is_a_job_of_its_own(tmp_path, fixtures):
    """An image file's own job does not claim the images of other folders by name: two ComfyUI
    installations each have an `output/ComfyUI_00001_.png`."""
    first, second = tmp_path / "a" / "output", tmp_path / "b" / "output"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    shutil.copy(fixtures / "good" / "comfyui.png", first / "ComfyUI_00001_.png")
    shutil.copy(fixtures / "good" / "comfyui_custom_nodes.png", second / "ComfyUI_00001_.png")
    settings = Settings(data_dir=tmp_path / "learning")
    assert run_import(settings, [first]).tally.total()["imported"] == 1
    assert run_import(settings, [second]).tally.total()["imported"] == 1


def test_a_job_s_output_names_one_image_not_every_image_of_that_name(tmp_path, fixtures):
    """One job's output took in any number of images that shared its folder and file name: every
    `output/ComfyUI_00002_.png` of every ComfyUI folder was counted "already present" and none
    became a job. An output that is a file here names that file alone; one that is another
    system's path names the first image of its name; a pipeline's own `extra.image` in a record
    does not make its job one of an image file's (which name no other images)."""
    import orjson

    good = fixtures / "good"
    uis = {name: tmp_path / name / "output" for name in ("uiA", "uiB", "uiC")}
    for folder, image in zip(uis.values(), ("comfyui.png", "comfyui_custom_nodes.png", "comfyui_prompt_only.png")):
        folder.mkdir(parents=True)
        shutil.copy(good / image, folder / "ComfyUI_00002_.png")
    run = tmp_path / "uiD" / "run_x"
    run.mkdir(parents=True)
    shutil.copy(good / "a1111_v110.png", run / "img.png")
    jobs = [
        {"job_id": "local", "completed_at": 1_764_000_000, "outputs": [str(uis["uiB"] / "ComfyUI_00002_.png")]},
        {"job_id": "windows", "completed_at": 1_764_000_100, "outputs": ["C:\\ComfyUI\\output\\ComfyUI_00002_.png"]},
        {
            "job_id": "extra",
            "completed_at": 1_764_000_200,
            "outputs": ["D:\\sd\\run_x\\img.png"],
            "extra": {"image": {"width": 512}},
        },
    ]
    history = tmp_path / "jobs.jsonl"
    history.write_bytes(b"".join(orjson.dumps(job) + b"\n" for job in jobs))
    settings = Settings(data_dir=tmp_path / "learning")
    assert run_import(settings, [history]).tally.total()["imported"] == 3
    folders = [tmp_path / name for name in ("uiA", "uiB", "uiC", "uiD")]
    for dry_run in (True, False):
        total = run_import(settings, folders, dry_run=dry_run).tally.total()
        # uiA's image is the Windows path's (the first of its name), uiB's the local path's, uiD's
        # "extra"'s: uiC's alone is a job of its own
        assert (total["imported"], total["already present"]) == (1, 3), (dry_run, total)
    app = create_app(settings)
    try:
        listed = sorted(j["job_id"] for j in app.test_client().get("/api/jobs").json["jobs"])
    finally:
        app.extensions["learning_svc"].close()
    uic = images.content_id((uis["uiC"] / "ComfyUI_00002_.png").read_bytes())
    assert listed == sorted(["local", "windows", "extra", uic])


def test_another_system_s_output_is_the_image_its_thumbnail_shows_not_the_first_of_its_name(tmp_path, fixtures):
    """A history's `C:\\SD\\output\\run\\img.png` was given to the first `run/img.png` the walk
    met: an `archive/run/img.png` (another image) came first, was counted the job's and never became
    a job, while the job's own image, the one its thumbnail shows, became a second job."""
    import orjson

    from learning_svc import images as served

    root = tmp_path / "output"
    (root / "run").mkdir(parents=True)
    (root / "archive" / "run").mkdir(parents=True)
    shutil.copy(fixtures / "good" / "a1111_v110.png", root / "run" / "img.png")
    shutil.copy(fixtures / "good" / "sdnext.png", root / "archive" / "run" / "img.png")
    output = "C:\\SD\\output\\run\\img.png"
    (tmp_path / "h.jsonl").write_bytes(
        orjson.dumps({"job_id": "J", "completed_at": 1_764_000_000, "outputs": [output]})
    )
    settings = Settings(data_dir=tmp_path / "learning", output_root=root)
    assert run_import(settings, [tmp_path / "h.jsonl"]).tally.total()["imported"] == 1
    shown = served.open_output(output, root)
    assert shown.real_path == str((root / "run" / "img.png").resolve())
    shown.close()
    total = run_import(settings, [root]).tally.total()
    assert (total["imported"], total["already present"]) == (1, 1)
    app = create_app(settings)
    try:
        listed = sorted(j["job_id"] for j in app.test_client().get("/api/jobs").json["jobs"])
    finally:
        app.extensions["learning_svc"].close()
    assert listed == sorted(["J", images.content_id((root / "archive" / "run" / "img.png").read_bytes())])


@pytest.mark.parametrize(
    "wait, batch_seconds, count",
    [(0.2, 0.02, 3000), (0.1, 0.25, 300)],
    ids=["moving-on-at-each-wait", "one-batch-longer-than-a-wait"],
)
def test_a_history_and_its_images_in_one_run_wait_for_the_index_to_catch_up(
    tmp_path, fixtures, monkeypatch, wait, batch_seconds, count
):
    """The images of a run are looked up in the index once its history files are written; an
    index still indexing them (a big history) is waited for, not taken as one that cannot be
    written: the import went on to the images, or, asked of an index behind, stopped (and, once
    that was fixed, stopped when one follower transaction took longer than one read's wait)."""
    import orjson

    from learning_svc import service as service_module

    monkeypatch.setattr(service_module, "READ_WAIT_SECONDS", wait)  # a read's wait ends long before the follower
    monkeypatch.setattr(service_module, "FOLLOW_BATCH", 50)
    from learning_svc.index import sync

    insert_jobs = sync.insert_jobs

    def slowly(*args, **kwargs):  # batches of 50 jobs, each `batch_seconds`: more than a few reads' waits
        time.sleep(batch_seconds)
        return insert_jobs(*args, **kwargs)

    monkeypatch.setattr(sync, "insert_jobs", slowly)
    root = tmp_path / "output"
    (root / "run").mkdir(parents=True)
    shutil.copy(fixtures / "good" / "a1111_v110.png", root / "run" / "img.png")
    jobs = [{"job_id": f"j{n}", "completed_at": 1_764_000_000 + n, "outputs": [f"run/x{n}.png"]} for n in range(count)]
    jobs.append({"job_id": "last", "completed_at": 1_764_009_999, "outputs": ["run/img.png"]})
    (tmp_path / "h.jsonl").write_bytes(b"".join(orjson.dumps(job) + b"\n" for job in jobs))
    settings = Settings(data_dir=tmp_path / "learning", output_root=root)
    assert run_import(settings, [tmp_path / "h.jsonl"]).tally.total()["imported"] == count + 1
    (tmp_path / "h2.jsonl").write_bytes(
        b"".join(orjson.dumps({**job, "job_id": "again-" + job["job_id"]}) + b"\n" for job in jobs[:-1])
    )
    result = run_import(settings, [tmp_path / "h2.jsonl", root])  # `count` more to index before the image is asked of
    assert [p for p in result.tally.problems if p["outcome"] == "stopped"] == []
    assert result.tally.total()["already present"] == 1  # the image: "last"'s output, found in the index


def test_an_index_that_makes_no_progress_stops_the_import_with_a_line(tmp_path, fixtures, monkeypatch):
    from learning_svc.service import IndexBehind, Service, Unavailable

    (tmp_path / "out").mkdir()
    shutil.copy(fixtures / "good" / "a1111_v110.png", tmp_path / "out" / "img.png")
    asked = []

    def behind(self, paths, claimed):
        asked.append(paths)
        raise IndexBehind("the index is behind the journal", 100)

    monkeypatch.setattr(Service, "output_owners", behind)
    with pytest.raises(Unavailable):
        run_import(Settings(data_dir=tmp_path / "learning"), [tmp_path / "out"])
    from learning_svc.importers.run import STALLED_WAITS

    assert len(asked) == 1 + STALLED_WAITS  # asked again while a wait or a few may show no progress


def test_an_output_path_the_file_system_cannot_look_at_stops_no_import(tmp_path, fixtures):
    """A recorded output whose folder name is longer than the file system allows made asking
    whether it named an image raise (ENAMETOOLONG): the import stopped, and a watcher retried
    the same batch at every tick, importing nothing more."""
    import orjson

    (tmp_path / "out" / "run").mkdir(parents=True)
    shutil.copy(fixtures / "good" / "a1111_v110.png", tmp_path / "out" / "run" / "img.png")
    job = {"job_id": "long", "completed_at": 1_764_000_000, "outputs": ["x" * 300 + "/run/img.png"]}
    (tmp_path / "jobs.jsonl").write_bytes(orjson.dumps(job) + b"\n")
    settings = Settings(data_dir=tmp_path / "learning")
    assert run_import(settings, [tmp_path / "jobs.jsonl"]).tally.total()["imported"] == 1
    total = run_import(settings, [tmp_path / "out"]).tally.total()
    assert (total["imported"], total["already present"]) == (0, 1)  # by its folder and name, as any such path


def test_an_image_job_read_from_a_history_file_claims_no_other_image(tmp_path, fixtures):
    """An image's job in a history file (learning_svc's own export from another machine) was
    taken to name, by folder and file name, a different image found in the same run; the index
    never lets an image's job do that (it is known by its content)."""
    import hashlib

    import orjson

    (tmp_path / "pics" / "run").mkdir(parents=True)
    shutil.copy(fixtures / "good" / "sdnext.png", tmp_path / "pics" / "run" / "a.png")
    digest = hashlib.sha256(b"another image").hexdigest()
    job = {
        "job_id": "img-" + digest[:40],
        "completed_at": 1_764_000_000,
        "outputs": ["D:\\pics\\run\\a.png"],
        "extra": {"image": {"sha256": digest}},
    }
    (tmp_path / "history.jsonl").write_bytes(orjson.dumps(job) + b"\n")
    for dry_run in (True, False):
        total = run_import(Settings(data_dir=tmp_path / "learning"), [tmp_path], dry_run=dry_run).tally.total()
        assert (total["imported"], total["already present"]) == (2, 0), (dry_run, total)


def test_a_pipe_named_like_an_image_is_reported_as_such_and_never_read(tmp_path):
    """A new-user run: a FIFO named pipe.png in a watched folder was reported "empty file"."""
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.png")
    result = run_import(Settings(data_dir=tmp_path / "learning"), [folder])
    [problem] = result.tally.problems
    assert problem["reason"] == "not a regular file (a pipe, socket or device)", problem


def _two_imported_images_of_one_time(tmp_path, fixtures) -> tuple[Path, Settings]:
    """outputs/1.png and 2.png, two images with the same mtime (as unzipped or `cp -p`), imported."""
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    shutil.copy(fixtures / "good" / "a1111_v110.png", outputs / "1.png")
    shutil.copy(fixtures / "good" / "sdnext.png", outputs / "2.png")
    for path in outputs.iterdir():
        os.utime(path, (1767268800, 1767268800))
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    run_import(settings, [outputs])
    return outputs, settings


def test_two_images_swapped_by_name_with_the_same_times_each_keep_their_own_job(tmp_path, fixtures):
    """Files unzipped or copied with `cp -p` share a time: after `mv 1.png keep/; mv 2.png 1.png`
    the first image's job was taken for "still there" (its file's time unchanged) and showed,
    and was rated on, the second image."""
    outputs, settings = _two_imported_images_of_one_time(tmp_path, fixtures)
    (outputs / "keep").mkdir()
    (outputs / "1.png").rename(outputs / "keep" / "1.png")
    (outputs / "2.png").rename(outputs / "1.png")
    assert run_import(settings, [outputs]).tally.total()["amended"] == 2
    app = create_app(settings)
    try:
        client = app.test_client()
        for name, now in (("a1111_v110.png", "outputs/keep/1.png"), ("sdnext.png", "outputs/1.png")):
            data = (fixtures / "good" / name).read_bytes()
            job_id = images.content_id(data)
            assert client.get(f"/api/jobs/{job_id}").json["record"]["outputs"] == [now]
            served = client.get(f"/api/jobs/{job_id}/outputs/0")
            assert served.data == data, name
            served.close()
    finally:
        app.extensions["learning_svc"].close()


def test_images_swapped_by_name_with_the_same_times_are_not_served_as_each_others_job(tmp_path, fixtures):
    """Swapped while the service runs, before any import sees it: the file's time was the job's
    completed_at, so the service took it for the job's own image and served (and the page rated)
    the other image under it."""
    outputs, settings = _two_imported_images_of_one_time(tmp_path, fixtures)
    first = images.content_id((outputs / "1.png").read_bytes())
    app = create_app(settings)
    try:
        client = app.test_client()
        served = client.get(f"/api/jobs/{first}/outputs/0")
        assert "X-Learning-Placeholder" not in served.headers and served.data == (outputs / "1.png").read_bytes()
        served.close()
        (outputs / "1.png").rename(outputs / "x.png")
        (outputs / "2.png").rename(outputs / "1.png")
        (outputs / "x.png").rename(outputs / "2.png")
        assert os.stat(outputs / "1.png").st_mtime == 1767268800
        for path in (f"/api/jobs/{first}/outputs/0", f"/api/jobs/{first}/outputs/0/thumbnail"):
            assert client.get(path).headers.get("X-Learning-Placeholder") == "replaced", path
    finally:
        app.extensions["learning_svc"].close()


def test_a_dry_run_lists_the_first_problems_and_counts_the_rest(tmp_path):
    """A dry run printed every problem: a folder of 5,000 unreadable files was 5,000 lines."""
    from procs import run_cli

    folder = tmp_path / "outputs"
    folder.mkdir()
    for i in range(35):
        (folder / f"{i:02d}.png").write_bytes(b"")  # empty: refused
    dry = run_cli("import", "--dry-run", "--data-dir", str(tmp_path / "learning"), str(folder))
    assert dry.returncode == 1, dry.stderr  # every entry refused (test_an_import_that_takes_nothing_exits_1)
    listed = [line for line in dry.stdout.splitlines() if line.startswith("  ") and ".png: " in line]
    assert len(listed) == 20 and "  … and 15 more" in dry.stdout, dry.stdout
    assert not (tmp_path / "learning").exists()


def test_an_import_that_takes_nothing_exits_1(tmp_path, fixtures):
    """A new-user run: `learning-svc import notes.txt` skipped its one entry ("not a history file
    this importer knows") and exited 0, so a script could not tell that nothing was imported."""
    from procs import run_cli

    data = str(tmp_path / "learning")
    (tmp_path / "notes.txt").write_text("hello\n")
    nothing = run_cli("import", "--data-dir", data, str(tmp_path / "notes.txt"))
    assert nothing.returncode == 1 and "nothing was imported: every entry was refused or skipped" in nothing.stderr
    first = run_cli("import", "--data-dir", data, str(fixtures))
    assert first.returncode == 0, first.stderr
    again = run_cli("import", "--data-dir", data, str(fixtures))  # already present: not a failure
    assert again.returncode == 0 and " 0 were imported" in again.stdout, again.stdout


def test_an_image_moved_or_renamed_since_its_import_takes_its_job_along(tmp_path, fixtures):
    """Keepers moved into a sub-folder, a file renamed (and another image written where it was):
    the next import wrote nothing and the jobs showed "image not found" (or "replaced") for good.
    A copy (both still there) changes nothing."""
    from procs import cli_env, run_cli

    outputs = tmp_path / "outputs"
    shutil.copytree(fixtures / "good", outputs)
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    run_import(settings, [outputs])
    (outputs / "keepers").mkdir()
    (outputs / "a1111_v110.png").rename(outputs / "keepers" / "a1111_v110.png")
    (outputs / "comfyui.png").rename(outputs / "renamed.png")
    shutil.copy(outputs / "invokeai_v5.png", outputs / "keepers" / "copy.png")
    shutil.copy(outputs / "invokeai_v5.png", outputs / "comfyui.png")  # another image where it was
    dry = run_import(settings, [outputs], dry_run=True)  # foretold (it said "already present")
    assert (dry.tally.total()["amended"], dry.tally.total()["imported"], dry.tally.moved) == (2, 0, 2)
    said = run_cli(
        "import",
        "--data-dir",
        str(settings.data_dir),
        str(outputs),
        env=cli_env(LEARNING_SVC_OUTPUT_ROOT=str(tmp_path)),
    )  # as the user is told (it was "amended with what they lacked")
    assert said.returncode == 0 and ", 2 moved to where their image is now." in said.stdout, said.stdout
    assert "lacked" not in said.stdout
    again = run_import(settings, [outputs])  # followed already: nothing more
    assert (again.tally.total()["amended"], again.tally.total()["imported"]) == (0, 0), again.tally.total()
    assert not again.tally.problems
    moved = {"a1111_v110.png": "outputs/keepers/a1111_v110.png", "comfyui.png": "outputs/renamed.png"}
    app = create_app(settings)
    try:
        client = app.test_client()
        for name, now in [*moved.items(), ("invokeai_v5.png", "outputs/invokeai_v5.png")]:
            job_id = images.content_id((fixtures / "good" / name).read_bytes())
            assert client.get(f"/api/jobs/{job_id}").json["record"]["outputs"] == [now]
            image = client.get(f"/api/jobs/{job_id}/outputs/0")
            assert image.status_code == 200 and "X-Learning-Placeholder" not in image.headers, name
            image.close()
    finally:
        app.extensions["learning_svc"].close()


def test_utf16_user_comments_of_either_byte_order_keep_a_cjk_prompt(tmp_path):
    """An outside run: the byte order of a UNICODE UserComment was guessed from its first two
    bytes, so A1111's big-endian text starting with 一 (U+4E00: bytes 4E 00) was read as
    little-endian, as were exiftool's little-endian CJK text and text with a BOM: the prompt
    came out garbled and every setting was lost."""
    infotext = image_fixtures.a1111_infotext(
        "一个女孩, 微笑",
        "低质量",
        {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 4242, "Size": "512x768", "Model": "zh_model"},
    )
    (tmp_path / "images").mkdir()
    for name, encoded in [
        ("a1111_be.jpg", infotext.encode("utf_16_be")),  # A1111 (piexif): big-endian, no BOM
        ("exiftool_le.webp", infotext.encode("utf_16_le")),
        ("bom_le.jpg", infotext.encode("utf-16")),  # a BOM, then little-endian (on this machine)
        ("bom_be.jpg", b"\xfe\xff" + infotext.encode("utf_16_be")),
        ("odd_length.jpg", infotext.encode("utf_16_be") + b"\x00"),  # a hostile run: the model was "zh_model\ufffd"
    ]:
        exif = image_fixtures.exif_usercomment_raw(b"UNICODE\x00" + encoded)
        image_fixtures.base_image(size=(64, 64)).save(tmp_path / "images" / name, exif=exif)
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    assert run_import(settings, [tmp_path / "images"]).tally.total()["imported"] == 5
    for name, record in listed_by_file(settings).items():
        assert (record["prompt"], record["negative_prompt"]) == ("一个女孩, 微笑", "低质量"), name
        assert (record["seed"], record["model"], record["width"], record["height"]) == (4242, "zh_model", 512, 768), (
            name
        )


def _plain_comfy_graph() -> dict:
    """The default ComfyUI graph (as the UI saves it): loader 4, latent 5, prompts 6/7, KSampler 3, decode 8, save 9."""
    return {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 156680208700286, "steps": 20, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }  # fmt: skip


def _reversed(graph: dict) -> dict:
    return dict(reversed(list(graph.items())))


def test_comfyui_settings_are_the_first_pass_sampler_s_whatever_the_node_order():
    """An outside run: the model, seed, size and sampler were the first matching node's in the
    JSON's key order, so a graph listed in another order (scripts, edited API graphs) gave a
    refiner's model and seed, a hires pass's settings and size, an unused loader's model and an
    upscale's size. They are now read from the sampler that made the latent, along its links."""
    import json

    def found(graph: dict) -> dict:
        return images.from_comfyui({"prompt": json.dumps(graph)})

    plain = ("v1-5-pruned-emaonly.safetensors", 156680208700286, "euler", "normal", 20, 8.0, 512, 768)

    def settings_of(f: dict) -> tuple:
        return (
            f["model"],
            f["seed"],
            f["sampler"],
            f["scheduler"],
            f["steps"],
            f["cfg_scale"],
            f["width"],
            f["height"],
        )

    assert settings_of(found(_plain_comfy_graph())) == plain
    assert settings_of(found(_reversed(_plain_comfy_graph()))) == plain

    hires = _plain_comfy_graph()  # a second pass over the upscaled latent, with its own settings
    hires["10"] = {
        "class_type": "LatentUpscale",
        "inputs": {
            "samples": ["3", 0],
            "upscale_method": "nearest-exact",
            "width": 1024,
            "height": 1536,
            "crop": "disabled",
        },
    }
    hires["11"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": 1,
            "steps": 12,
            "cfg": 5.0,
            "sampler_name": "dpmpp_sde",
            "scheduler": "exponential",
            "denoise": 0.5,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["10", 0],
        },
    }
    hires["8"]["inputs"]["samples"] = ["11", 0]
    assert settings_of(found(_reversed(hires))) == plain

    refiner = _plain_comfy_graph()  # SDXL base then refiner (KSamplerAdvanced), the refiner listed first
    refiner["4"]["inputs"]["ckpt_name"] = "sd_xl_base_1.0.safetensors"
    refiner["3"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": "enable",
            "noise_seed": 721897303308196,
            "steps": 25,
            "cfg": 8.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "start_at_step": 0,
            "end_at_step": 20,
            "return_with_leftover_noise": "enable",
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    }
    refiner["12"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_refiner_1.0.safetensors"}}
    refiner["11"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": "disable",
            "noise_seed": 0,
            "steps": 25,
            "cfg": 8.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "start_at_step": 20,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
            "model": ["12", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["3", 0],
        },
    }
    refiner["8"]["inputs"]["samples"] = ["11", 0]
    got = found({k: refiner[k] for k in ["12", "11", *[k for k in refiner if k not in ("11", "12")]]})
    assert (got["model"], got["seed"], got["steps"]) == ("sd_xl_base_1.0.safetensors", 721897303308196, 25)

    unused = _plain_comfy_graph()  # an image upscale after decoding, and a loader left unconnected
    unused["8"]["inputs"]["samples"] = ["3", 0]
    unused["51"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["8", 0],
            "upscale_method": "nearest-exact",
            "width": 2048,
            "height": 3072,
            "crop": "disabled",
        },
    }
    unused["50"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "unused_model.safetensors"}}
    unused["9"]["inputs"]["images"] = ["51", 0]
    assert settings_of(found({"51": unused["51"], "50": unused["50"], **unused})) == plain

    sdxl_text = _plain_comfy_graph()  # an SDXL text encoder's own width/height are not the latent's
    sdxl_text["6"] = {
        "class_type": "CLIPTextEncodeSDXL",
        "inputs": {
            "width": 4096,
            "height": 4096,
            "crop_w": 0,
            "crop_h": 0,
            "target_width": 4096,
            "target_height": 4096,
            "text_g": "a lighthouse",
            "text_l": "a lighthouse",
            "clip": ["4", 1],
        },
    }
    assert settings_of(found({"6": sdxl_text["6"], **sdxl_text})) == plain


def test_a_comfyui_lora_loader_left_unconnected_is_not_a_lora_of_the_image():
    """An outside run: every LoraLoader in the saved graph was a LoRA of the image, also one
    rewired out of the way (not bypassed): the ones on the way to the sampler are."""
    import json

    graph = _plain_comfy_graph()

    def lora(name: str, strength: float) -> dict:
        inputs = {"lora_name": name, "strength_model": strength, "strength_clip": strength, "model": ["4", 0]}
        return {"class_type": "LoraLoader", "inputs": {**inputs, "clip": ["4", 1]}}

    graph["60"] = lora("dead.safetensors", 0.9)
    graph["61"] = lora("live.safetensors", 0.3)
    graph["62"] = lora("clip_only.safetensors", 0.7)  # on the prompts' clip only: it shapes the image too
    graph["3"]["inputs"]["model"] = ["61", 0]
    graph["6"]["inputs"]["clip"] = ["62", 1]
    found = images.from_comfyui({"prompt": json.dumps(graph)})
    assert found["lora_weights"] == {"live.safetensors": 0.3, "clip_only.safetensors": 0.7}


def test_an_a1111_style_line_written_by_a_comfyui_node_is_comfyui_s():
    """An outside run: comfy-image-saver's nodes write A1111's `parameters` line with
    `Version: ComfyUI` and the sampler as `euler_ancestral karras`; the image was taken for
    AUTOMATIC1111's and the sampler kept as written."""
    line = image_fixtures.a1111_infotext(
        "a lighthouse",
        "blurry",
        {"Steps": 20, "Sampler": "euler_ancestral karras", "CFG scale": 7, "Seed": 5, "Size": "512x768",
         "Model": "v1-5", "Version": "ComfyUI"},
    )  # fmt: skip
    found = images.parse_chunks({"parameters": line})
    assert found["generator"] == "ComfyUI"
    from learning_svc.prompts import sampler_name

    assert sampler_name(found["sampler"]) == ("Euler a", "Karras")


def test_a_png_with_a_damaged_text_chunk_is_imported_without_that_chunk(tmp_path):
    """An outside run: a PNG with one byte of a text chunk changed (its checksum no longer
    matching) was refused whole as "not a PNG ... (or a broken one)", though browsers and
    libpng show it. The damaged chunk is dropped, as libpng does, and said in the report;
    the image and its other chunks come in. A damaged critical chunk is still a broken image."""
    import struct
    import zlib

    (tmp_path / "images").mkdir()
    infotext = image_fixtures.a1111_infotext(
        "a lighthouse", "", {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 9, "Size": "64x96"}
    )
    good = tmp_path / "good.png"
    image_fixtures.save_png_text(str(good), {"parameters": infotext, "Comment": "hello"})
    data = good.read_bytes()

    def damaged(chunk_text: bytes) -> bytes:
        at = data.index(chunk_text)
        return data[:at] + bytes([chunk_text[0] ^ 1]) + data[at + 1 :]

    (tmp_path / "images" / "comment_damaged.png").write_bytes(damaged(b"hello"))
    (tmp_path / "images" / "parameters_damaged.png").write_bytes(damaged(b"a lighthouse"))
    ihdr = data.index(b"IHDR")
    broken_header = data[: ihdr + 4] + struct.pack(">I", 65) + data[ihdr + 8 :]  # width changed, checksum kept
    (tmp_path / "images" / "header_damaged.png").write_bytes(broken_header)
    assert zlib.crc32(broken_header[ihdr : ihdr + 17]) != struct.unpack(">I", broken_header[ihdr + 17 : ihdr + 21])[0]
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    result = run_import(settings, [tmp_path / "images"])
    assert result.tally.total()["imported"] == 2
    records = listed_by_file(settings)
    assert (records["comment_damaged.png"]["prompt"], records["comment_damaged.png"]["seed"]) == ("a lighthouse", 9)
    assert records["parameters_damaged.png"]["generator"] == "unreadable metadata"  # kept apart, as broken JSON is
    assert "damaged" in records["parameters_damaged.png"]["run_config"]["metadata"]["parameters"]
    reasons = {Path(p["file"]).name: p["reason"] for p in result.tally.problems}
    assert reasons.pop("header_damaged.png") == "not a PNG, JPEG or WEBP image (or a broken one)"
    assert reasons == {  # imported, with what was left out said in the report
        "comment_damaged.png": "metadata 'Comment' not read: damaged (its checksum does not match)",
        "parameters_damaged.png": "metadata 'parameters' not read: damaged (its checksum does not match)",
    }


def test_a_damaged_text_chunk_in_a_bomb_or_an_odd_comfyui_node_id_is_a_report_line_not_a_crash(tmp_path):
    """A review of this session's change: the damaged-text path read the PNG outside the import's
    error handling, so a bomb-sized PNG with a damaged text chunk stopped the whole import; and a
    ComfyUI node id "²" (a digit int() refuses) or of 5,000 digits raised in the node ordering."""
    import json
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    (tmp_path / "images").mkdir()
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bad_text = chunk(b"tEXt", b"parameters\0a cat")[:-4] + b"\0\0\0\0"
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + bad_text
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "images" / "bomb_damaged_text.png").write_bytes(bomb)
    graph = _plain_comfy_graph()
    graph["²"] = {"class_type": "Note", "inputs": {"text": "x"}}
    graph["9" * 5000] = {"class_type": "Note", "inputs": {"text": "y"}}
    image_fixtures.save_png_text(str(tmp_path / "images" / "odd_ids.png"), {"prompt": json.dumps(graph)})
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    result = run_import(settings, [tmp_path / "images"])
    reasons = {Path(p["file"]).name: p["reason"] for p in result.tally.problems}
    assert "decompression bomb" in reasons["bomb_damaged_text.png"]
    assert result.tally.total()["imported"] == 1
    assert listed_by_file(settings)["odd_ids.png"]["seed"] == 156680208700286


def test_hostile_comfyui_metadata_is_a_report_line_and_the_rest_is_imported(tmp_path):
    """A hostile run: a ComfyUI prompt nested 100,000 deep (RecursionError) or with a node whose
    inputs are a list stopped the whole import with a traceback, and a watched folder's watch
    for good; every file after it was never read."""
    import json

    (tmp_path / "images").mkdir()
    listed = _plain_comfy_graph()
    listed["23"] = {"class_type": "Note", "inputs": [1]}
    image_fixtures.save_png_text(str(tmp_path / "images" / "a_list_inputs.png"), {"prompt": json.dumps(listed)})
    image_fixtures.save_png_text(str(tmp_path / "images" / "b_deep.png"), {"prompt": "[" * 100_000 + "]" * 100_000})
    image_fixtures.save_png_text(str(tmp_path / "images" / "c_fine.png"), {"prompt": json.dumps(_plain_comfy_graph())})
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    result = run_import(settings, [tmp_path / "images"])
    assert result.tally.total()["imported"] == 3
    records = listed_by_file(settings)
    assert records["a_list_inputs.png"]["seed"] == 156680208700286  # the odd node passed over
    assert records["b_deep.png"]["generator"] == "unreadable metadata"
    assert records["c_fine.png"]["seed"] == 156680208700286
    reasons = {Path(p["file"]).name: p["reason"] for p in result.tally.problems}
    assert "nested too deep" in reasons["b_deep.png"]


def test_a_copy_of_a_png_with_a_damaged_text_chunk_leaves_its_job_where_it_is(tmp_path):
    """A hostile run: importing a copy of such a PNG moved its job to the copy though the
    original was still in place (a file the thumbnailer will not open was taken for gone)."""
    (tmp_path / "png").mkdir()
    good = tmp_path / "good.png"
    image_fixtures.save_png_text(str(good), {"parameters": "a cat\nSteps: 5, Seed: 1", "Comment": "hello"})
    data = good.read_bytes()
    at = data.index(b"hello")
    (tmp_path / "png" / "damaged.png").write_bytes(data[:at] + b"j" + data[at + 1 :])
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    assert run_import(settings, [tmp_path / "png"]).tally.total()["imported"] == 1
    shutil.copytree(tmp_path / "png", tmp_path / "copy")
    result = run_import(settings, [tmp_path / "copy"])
    assert result.tally.total()["imported"] == 0 and result.tally.total().get("amended", 0) == 0
    assert listed_by_file(settings)["damaged.png"]["outputs"] == ["png/damaged.png"]


def test_a_damaged_text_chunk_after_the_pixels_is_dropped_too():
    """A hostile run: a text chunk after the image data whose checksum does not match was read
    all the same (one before the pixels is dropped)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    png = buffer.getvalue()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    end = png.index(b"IEND") - 4
    good = png[:end] + chunk(b"tEXt", b"parameters\0a cat\nSteps: 5") + png[end:]
    at = good.index(b"a cat")
    damaged = good[:at] + b"b" + good[at + 1 :]
    assert images.text_after_pixels(good) == {"parameters": "a cat\nSteps: 5"}
    assert images.text_after_pixels(damaged) == {}


def test_a_damaged_text_chunk_after_the_pixels_is_said_in_the_report(tmp_path):
    """It was dropped without a word: the image came in as "no metadata" and the report did not
    say why, where one before the pixels is named ("metadata 'parameters' not read: damaged")."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    png = buffer.getvalue()
    body = b"parameters\0a cat\nSteps: 5"
    end = png.index(b"IEND") - 4
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body) ^ 1)
    (tmp_path / "png").mkdir()
    (tmp_path / "png" / "late.png").write_bytes(png[:end] + chunk + png[end:])
    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    result = run_import(settings, [tmp_path / "png"])
    assert result.tally.total()["imported"] == 1
    [problem] = result.tally.problems
    assert "metadata 'parameters' not read: damaged" in problem["reason"], problem
    record = listed_by_file(settings)["late.png"]
    assert record["run_config"]["metadata"] == {"parameters": "<not read: damaged (its checksum does not match)>"}


def test_a_png_of_many_or_large_text_chunks_is_imported_with_its_settings_and_the_rest_counted(tmp_path):
    """A PNG with 20,000 small text chunks beside its A1111 settings was refused whole ("the
    record is 2.1 MiB"), and so was one of six 200 KiB chunks: every chunk was kept in the
    record. The record now keeps the settings and as many chunks as fit, and says the rest."""
    from PIL import PngImagePlugin

    folder = tmp_path / "out"
    folder.mkdir()
    settings_text = image_fixtures.a1111_infotext(
        "a lighthouse", "blurry", {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Seed": 42, "Size": "64x96"}
    )
    info = PngImagePlugin.PngInfo()
    for n in range(20_000):
        info.add_text(f"note{n:05d}", "x" * 100)
    info.add_text("parameters", settings_text)  # after the others: still read, still kept
    Image.new("RGB", (64, 96)).save(folder / "many.png", pnginfo=info)
    info = PngImagePlugin.PngInfo()
    for n in range(6):
        info.add_text(f"blob{n}", "y" * (200 << 10))
    info.add_text("parameters", settings_text.replace("Seed: 42", "Seed: 43"))
    Image.new("RGB", (64, 96)).save(folder / "large.png", pnginfo=info)
    info = PngImagePlugin.PngInfo()  # CJK text: 3 bytes a character in the record (a code review)
    for n in range(5):
        info.add_itxt(f"cjk{n}", "灯" * 80_000)
    info.add_text("parameters", settings_text.replace("Seed: 42", "Seed: 44"))
    Image.new("RGB", (64, 96)).save(folder / "cjk.png", pnginfo=info)

    result = run_import(Settings(data_dir=tmp_path / "learning", output_root=tmp_path), [folder])
    assert result.tally.total()["imported"] == 3, result.tally.problems
    reasons = {Path(problem["file"]).name: problem["reason"] for problem in result.tally.problems}
    assert "19,937 more text chunks not kept" in reasons["many.png"], reasons
    assert "text chunks kept without their text" in reasons["large.png"], reasons
    records = listed_by_file(Settings(data_dir=tmp_path / "learning", output_root=tmp_path))
    many, large = records["many.png"], records["large.png"]
    assert (many["generator"], many["seed"], large["seed"]) == ("AUTOMATIC1111", 42, 43)
    kept = many["run_config"]["metadata"]
    assert kept["parameters"] == settings_text and len(kept) == images.MAX_KEPT_CHUNKS + 1
    assert kept["…"] == "<19,937 more text chunks, not kept>"
    kept = large["run_config"]["metadata"]
    assert kept["parameters"].endswith("Seed: 43, Size: 64x96")
    assert [kept[f"blob{n}"] == "y" * (200 << 10) for n in range(6)] == [True, True, False, False, False, False]
    assert kept["blob2"] == "<204,800 characters, not kept>"
    cjk = records["cjk.png"]
    kept = [cjk["run_config"]["metadata"][f"cjk{n}"] == "灯" * 80_000 for n in range(5)]
    assert cjk["seed"] == 44 and kept == [True, True, False, False, False]  # 240,000 bytes each: two fit in 512 KiB


def test_a_damaged_copy_of_a_chunk_read_whole_leaves_the_whole_one_in_the_record():
    """A code review: a good `parameters` chunk and a damaged one after the pixels: the kept
    text became "<not read: damaged ...>" and one more chunk was counted as left out."""
    raw, said = images.kept_metadata({"parameters": "a cat\nSteps: 5"}, {"parameters": "not read: damaged"})
    assert raw == {"parameters": "a cat\nSteps: 5"} and said is None


def _peak_while(call):
    """(what `call` returns, the most memory Python objects took while it ran)."""
    import tracemalloc

    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _big_png(path: Path, pixel_bytes: int, pre=(), post=()) -> bytes:
    """A PNG whose pixel data is `pixel_bytes` of random bytes in 64 KiB IDAT chunks (as libpng
    cuts them; never decoded here), with text chunks before and after it."""
    import struct

    chunks = [image_fixtures.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4096, 4096, 8, 2, 0, 0, 0))]
    chunks += [image_fixtures.png_chunk(t, d) for t, d in pre]
    noise = os.urandom(1 << 16)
    chunks += [image_fixtures.png_chunk(b"IDAT", noise) for _ in range(pixel_bytes >> 16)]
    chunks += [image_fixtures.png_chunk(t, d) for t, d in post]
    data = b"\x89PNG\r\n\x1a\n" + b"".join(chunks) + image_fixtures.png_chunk(b"IEND", b"")
    path.write_bytes(data)
    return data


def test_an_image_is_read_in_bounded_memory_whatever_its_size(tmp_path):
    """Issue 11's "memory stays flat": every byte of a file is hashed (its job's id), but what
    one file holds in memory while it is read is its metadata, not its pixel data nor a text
    chunk too large to read (the whole file was read into memory: 40 and 50 MB here)."""
    infotext = "a castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 4096x4096"
    big = tmp_path / "upscaled.png"
    data = _big_png(big, 40 << 20, pre=[(b"tEXt", b"parameters\0" + infotext.encode())])
    job, peak = _peak_while(lambda: images.image_job(big, tmp_path))
    assert isinstance(job, images.Job) and peak < 8 << 20, peak
    assert job.body["job_id"] == images.content_id(data) and job.body["prompt"] == "a castle"
    assert job.body["extra"]["image"]["bytes"] == len(data) and job.body["steps"] == 20

    huge = tmp_path / "huge_text.png"
    after = [(b"tEXt", b"workflow\0" + b"x" * (50 << 20)), (b"tEXt", b"parameters\0" + infotext.encode())]
    data = _big_png(huge, 1 << 20, post=after)
    job, peak = _peak_while(lambda: images.image_job(huge, tmp_path))
    assert isinstance(job, images.Job) and peak < 8 << 20, peak
    assert job.body["job_id"] == images.content_id(data) and job.body["prompt"] == "a castle"
    assert job.note == "metadata 'workflow' not read: 50.0 MiB (a text chunk may have 1 MiB)"
    # ... and one before the pixels, of an image without other metadata (looked at for stealth data)
    for mode in ("RGB", "RGBA"):
        alone = tmp_path / f"huge_text_{mode}.png"
        pixels = io.BytesIO()
        Image.new(mode, (64, 64)).save(pixels, format="PNG")
        data = pixels.getvalue()
        data = data[:33] + image_fixtures.png_chunk(b"tEXt", b"junk\0" + b"x" * (50 << 20)) + data[33:]
        alone.write_bytes(data)
        job, peak = _peak_while(lambda: images.image_job(alone, tmp_path))  # noqa: B023
        assert isinstance(job, images.Job) and peak < 8 << 20, (mode, peak)
        assert job.body["generator"] == images.NO_METADATA and job.body["job_id"] == images.content_id(data)

    # A JPEG: its EXIF comment, then a 30 MB scan (bytes without a marker in them), then its end.
    small = io.BytesIO()
    Image.new("RGB", (64, 64)).save(small, format="JPEG", exif=image_fixtures.exif_usercomment_unicode(infotext))
    head, _, _ = small.getvalue().rpartition(b"\xff\xd9")
    scan = os.urandom(30 << 20).replace(b"\xff", b"\x00")
    jpeg = tmp_path / "upscaled.jpg"
    jpeg.write_bytes(head + scan + b"\xff\xd9")
    job, peak = _peak_while(lambda: images.image_job(jpeg, tmp_path))
    assert isinstance(job, images.Job) and peak < 8 << 20, peak
    assert job.body["job_id"] == images.content_id(jpeg.read_bytes()) and job.body["prompt"] == "a castle"
    # ... and a file cut short is still said to be, without reading it whole either
    for path, cut in ((big, 5 << 20), (jpeg, 1 << 20)):
        path.write_bytes(path.read_bytes()[:-cut])
        problem, peak = _peak_while(lambda: images.image_job(path, tmp_path))  # noqa: B023
        assert isinstance(problem, images.Problem) and "truncated" in problem.reason and peak < 8 << 20


def test_stealth_data_is_not_read_from_a_file_changed_since_it_was_hashed(tmp_path, monkeypatch):
    """Stealth data is read from the file again (its pixels are not held): when the file is no
    longer the one hashed, the image is imported without it rather than with another's."""
    infotext = "a cat\nSteps: 5, Sampler: Euler, Seed: 3"
    path = tmp_path / "stealth.png"
    image_fixtures.stealth_encode(Image.new("RGBA", (64, 64)), infotext).save(path)
    job = images.image_job(path, tmp_path)
    assert job.body["prompt"] == "a cat" and job.body["generator"] != images.NO_METADATA

    read = images.read_image

    def then_written_over(path):
        contents = read(path)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        return contents

    monkeypatch.setattr(images, "read_image", then_written_over)
    job = images.image_job(path, tmp_path)
    assert job.body["generator"] == images.NO_METADATA and "prompt" not in job.body


def _outcome(call):
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - the comparison is of what each raises
        return type(error).__name__


def test_a_file_s_skeleton_reads_as_the_file_does(fixtures, tmp_path):
    """What image_job reads of a PNG or JPEG is its skeleton (the file without its pixel
    data): for every fixture, and every cut of a few of them, it is as complete as the file,
    Pillow and the chunk walks read the same metadata from it, and its hash is the file's."""
    paths = sorted(p for p in (fixtures / "good").iterdir()) + sorted((fixtures / "bad").iterdir())
    small = [fixtures / "good" / n for n in ("a1111_v110.png", "a1111.jpg", "a1111_text_after_idat.png")]
    for source in small:
        data = source.read_bytes()
        for cut in range(1, len(data), 29):
            (tmp_path / f"{cut}_{source.name}").write_bytes(data[:cut])
    paths += sorted(tmp_path.iterdir())
    checked = 0
    for path in paths:
        data = path.read_bytes()
        if len(data) > 32 << 20 or not data.startswith((b"\x89PNG", b"\xff\xd8")):
            continue
        contents = images.read_image(path)
        assert contents.sha256 == hashlib.sha256(data).hexdigest() and contents.size == len(data), path
        skeleton = contents.data
        assert images.complete(skeleton) == images.complete(data), path
        for read in (images.read_chunks, images.png_text_capped, images.only_text_damaged, images.text_after_pixels):
            assert _outcome(lambda: read(skeleton)) == _outcome(lambda: read(data)), (path, read.__name__)  # noqa: B023
        checked += 1
    assert checked > 150


def test_whether_an_image_job_s_file_holds_it_still_is_hashed_without_reading_it_whole(tmp_path):
    """The service checks that an image job's file still holds its image (files swapped by
    name) by hashing it: a block at a time, not a 40 MB read into the server's memory."""
    from learning_svc import images as served

    data = _big_png(tmp_path / "upscaled.png", 40 << 20)
    output = served.open_output("upscaled.png", tmp_path)
    try:
        same, peak = _peak_while(lambda: served.holds_another_image(images.content_id(data), output))
        assert same is False and peak < 4 << 20, peak
        assert served.holds_another_image("img-" + "0" * 40, output) is True
        assert output.file.tell() == 0  # served from its start afterwards
    finally:
        output.close()


def test_metadata_values_a_record_cannot_have_are_left_out_not_the_image(tmp_path):
    """A ComfyUI latent of width -512 (a node pack's odd value), a seed past 2^64, negative
    steps, a 600-character model name: the image was refused whole ("width: Input should be
    greater than or equal to 0"). It is imported; each such value is said in the report and
    kept in run_config.left_out, and the size is the file's own."""
    import json

    folder = tmp_path / "odd"
    folder.mkdir()
    prompt, workflow = image_fixtures.comfy_graphs()
    latent = next(node for node in prompt.values() if node.get("class_type") == "EmptyLatentImage")
    latent["inputs"]["width"] = -512
    image_fixtures.save_png_text(
        str(folder / "comfy.png"), {"prompt": json.dumps(prompt), "workflow": json.dumps(workflow)}
    )
    infotext = "a cat\nSteps: -5, Sampler: Euler a, CFG scale: 7, Seed: 99999999999999999999999, Model: " + "m" * 600
    image_fixtures.save_png_text(str(folder / "a1111.png"), {"parameters": infotext})

    settings = Settings(data_dir=tmp_path / "learning", output_root=tmp_path)
    result = run_import(settings, [folder])
    assert result.tally.total()["imported"] == 2
    reasons = {Path(p["file"]).name: p["reason"] for p in result.tally.problems}
    assert reasons["comfy.png"] == "metadata width -512 left out: Input should be greater than or equal to 0"
    assert (
        "metadata steps -5 left out" in reasons["a1111.png"]
        and "metadata seed 99999999999999999999999" in reasons["a1111.png"]
    )
    assert 'metadata model "mmm' in reasons["a1111.png"] and "at most 512 characters" in reasons["a1111.png"]
    records = listed_by_file(settings)
    comfy, a1111 = records["comfy.png"], records["a1111.png"]
    size = Image.open(folder / "comfy.png").size
    assert (comfy["width"], comfy["height"]) == size and comfy["run_config"]["left_out"] == {
        "width": -512,
        "height": 1024,
    }  # the size as recorded, both
    assert comfy["generator"] == "ComfyUI" and comfy["prompt"]
    assert a1111["prompt"] == "a cat" and a1111["cfg_scale"] == 7 and a1111["model"] is None
    assert a1111["steps"] is None and a1111["seed"] is None
    assert a1111["run_config"]["left_out"] == {"model": "m" * 600, "steps": -5, "seed": "99999999999999999999999"}

    # both of a size unusable: both said and kept; a weight JSON cannot hold (inf): kept as text
    (folder / "both.png").unlink(missing_ok=True)
    body = {"width": -512, "height": -768, "loras": [{"name": "x", "weight": float("inf")}]}
    said = images._unusable_values(body, (64, 96))
    assert [line.split(" left out")[0] for line in said] == [
        "metadata width -512",
        "metadata height -768",
        'metadata loras [{"name": "x", "weight": Infinity}]',
    ]
    assert body["run_config"]["left_out"] == {"width": -512, "height": -768, "loras": [{"name": "x", "weight": "inf"}]}
    assert (body["width"], body["height"]) == (64, 96) and "loras" not in body

    # an image wider than a record's width may be (1,000,000): no size, rather than no image
    import struct

    wide = image_fixtures.raw_png(2_000_000, 1, idat=b"")
    (folder / "wide.png").write_bytes(wide)
    assert struct.unpack(">I", wide[16:20])[0] == 2_000_000
    result = run_import(settings, [folder / "wide.png"])
    assert result.tally.total()["imported"] == 1, result.tally.problems
    record = listed_by_file(settings)["wide.png"]
    assert record["width"] is None and record["height"] is None and record["generator"] == images.NO_METADATA


def _chunk(kind: bytes, body: bytes = b"", crc: int | None = None) -> bytes:
    import struct
    import zlib

    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _tiny_png(mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (8, 8)).save(out, format="PNG")
    return out.getvalue()


def test_crafted_files_keep_the_reader_s_memory_and_time_bounded(tmp_path, monkeypatch):
    """An outside review of the bounded reader: many small PNG chunks made the skeleton the
    whole file (and twice it, copied); many JPEG markers too, slowly; a 48 MiB private chunk of
    an RGBA PNG was read whole by Pillow looking for stealth data; EXIF after 16 MiB of other
    segments was dropped without a word. Each is bounded, or a report line. (The limits are
    made small here so that the files are.)"""
    import zlib

    monkeypatch.setattr(images, "KEEP_TOTAL", 64 << 10)
    monkeypatch.setattr(images, "MAX_PARTS", 20_000)
    png = _tiny_png()
    # 10,000 small private chunks: the skeleton stays within its room, the image is imported
    many = png[:33] + _chunk(b"zzZz", b"x" * 20) * 10_000 + png[33:]
    (tmp_path / "many.png").write_bytes(many)
    contents = images.read_image(tmp_path / "many.png")
    assert len(contents.data) <= 64 << 10 and contents.trimmed and contents.problem is None
    assert isinstance(images.image_job(tmp_path / "many.png", tmp_path), images.Job)
    # ... more chunks than any image has: said so
    (tmp_path / "more.png").write_bytes(png[:33] + _chunk(b"zzZz") * 30_000 + png[33:])
    problem = images.image_job(tmp_path / "more.png", tmp_path)
    assert isinstance(problem, images.Problem) and "more than 20,000 chunks" in problem.reason
    # JPEG: a run of fill bytes, and EXIF after more segments than the room holds
    small = io.BytesIO()
    Image.new("RGB", (8, 8)).save(small, format="JPEG", exif=image_fixtures.exif_usercomment_unicode("a cat\nSteps: 5"))
    jpeg = small.getvalue()
    (tmp_path / "fill.jpg").write_bytes(jpeg[:2] + b"\xff" * 30_000 + jpeg[2:])
    problem = images.image_job(tmp_path / "fill.jpg", tmp_path)
    assert isinstance(problem, images.Problem) and "more than 20,000 markers" in problem.reason
    app2 = b"\xff\xe2\xff\xff" + bytes(65533)
    (tmp_path / "late_exif.jpg").write_bytes(jpeg[:2] + app2 * 2 + jpeg[2:])
    problem = images.image_job(tmp_path / "late_exif.jpg", tmp_path)
    assert isinstance(problem, images.Problem)
    assert problem.reason == "more than 0.0625 MiB before its image: not an image a UI wrote"
    # an RGBA PNG with a 48 MiB private chunk: not opened again for stealth data (Pillow read it whole)
    monkeypatch.setattr(images, "KEEP_TOTAL", 16 << 20)
    rgba = _tiny_png("RGBA")
    (tmp_path / "private.png").write_bytes(rgba[:33] + _chunk(b"prIv", bytes(48 << 20)) + rgba[33:])
    job, peak = _peak_while(lambda: images.image_job(tmp_path / "private.png", tmp_path))
    assert isinstance(job, images.Job) and job.body["generator"] == images.NO_METADATA and peak < 8 << 20, peak
    # a critical chunk too large to read is no image (it was dropped, and a bad one imported)
    (tmp_path / "critical.png").write_bytes(png[:33] + _chunk(b"PRIV", bytes(3 << 20), crc=0) + png[33:])
    problem = images.image_job(tmp_path / "critical.png", tmp_path)
    assert isinstance(problem, images.Problem) and "'PRIV' chunk is too large" in problem.reason
    # a damaged text chunk *and* damaged pixel data: a broken image, as before the skeleton
    at = png.index(b"IDAT") - 4
    broken = png[:at] + _chunk(b"tEXt", b"parameters\0x", crc=0) + _chunk(b"IDAT", zlib.compress(b"\0" * 200), crc=0)
    (tmp_path / "broken.png").write_bytes(broken + _chunk(b"IEND"))
    problem = images.image_job(tmp_path / "broken.png", tmp_path)
    assert isinstance(problem, images.Problem) and "broken" in problem.reason


def test_odd_but_readable_files_read_as_they_did_before_the_skeleton(tmp_path):
    """More of the outside review: a JPEG whose scan header says a length under 2 was cut (the
    end marker read as its length: "truncated"); a TIFF over 1 MiB named .png was "not a PNG,
    JPEG or WEBP image" (Pillow was given only its first MiB), no longer "a TIFF image"; a pipe
    made in place of an image after it was looked at would have blocked the reader."""
    small = io.BytesIO()
    Image.new("RGB", (8, 8)).save(small, format="JPEG", exif=image_fixtures.exif_usercomment_unicode("a cat\nSteps: 5"))
    jpeg = small.getvalue()
    at = jpeg.index(b"\xff\xda")
    (tmp_path / "short_sos.jpg").write_bytes(jpeg[: at + 2] + b"\0\0" + jpeg[at + 4 :])
    job = images.image_job(tmp_path / "short_sos.jpg", tmp_path)
    assert isinstance(job, images.Job) and job.body["prompt"].startswith("a cat")

    Image.new("RGB", (1000, 1000), (10, 20, 30)).save(tmp_path / "scan.png", format="TIFF")
    assert (tmp_path / "scan.png").stat().st_size > 1 << 20
    problem = images.image_job(tmp_path / "scan.png", tmp_path)
    assert problem.reason == "a TIFF image; only PNG, JPEG and WEBP are imported"

    os.mkfifo(tmp_path / "pipe.png")
    assert images.read_image(tmp_path / "pipe.png").problem == "not a regular file (a pipe, socket or device)"
