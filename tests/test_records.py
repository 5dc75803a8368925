"""Validation, defaults and resolution of the two line types (SPEC §1.1, §1.2)."""

import re

import orjson
import pytest

from learning_svc import records
from learning_svc.records import InvalidRecord, JobIn

from conftest import sample_records


def stored(body: dict) -> dict:
    return records.stored_job(records.parse(JobIn, body), logged_at=1.0)


def test_every_sample_validates_and_resolves():
    for body in sample_records():
        line = stored(body)
        assert line["schema"] == "learning_log_v2"
        assert line["job_id"] == body["job_id"]
        assert isinstance(line["completed_at"], float)
        assert line["num_outputs"] == len(body.get("outputs", []))


def test_summary_resolved_from_run_config_and_model_kept_raw():
    edge = sample_records()[40]
    line = stored(edge)
    assert line["model"] == "juggernautXL_ragnarokBy.safetensors [dd08fa32f9]"
    assert (line["sampler"], line["scheduler"], line["steps"], line["cfg_scale"]) == ("DPM++ 2M", "Karras", 30, 6.0)
    assert (line["width"], line["height"]) == (896, 1152)
    assert line["loras"] == [{"name": "add-detail-xl", "weight": 0.8}]
    assert line["embeddings"] == [{"name": "SDXLnegXL", "weight": 1.0}]
    assert line["duration_sec"] == pytest.approx(10.5)


def test_iso_timestamps_naive_is_utc_and_z():
    line = stored(sample_records()[41])
    assert line["started_at"] == pytest.approx(1773271934.120511)  # 2026-03-11T23:32:14.120511 UTC
    assert line["completed_at"] == 1773271982.0
    assert line["status"] == "failed" and line["variant_index"] == 3


def test_top_level_values_win_over_run_config_and_stages():
    body = {
        "job_id": "j",
        "completed_at": 5,
        "sampler": "Euler",
        "run_config": {"sampler": "DDIM", "steps": 20},
        "stages": {"txt2img": {"sampler_name": "Heun", "steps": 40, "cfg_scale": 7, "seed": 4294967295}},
    }
    line = stored(body)
    assert (line["sampler"], line["steps"], line["cfg_scale"], line["seed"]) == ("Euler", 20, 7.0, 4294967295)


def test_given_loras_are_not_replaced_by_detection():
    body = {"job_id": "j", "completed_at": 5, "prompt": "<lora:x:0.5>", "loras": [{"name": "y", "weight": 0.3}]}
    assert stored(body)["loras"] == [{"name": "y", "weight": 0.3}]


def test_completed_from_started_plus_duration():
    line = stored({"job_id": "j", "started_at": 100, "duration_sec": 12.5})
    assert line["completed_at"] == 112.5


def test_unknown_keys_are_kept():
    line = stored({"job_id": "j", "completed_at": 1, "pipeline_version": "3.1"})
    assert line["pipeline_version"] == "3.1"
    assert list(line)[-2:] == ["logged_at", "input_hash"]


def test_input_hash_ignores_key_order_and_equivalent_time_forms():
    a = records.input_hash(records.parse(JobIn, {"job_id": "j", "completed_at": "2026-03-11T23:33:02Z", "packs": []}))
    b = records.input_hash(records.parse(JobIn, {"packs": [], "completed_at": 1773271982, "job_id": "j"}))
    c = records.input_hash(records.parse(JobIn, {"job_id": "j", "completed_at": 1773271983}))
    assert a == b != c


@pytest.mark.parametrize(
    "body, loc, fragment",
    [
        ({"completed_at": 1}, "job_id", "Field required"),
        ({"job_id": "a/b", "completed_at": 1}, "job_id", "'/'"),
        ({"job_id": "x" * 129, "completed_at": 1}, "job_id", "1 to 128"),
        ({"job_id": "a\nb", "completed_at": 1}, "job_id", "control"),
        ({"job_id": "j"}, "completed_at", "required"),
        ({"job_id": "j", "completed_at": "yesterday"}, "completed_at", "ISO-8601"),
        ({"job_id": "j", "completed_at": True}, "completed_at", "epoch seconds"),
        ({"job_id": "j", "completed_at": 1e12}, "completed_at", "epoch seconds from 0 to"),
        # an ISO time out of range was told "must be epoch seconds" (an outside run)
        (
            {"job_id": "j", "completed_at": "9999-12-31T23:59:59Z"},
            "completed_at",
            "from 1970 to the year 5138 (UTC), not 9999-12-31T23:59:59+00:00",
        ),
        (
            {"job_id": "j", "completed_at": "1969-12-31T23:59:59"},
            "completed_at",
            "from 1970 to the year 5138 (UTC), not 1969",
        ),
        ({"job_id": "j", "completed_at": 10, "started_at": 20}, "completed_at", "before started_at"),
        ({"job_id": "j", "completed_at": 10, "started_at": 0, "duration_sec": 5}, "duration_sec", "disagrees"),
        ({"job_id": "j", "completed_at": 1, "variant_index": 2, "variant_total": 2}, "variant_index", "less than"),
        ({"job_id": "j", "completed_at": 1, "outputs": ["a.png"], "num_outputs": 2}, "num_outputs", "must equal"),
        ({"job_id": "j", "completed_at": 1, "status": "done"}, "status", "completed"),
        ({"job_id": "j", "completed_at": 1, "steps": "30"}, "steps", "integer"),
        ({"job_id": "j", "completed_at": 1, "seed": 2**64}, "seed", "too large"),
        ({"job_id": "j", "completed_at": 1, "packs": "one"}, "packs", "list"),
        ({"job_id": "j", "completed_at": 1, "loras": [{"name": "x", "weight": "1"}]}, "loras.0.weight", "number"),
        ({"job_id": "j", "completed_at": 1, "extra": {"a": "x\x00"}}, "extra.a", "NUL"),
    ],
)
def test_invalid_records_name_the_field(body, loc, fragment):
    with pytest.raises(InvalidRecord) as info:
        records.parse(JobIn, body)
    assert info.value.fields[0]["loc"] == loc
    assert fragment in info.value.fields[0]["msg"] or fragment in str(info.value)


def test_deep_nesting_is_refused():
    nested = {}
    node = nested
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidRecord, match="nesting"):
        records.parse(JobIn, {"job_id": "j", "completed_at": 1, "run_config": nested})


@pytest.mark.parametrize("value", [4.5, True, "4", 6, -1, None, [4]])
def test_rating_must_be_an_integer_0_to_5(value):
    with pytest.raises(InvalidRecord, match="rating must be an integer from 0 to 5"):
        records.parse_rating({"rating": value})


def test_rating_event_shape():
    event = records.rating_event("j", 4, "web", timestamp=2.0)
    assert list(event) == ["schema", "rating_id", "job_id", "rating", "timestamp", "source"]
    assert event["schema"] == "learning_rating_v2" and event["rating"] == 4


def test_dumps_is_one_compact_line():
    data = records.dumps(stored({"job_id": "j", "completed_at": 1, "prompt": "猫 🐈 \u2028"}))
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert orjson.loads(data)["prompt"] == "猫 🐈 \u2028"


# ---------------------------------------------------------------- StableNew fidelity (issue 10)


def test_input_hash_of_records_stored_by_earlier_versions_is_unchanged():
    """A retry of a record stored before fields were added to JobIn is still identical (200, not 409):
    these hashes were computed by the version that first stored them."""
    expected = {
        "a20964f8-751f-7c11-a01b-83f412bb6a79": "20a0d43e9067a5ff2c8ac2889c3a93b7",
        "e2b2cc27a185b4e1782b2f1e200021f6": "ed7965d6e1205054168603229763d62d",
        "3f2a9c1e7b4d4e0f9a8b7c6d5e4f3a2b": "d97689998cee21087edffb40effc0faf",
        "learning_20260311_233214_txt2img_CFG_Scale_juggernautXL_ragna_automatic_10.0_02e4e652": (
            "bfaa7c65df2852056702572ddfa179a7"
        ),
    }
    by_id = {body["job_id"]: body for body in sample_records()}
    for job_id, digest in expected.items():
        assert records.input_hash(records.parse(JobIn, by_id[job_id])) == digest


def test_blank_strings_are_absent_everywhere():
    body = {
        "job_id": "j",
        "completed_at": 5,
        "model": "",
        "sampler": " ",
        "prompt": "",
        "run_id": "",
        "packs": ["", "P"],
        "outputs": ["", "a.png"],
        "run_config": {"model": "m1", "prompt": "a cat"},
    }
    line = stored(body)
    assert (line["model"], line["sampler"], line["prompt"], line["run_id"]) == ("m1", None, "a cat", None)
    assert line["packs"] == ["P"] and line["outputs"] == ["a.png"] and line["num_outputs"] == 1


def test_integral_floats_are_integers_and_zero_is_unknown():
    line = stored(
        {
            "job_id": "j",
            "completed_at": 5,
            "steps": 30.0,
            "seed": 12345.0,
            "width": 1024.0,
            "height": 0,
            "variant_index": 1.0,
            "variant_total": 2.0,
            "run_config": {"height": 768, "cfg_scale": 0.0},
        }
    )
    assert (line["steps"], line["seed"], line["width"], line["height"]) == (30, 12345, 1024, 768)
    assert (line["variant_index"], line["variant_total"], line["cfg_scale"]) == (1, 2, None)
    assert isinstance(line["steps"], int) and isinstance(line["seed"], int)
    for bad in ({"steps": 30.5}, {"seed": 1.5}, {"variant_total": 2.5}):
        with pytest.raises(InvalidRecord) as error:
            stored({"job_id": "j", "completed_at": 5, **bad})
        assert error.value.fields[0]["loc"] == next(iter(bad))


def test_service_keys_cannot_be_set_by_a_record():
    """A record's own `schema`, `logged_at`, `input_hash` or export key would overwrite the
    service's (a `schema` made the line invisible to every index path): refused, 400."""
    for key in records.SERVICE_KEYS:
        with pytest.raises(InvalidRecord) as error:
            stored({"job_id": "j", "completed_at": 5, key: "mine"})
        assert error.value.fields == [{"loc": key, "msg": error.value.fields[0]["msg"]}]
        assert "written by the service" in error.value.fields[0]["msg"]


def test_a_stablenew_job_snapshot_as_run_config():
    """StableNew v2.6 names (positive_prompt, base_model, lora_tags, stage_chain, *_embeddings),
    nested as normalized_job or not, with "" and 0 for what it did not know."""
    njr = {
        "positive_prompt": "portrait <lora:detail:0.3> <stable_yogis_pdxl_negatives2-neg>",
        "negative_prompt": "<embedding:bad_hands>",
        "base_model": "",
        "sampler_name": "",
        "steps": 0,
        "cfg_scale": 0.0,
        "width": 0,
        "height": 0,
        "seed": 77,
        "lora_tags": [{"name": "detail", "weight": 0.30000000000000004}, {"name": "style", "weight": 0.5}],
        "positive_embeddings": ["pos_emb"],
        "negative_embeddings": [["neg_emb", 0.8]],
        "stage_chain": [
            {"stage_type": "txt2img", "enabled": False, "model": "disabled.safetensors", "steps": 99},
            {
                "stage_type": "img2img",
                "enabled": True,
                "model": "realvis.safetensors",
                "sampler_name": "DPM++ 2M",
                "scheduler": "Karras",
                "steps": 25,
                "cfg_scale": 5.5,
            },
            {"stage_type": "adetailer", "enabled": True, "extra": {"prompt": "face <lora:face_fix:0.7>"}},
        ],
    }
    for run_config in (njr, {"schema_version": "1.0", "normalized_job": njr}):
        line = stored({"job_id": "sn", "completed_at": 5, "run_config": run_config})
        assert line["prompt"] == njr["positive_prompt"] and line["model"] == "realvis.safetensors"
        assert (line["sampler"], line["scheduler"], line["steps"], line["cfg_scale"]) == ("DPM++ 2M", "Karras", 25, 5.5)
        assert (line["width"], line["height"], line["seed"]) == (None, None, 77)
        assert [(x["name"], x["weight"]) for x in line["loras"]] == [
            ("detail", 0.30000000000000004),
            ("style", 0.5),
            ("face_fix", 0.7),
        ]
        assert [(x["name"], x["weight"]) for x in line["embeddings"]] == [
            ("pos_emb", 1.0),
            ("neg_emb", 0.8),
            ("stable_yogis_pdxl_negatives2-neg", 1.0),
            ("bad_hands", 1.0),
        ]


def test_an_upscale_only_job_takes_its_summary_from_that_stage():
    line = stored(
        {
            "job_id": "u",
            "completed_at": 5,
            "stages": {
                "upscale": {
                    "upscaler": "R-ESRGAN 4x+",
                    "model": "sdxl.safetensors",
                    "sampler_name": "Euler",
                    "steps": 12,
                },
                "adetailer": {"adetailer_prompt": "<lora:eyes:0.4>", "ad_negative_prompt": "<embedding:ugly>"},
            },
        }
    )
    assert (line["model"], line["sampler"], line["steps"]) == ("sdxl.safetensors", "Euler", 12)
    assert line["loras"] == [{"name": "eyes", "weight": 0.4}] and line["embeddings"] == [
        {"name": "ugly", "weight": 1.0}
    ]


def test_naive_times_follow_the_configured_zone():
    from zoneinfo import ZoneInfo

    body = {"job_id": "j", "completed_at": "2026-03-12T04:32:21"}
    utc = records.parse(JobIn, body)
    chicago = records.parse(JobIn, body, naive_timezone=ZoneInfo("America/Chicago"))
    assert utc.completed_at == 1773289941.0  # 04:32:21 UTC
    assert chicago.completed_at == utc.completed_at + 5 * 3600  # CDT is UTC-5 on that day
    assert (
        records.parse(
            JobIn, {"job_id": "j", "completed_at": "2026-03-12T04:32:21Z"}, naive_timezone=ZoneInfo("America/Chicago")
        ).completed_at
        == utc.completed_at
    )


@pytest.mark.parametrize(
    "body, loc",
    [
        ({"job_id": ".", "completed_at": 5}, "job_id"),
        ({"job_id": "..", "completed_at": 5}, "job_id"),
        ({"job_id": "j", "completed_at": 99_999_999_999.5}, "completed_at"),
    ],
)
def test_what_the_schema_refuses_is_refused(body, loc):
    with pytest.raises(InvalidRecord) as error:
        stored(body)
    assert error.value.fields[0]["loc"] == loc
    assert stored({"job_id": "...", "completed_at": 99_999_999_999})["completed_at"] == 99_999_999_999


# ---------------------------------------------------------------- the raw body's screen


HUGE_NUMBERS = [
    b"1e20",
    b"1E20",
    b"-2.5E+21",
    b"18446744073709551616",
    b"-100000000000000000000000000000",
    b"1.0e019",
    b"0.5e+30",
    b"1000000000000000000e5",  # 19 digits and a 1-digit exponent: missed by the regular expression before
    b"12345678901234567890.5",
]


@pytest.mark.parametrize("number", HUGE_NUMBERS)
@pytest.mark.parametrize("where", [b'{"x": %s}', b'{"x":\n\t %s }', b"[%s]", b"[1, \r\n%s]", b'{"a": [[{"b": %s}]]}'])
def test_a_number_of_2_to_the_64_or_more_is_refused_wherever_it_stands(number, where):
    """The cheap screen of the raw body must fire whenever the full walk would refuse the body."""
    free_form = where % number
    body = b'{"job_id": "j", "completed_at": 1, "run_config": {"v": ' + free_form + b"}}"
    if abs(float(number)) >= records.MAX_NUMBER:
        assert records.needs_shape_check(body)
        with pytest.raises(InvalidRecord, match="2\\*\\*64"):
            records.parse_json(JobIn, body)
    else:  # 1.0e019: below, fired the screen, and the walk lets it through
        assert records.needs_shape_check(body)
        records.parse_json(JobIn, body)


def test_the_screen_agrees_with_the_full_walk_on_random_numbers():
    """Differential: over many numbers in many spellings, when the walk refuses, the screen fired."""
    import random

    rng = random.Random(64)
    missed = []
    for _ in range(20_000):
        mantissa = rng.choice(["", "-"]) + str(rng.randint(0, 10 ** rng.randint(0, 24)))
        if rng.random() < 0.4:
            mantissa += "." + str(rng.randint(0, 10**6))
        exponent = "" if rng.random() < 0.4 else rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 40))
        space = rng.choice(["", " ", "\n  ", "\t"])
        raw = ('{"job_id": "8e70ab", "completed_at": 1, "extra": {"v":' + space + mantissa + exponent + "}}").encode()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # 1e400 and the like: the JSON parser refuses them before any screen
        try:
            records.check_json_shape(data)
        except InvalidRecord:
            if not records.needs_shape_check(raw):
                missed.append(raw)
    assert missed == []


def test_typical_records_pass_the_screen_without_the_full_walk():
    """Hex ids and hashes (`8e70`) and seeds do not fire the screen: a 4 KB record is screened in
    microseconds instead of walked (the walk is ~60 µs a record)."""
    from learning_svc import gen

    bodies = [orjson.dumps(body) for body in gen.generate_records(500, seed=3)]
    assert sum(records.needs_shape_check(body) for body in bodies) == 0
    looks_like_exponent = re.compile(rb"[0-9][eE]\+?[0-9]")  # in hex ids and model hashes (`[31e35c80fc]`)
    assert sum(looks_like_exponent.search(body) is not None for body in bodies) > 250
