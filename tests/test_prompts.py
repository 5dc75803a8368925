"""LoRA / embedding detection for every syntax of SPEC §1.3, and facet normalisation."""

import pytest

from learning_svc.fields import BY_NAME
from learning_svc.prompts import detect, model_display, split_sampler


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("a cat <lora:add-detail_xl:0.8>", [("add-detail_xl", 0.8)]),
        ("<lora:FantasyArt_v3>", [("FantasyArt_v3", 1.0)]),
        ("<lyco:film_grain:0.6>", [("film_grain", 0.6)]),
        ("<lora:block_weighted:0.8:0.5>", [("block_weighted", 0.8)]),
        ("<LoRA : Spaced Name : -0.5 >", [("Spaced Name", -0.5)]),
        ("<lora:noise:0.39560439560439564>", [("noise", 0.39560439560439564)]),
        ("<lora:a:1> <LORA:A:0.2> <lora:b:.5>", [("a", 1.0), ("b", 0.5)]),
    ],
)
def test_lora_syntaxes(prompt, expected):
    loras, _ = detect(prompt)
    assert [(lora["name"], lora["weight"]) for lora in loras] == expected


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("<embedding:easynegativeV1>", [("easynegativeV1", 1.0)]),
        ("(<embedding:ac_negv2>:0.86)", [("ac_negv2", 0.86)]),
        ("( <Embedding : zPDXL > : 1.1 )", [("zPDXL", 1.1)]),
        ("embedding:bare_name, blurry", [("bare_name", 1.0)]),
        ("<embedding:SDXLnegXL>, <embedding:sdxlnegxl>, EMBEDDING:SDXLNEGXL", [("SDXLnegXL", 1.0)]),
    ],
)
def test_embedding_syntaxes(prompt, expected):
    _, embeddings = detect(prompt)
    assert [(e["name"], e["weight"]) for e in embeddings] == expected


@pytest.mark.parametrize(
    "prompt",
    [
        "<lora:>",
        "<lora:name:abc>",
        "<lora name:1>",
        "<embedding:>",
        "<lora:unclosed:0.5",
        "embedding:",
        "<<<>>>",
        "<lora::0.5>",
        "<lyco:>",
    ],
)
def test_malformed_tokens_are_ignored(prompt):
    assert detect(prompt) == ([], [])


def test_malformed_weighted_embedding_still_counts_the_plain_token():
    _, embeddings = detect("(<embedding:x>:abc)")
    assert embeddings == [{"name": "x", "weight": 1.0}]


def test_positive_then_negative_order_and_first_wins():
    loras, embeddings = detect(
        "<embedding:Pos> <lora:L1:0.5> 赛博朋克 🌃", "<embedding:neg> <embedding:POS> <lora:l1:0.9>"
    )
    assert [(lora["name"], lora["weight"]) for lora in loras] == [("L1", 0.5)]
    assert [e["name"] for e in embeddings] == ["Pos", "neg"]


def test_no_prompts():
    assert detect(None, "") == ([], [])


@pytest.mark.parametrize(
    "raw, display",
    [
        ("juggernautXL_ragnarokBy.safetensors [dd08fa32f9]", "juggernautXL_ragnarokBy"),
        ("juggernautXL_ragnarokBy", "juggernautXL_ragnarokBy"),
        (r"C:\models\Stable-diffusion\sd_xl_base_1.0.safetensors", "sd_xl_base_1.0"),
        ("sub/dir/realvis.ckpt", "realvis"),
    ],
)
def test_model_normalisation(raw, display):
    assert model_display(raw) == display
    assert BY_NAME["model"].parse(raw) == display.casefold()


def test_facet_keys_are_case_insensitive():
    assert BY_NAME["sampler"].parse(" DPM++ 2M ") == BY_NAME["sampler"].parse("dpm++ 2m")


@pytest.mark.parametrize(
    "raw, split",
    [
        ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")),
        ("DPM++ 2M SDE Exponential", ("DPM++ 2M SDE", "Exponential")),
        ("DPM++ 2M SGM Uniform", ("DPM++ 2M", "SGM Uniform")),
        ("dpm++ 2m karras", ("dpm++ 2m", "karras")),
        ("Euler a", ("Euler a", None)),
        ("DDIM", ("DDIM", None)),
        ("Karras", ("Karras", None)),
    ],
)
def test_a1111_sampler_names_carry_their_scheduler(raw, split):
    assert split_sampler(raw) == split
