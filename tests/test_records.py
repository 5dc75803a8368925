"""Validation, defaults and resolution of the two line types (SPEC §1.1, §1.2)."""

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
