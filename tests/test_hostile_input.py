"""Hostile JSON and oversized bodies get a clear 400/413 and write nothing; schemathesis finds no 5xx."""

from __future__ import annotations

import os
import socket
from urllib.parse import quote

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis import DataGenerationMethod
from schemathesis.checks import not_a_server_error

from learning_svc import create_app
from learning_svc.config import Settings

from conftest import JSON
from procs import job

MiB = 1024 * 1024
VALID = orjson.dumps(job("hostile"))[:-1]  # without the closing brace: bodies below add a field


def nested(depth: int) -> bytes:
    return b'{"job_id": "deep", "completed_at": 1700000000, "run_config": {"a": ' + b"[" * depth + b"]" * depth + b"}}"


HOSTILE_BODIES = {
    "deep_nesting": nested(100),
    "deeper_than_the_parser": nested(5000),
    "nan": VALID + b', "cfg_scale": NaN}',
    "nan_in_free_form": VALID + b', "run_config": {"x": NaN}}',
    "infinity": VALID + b', "duration_sec": Infinity}',
    "minus_infinity": VALID + b', "extra": {"x": -Infinity}}',
    "overflowing_float": VALID + b', "extra": {"x": 1e400}}',
    "lone_high_surrogate": VALID + b', "prompt": "a \\ud800 b"}',
    "lone_low_surrogate": VALID + b', "extra": {"\\udc00": 1}}',
    "invalid_utf8": VALID + b', "prompt": "\xff\xfe"}',
    "overlong_utf8_nul": VALID + b', "prompt": "\xc0\x80"}',
    "huge_integer": VALID + b', "seed": 18446744073709551616}',
    "huge_integer_free_form": VALID + b', "run_config": {"seed": 100000000000000000000000000000}}',
    "huge_negative_integer": VALID + b', "extra": {"n": -100000000000000000000000000000}}',
    "escaped_nul_in_value": VALID + b', "prompt": "a\\u0000b"}',
    "escaped_nul_in_key": VALID + b', "extra": {"a\\u0000": 1}}',
    "escaped_nul_in_job_id": b'{"job_id": "a\\u0000", "completed_at": 1700000000}',
    "raw_nul_in_string": VALID + b', "prompt": "a\x00b"}',
    "raw_nul_after_document": VALID + b"}\x00",
    "trailing_garbage": VALID + b"} {}",
    "empty": b"",
    "whitespace": b"  \n ",
    "array": b"[" + VALID + b"}]",
    "string": b'"job"',
    "null": b"null",
    "job_id_with_slash": b'{"job_id": "a/b", "completed_at": 1700000000}',
    "job_id_with_newline": b'{"job_id": "a\\nb", "completed_at": 1700000000}',
    "job_id_too_long": b'{"job_id": "' + b"x" * 129 + b'", "completed_at": 1700000000}',
    "job_id_number": b'{"job_id": 12, "completed_at": 1700000000}',
    "timestamp_nan_string": b'{"job_id": "t", "completed_at": "NaN"}',
    "timestamp_far_future": b'{"job_id": "t", "completed_at": 1e300}',
    "bool_as_int": VALID + b', "steps": true}',
    "weight_infinity_string": VALID + b', "loras": [{"name": "x", "weight": "inf"}]}',
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_hostile_job_bodies_are_400_and_write_nothing(client, settings, body):
    response = client.post("/api/jobs", data=body, headers=JSON)
    assert response.status_code == 400, response.data[:300]
    error = response.json["error"]
    assert error["code"] == "invalid" and error["message"]
    assert not settings.log_path.exists() or settings.log_path.stat().st_size == 0
    assert client.get("/api/health").json["index"]["jobs"] == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"rating": NaN}',
        b'{"rating": 1e400}',
        b'{"rating": 18446744073709551616}',
        b'{"rating": 4.5}',
        b'{"rating": "5"}',
        b'{"rating": true}',
        b'{"rating": 6}',
        b'{"rating": -1}',
        b'{"rating": [5]}',
        b'{"rating": 5, "source": "a\\u0000"}',
        b'{"rating": 5, "source": "' + b"s" * 33 + b'"}',
        nested(5000),
        b"",
        b"[]",
    ],
)
def test_hostile_rating_bodies_are_400_and_write_nothing(client, settings, body):
    assert client.post("/api/jobs", data=orjson.dumps(job("rated")), headers=JSON).status_code == 201
    response = client.put("/api/jobs/rated/rating", data=body, headers=JSON)
    assert response.status_code == 400 and response.json["error"]["code"] == "invalid"
    assert not settings.ratings_path.exists()


def test_a_body_in_latin_1_is_said_to_be_not_utf8_where_it_is_not(client, settings):
    """A body with a Latin-1 é was refused with orjson's "str is not valid UTF-8: surrogates not
    allowed": no surrogate in sight. The answer now names the byte and where it is."""
    body = b'{"job_id": "caf\xe9", "completed_at": 1767225600}'
    response = client.post("/api/jobs", data=body, headers=JSON)
    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert message == "the body is not valid JSON: it is not UTF-8 (byte 0xe9 at offset 15); send JSON as UTF-8"
    assert not settings.log_path.exists() or settings.log_path.stat().st_size == 0


@pytest.mark.parametrize(
    "query",
    [
        "q=a%00b",
        "pack=%00",
        "q%00=x",
        "since=NaN",
        "since=1e400",
        "until=-1",
        "limit=18446744073709551616",
        "limit=1e3",
        "rating_min=NaN",
        "cursor=%00",
        "cursor=" + "A" * 5000,
        "sort=%00",
        "q=" + "x" * 501,
    ],
)
def test_hostile_query_parameters_are_400(client, query):
    assert client.post("/api/jobs", data=orjson.dumps(job("listed")), headers=JSON).status_code == 201
    for path in ("/api/jobs", "/api/facets", "/api/export"):
        response = client.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query, response.data[:200])
        assert response.json["error"]["code"] == "invalid_parameter"


def test_hostile_path_values_are_404_not_500(client):
    for job_id in ("%00", "a%00b", "x" * 5000, "%ff%fe", "..", "%2e%2e"):
        assert client.get(f"/api/jobs/{job_id}").status_code == 404
        assert client.put(f"/api/jobs/{job_id}/rating", json={"rating": 1}).status_code == 404


ODD_OUTPUTS = [
    "/" + "y" * 4000 + ".png",
    "/tmp/" + "\u00e9" * 200 + ".png",
    "../../etc/passwd.png",
    "a/" * 1000 + "b.png",
    "C:\\x\\y.png",
    "\\\\server\\share\\a.png",
    "/dev/zero.png",
    "missing.png",
]


def test_odd_output_paths_give_a_placeholder_not_500(client):
    record = job("odd-outputs", outputs=ODD_OUTPUTS)
    assert client.post("/api/jobs", data=orjson.dumps(record), headers=JSON).status_code == 201
    for n in range(len(ODD_OUTPUTS)):
        for suffix in ("", "/thumbnail"):
            response = client.get(f"/api/jobs/odd-outputs/outputs/{n}{suffix}")
            assert response.status_code == 200, (ODD_OUTPUTS[n][:40], suffix)
            assert response.headers["X-Learning-Placeholder"] == "missing"
    # an output the job does not have is not a placeholder: 404 in the error shape
    missing = client.get(f"/api/jobs/odd-outputs/outputs/{10**30}")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    assert client.get("/api/jobs/no-such-job/outputs/0").status_code == 404


def test_body_over_1_mib_with_content_length_is_413(client, settings):
    body = orjson.dumps(job("big", extra={"pad": "x" * MiB}))
    response = client.post("/api/jobs", data=body, headers=JSON)
    assert response.status_code == 413 and response.json["error"]["code"] == "too_large"
    assert not settings.log_path.exists()


# ---------------------------------------------------------------- the real server, raw HTTP


def raw_post(port: int, head: str, body_parts: list[bytes]) -> bytes:
    """Send a request byte for byte and return the response (the server may answer early)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n")
        try:
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole body was read: the answer is waiting
        response = b""
        try:
            while not _complete(response):
                data = sock.recv(65536)
                if not data:
                    break
                response += data
        except ConnectionResetError:
            pass
        return response


def _complete(response: bytes) -> bool:
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def chunks(body: bytes, size: int = 64 * 1024) -> list[bytes]:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)]
    return parts + [b"0\r\n\r\n"]


def head(port: int, **headers: str) -> str:
    lines = [
        "POST /api/jobs HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        *[f"{name.replace('_', '-')}: {value}" for name, value in headers.items()],
    ]
    return "\r\n".join(lines) + "\r\n"


def status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:100]
    return int(response.split(b" ", 2)[1])


def test_chunked_bodies_on_the_real_server(live_server):
    port = live_server.port
    small = orjson.dumps(job("chunked"))
    assert status(raw_post(port, head(port, Transfer_Encoding="chunked"), chunks(small))) == 201
    over = orjson.dumps(job("over", extra={"pad": "x" * MiB}))  # just over 1 MiB, no Content-Length
    response = raw_post(port, head(port, Transfer_Encoding="chunked"), chunks(over))
    assert status(response) == 413 and b'"too_large"' in response
    huge = orjson.dumps(job("huge", extra={"pad": "x" * 16 * MiB}))  # far over: waitress stops reading
    assert status(raw_post(port, head(port, Transfer_Encoding="chunked"), chunks(huge))) == 413
    assert status(raw_post(port, head(port, Content_Length=str(len(over))), [over])) == 413
    assert status(raw_post(port, head(port, Content_Length=str(len(huge))), [huge])) == 413
    lines = live_server.settings.log_path.read_bytes().splitlines()
    assert [orjson.loads(line)["job_id"] for line in lines] == ["chunked"]
    assert live_server.http.get(live_server.url + "/api/health").json()["index"]["jobs"] == 1


# ---------------------------------------------------------------- schemathesis


@pytest.fixture
def wsgi_app(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "learning"))
    # a few real jobs, so that reads, ratings and conflicts reach the index and not only 404s
    client = app.test_client()
    for job_id in ("0", "a", "job-1"):
        client.post("/api/jobs", data=orjson.dumps(job(job_id, outputs=ODD_OUTPUTS)), headers=JSON)
    yield app
    app.extensions["learning_svc"].close()


@pytest.fixture
def api_schema(wsgi_app):
    return schemathesis.from_wsgi(
        "/api/openapi.json", wsgi_app, data_generation_methods=[DataGenerationMethod.positive]
    )


@pytest.fixture
def api_schema_negative(wsgi_app):
    # Operations whose only input is the job_id path segment (or nothing) are left out: schemathesis
    # mostly mutates that segment into something no URL can carry and gives up (Unsatisfiable).
    # Hostile rating bodies are covered one by one above.
    schema = schemathesis.from_wsgi(
        "/api/openapi.json", wsgi_app, data_generation_methods=[DataGenerationMethod.negative]
    )
    # Endpoints without parameters have no invalid requests to make.
    return schema.exclude(path_regex=r"^/api/(ratings|health|fields|jobs/\{job_id\}.*)$")


# The document is OpenAPI 3.1 (pydantic's JSON Schema); schemathesis 3 reads 3.1 behind this switch
# (its data generation follows the schemas as JSON Schema, which is what 3.1's are).
schemathesis.experimental.OPEN_API_3_1.enable()

EXAMPLES = int(os.environ.get("LEARNING_SVC_FUZZ_EXAMPLES", "30"))  # `make fuzz` runs many more
FUZZ = hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))

positive = schemathesis.from_pytest_fixture("api_schema")
negative = schemathesis.from_pytest_fixture("api_schema_negative")


def call_and_check(case, app) -> None:
    """No 5xx; and a refused request left both journals as they were."""
    service = app.extensions["learning_svc"]
    journals = service.jobs_journal, service.ratings_journal
    before = [journal.size() for journal in journals]
    response = case.call_and_validate(checks=(not_a_server_error,))
    if response.status_code >= 400:
        assert [journal.size() for journal in journals] == before, "a refused request wrote something"


@pytest.mark.slow
@positive.parametrize()
@FUZZ
def test_schemathesis_valid_requests_get_no_server_error(case, wsgi_app):
    call_and_check(case, wsgi_app)


@pytest.mark.slow
@negative.parametrize()
@FUZZ
def test_schemathesis_invalid_requests_get_no_server_error(case, wsgi_app):
    call_and_check(case, wsgi_app)


@pytest.mark.slow
def test_schemathesis_follows_the_links_between_operations(tmp_path):
    """Stateful: record a job, then read, rate, clear, amend it and fetch its outputs through the
    OpenAPI links (real job ids, not random ones), in sequences; no step gets a server error."""
    runs = iter(range(10**6))

    class FreshEachRun:
        """The WSGI app, replaced by one over an empty data dir before each run: hypothesis
        replays a failing sequence, which only works if the state it starts from is the same."""

        def __init__(self):
            self.app = None
            self.reset()

        def reset(self):
            if self.app is not None:
                self.app.extensions["learning_svc"].close()
            self.app = create_app(Settings(data_dir=tmp_path / f"stateful-{next(runs)}"))

        def __call__(self, environ, start_response):
            return self.app(environ, start_response)

    wsgi = FreshEachRun()
    schema = schemathesis.from_wsgi("/api/openapi.json", wsgi)
    machine = schema.as_state_machine()
    followed = []

    class Checked(machine):
        def setup(self):
            wsgi.reset()

        def _add_results_to_targets(self, targets, results):
            # schemathesis 3.39 puts each result into the bundle of its link by overriding
            # hypothesis' _add_result_to_targets, which hypothesis 6.1xx renamed to this: bridge it.
            for result in results:
                target = self._get_target_for_result(result) if result is not None else None
                if target is not None:
                    super()._add_results_to_targets((target,), [result])

        def transform(self, result, direction, case):
            # A link copies a value from a response into the path as it is (schemathesis 3.39
            # percent-encodes only the values it generates), and a job id may hold '?', '#' or
            # '%' (SPEC §1.1): '/api/jobs/?' made the test client raise before any request.
            case = super().transform(result, direction, case)
            for location, name, _ in direction.parameters:
                value = (case.path_parameters or {}).get(name) if location in (None, "path") else None
                if isinstance(value, str):
                    case.path_parameters[name] = quote(value, safe="")
            return case

        def validate_response(self, response, case, additional_checks=()):
            followed.append(case.operation.definition.raw.get("operationId"))
            case.validate_response(response, checks=(not_a_server_error,))

    try:
        Checked.run(
            settings=hypothesis_settings(
                max_examples=max(EXAMPLES // 3, 8),
                stateful_step_count=6,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
        )
    finally:
        wsgi.app.extensions["learning_svc"].close()
    assert {"recordJob", "getJob", "rateJob"} <= set(followed)
