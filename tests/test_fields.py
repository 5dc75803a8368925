"""The field registry (fields.py): every field reaches the filters, facets, OpenAPI, CSV and the page's list."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from learning_svc.fields import FIELDS, canonical_number

from procs import JSON


def post(client, body: dict) -> None:
    response = client.post("/api/jobs", data=orjson.dumps(body), headers=JSON)
    assert response.status_code == 201, response.get_data(as_text=True)


def listed(client, **query) -> list[str]:
    response = client.get("/api/jobs", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [job["job_id"] for job in response.json["jobs"]]


def test_every_registry_field_is_a_parameter_a_facet_a_column_and_a_picker(client):
    post(client, {"job_id": "j", "completed_at": 1_764_000_000})
    names = [field.name for field in FIELDS]
    assert [f["name"] for f in client.get("/api/fields").json["fields"]] == names
    document = client.get("/api/openapi.json").json
    for path in ("/api/jobs", "/api/facets", "/api/export"):
        params = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
        for field in FIELDS:
            assert params[field.name]["schema"]["type"] == "array" and params[field.name]["explode"], (path, field)
    facets = client.get("/api/facets").json["facets"]
    assert set(facets) == {field.name for field in FIELDS if field.facet} | {"rating"}
    header = next(csv.reader(io.StringIO(client.get("/api/export?format=csv").get_data(as_text=True))))
    for field in FIELDS:
        assert field.name in header or f"{field.name}_group" in header, field.name


def test_numbers_filter_by_value_whatever_the_spelling(client):
    post(client, {"job_id": "a", "completed_at": 1_764_000_000, "steps": 30, "cfg_scale": 7.0})
    post(
        client,
        {"job_id": "b", "completed_at": 1_764_000_001, "run_config": {"steps": 20, "cfg_scale": 6.499999999999998}},
    )
    post(client, {"job_id": "c", "completed_at": 1_764_000_002, "steps": 0, "cfg_scale": 0.0})  # 0: unknown
    assert listed(client, steps="30") == listed(client, steps="30.0") == ["a"]
    assert listed(client, cfg_scale="7") == ["a"] and listed(client, cfg_scale="6.5") == ["b"]
    assert listed(client, steps=["20", "30"]) == ["b", "a"]
    assert listed(client, steps="0") == []
    facets = client.get("/api/facets").json["facets"]
    assert {v["value"] for v in facets["steps"]} == {"20", "30"}
    assert {v["value"] for v in facets["cfg_scale"]} == {"6.5", "7"}
    bad = client.get("/api/jobs?steps=many")
    assert bad.status_code == 400 and bad.json["error"]["fields"] == [
        {"loc": "steps", "msg": "must be a number, got 'many'"}
    ]


def test_a1111_sampler_names_facet_as_sampler_and_scheduler(client):
    post(client, {"job_id": "combined", "completed_at": 1_764_000_000, "sampler": "DPM++ 2M Karras"})
    post(client, {"job_id": "split", "completed_at": 1_764_000_001, "sampler": "DPM++ 2M", "scheduler": "Karras"})
    post(client, {"job_id": "auto", "completed_at": 1_764_000_002, "sampler": "Euler a", "scheduler": "automatic"})
    assert listed(client, sampler="DPM++ 2M") == ["split", "combined"]
    assert listed(client, scheduler="karras") == ["split", "combined"]
    assert listed(client, scheduler="automatic") == ["auto"]
    summary = client.get("/api/jobs/combined").json["record"]
    assert summary["sampler"] == "DPM++ 2M Karras" and summary["scheduler"] is None  # the raw value is kept


def test_lora_and_vae_names_group_like_models(client):
    post(
        client,
        {
            "job_id": "a",
            "completed_at": 1_764_000_000,
            "run_config": {"prompt": "<lora:add-detail-xl:0.5>"},
            "vae": "models/VAE/sdxl_vae.safetensors",
        },
    )
    post(client, {"job_id": "b", "completed_at": 1_764_000_001, "loras": [{"name": "Add-Detail-XL.safetensors"}]})
    assert listed(client, lora="add-detail-xl.safetensors") == ["b", "a"]
    assert listed(client, vae="SDXL_VAE") == ["a"]


@pytest.mark.parametrize(
    "value, text",
    [
        (7, "7"),
        (7.0, "7"),
        (6.499999999999998, "6.5"),
        (0.30000000000000004, "0.3"),
        (12.34567, "12.3457"),
        (-0.0, "0"),
    ],
)
def test_canonical_numbers(value, text):
    assert canonical_number(value) == text
