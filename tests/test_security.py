"""Never let a stranger in: Host allowlist (DNS rebinding), Origin (CSRF), JSON only, headers, token."""

from __future__ import annotations

import dataclasses
import http.client

import orjson
import pytest
import requests

from learning_svc import create_app, security
from learning_svc.config import Settings, SettingsError

from conftest import JSON
from procs import ServerProcess, cli_env, job, run_cli

TOKEN = "tok-3f9a1c77e2b54d0e9b1a"


def post(client, record: dict, **headers):
    return client.post("/api/jobs", data=orjson.dumps(record), headers={**JSON, **headers})


def log_size(settings) -> int:
    return settings.log_path.stat().st_size if settings.log_path.exists() else 0


# ---------------------------------------------------------------- Host (DNS rebinding)


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8765", "LOCALHOST:8765", "127.0.0.1", "127.0.0.1:8765", "[::1]", "[::1]:8765"]
)
def test_local_host_names_are_served(client, host):
    assert client.get("/api/health", headers={"Host": host}).status_code == 200
    assert client.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8765",
        "localhost.evil.example",
        "127.0.0.1.nip.io:8765",
        "127.0.0.2",
        "[::ffff:127.0.0.1]:8765",
        "0.0.0.0:8765",
        "localhost, evil.example",
        "",
        "[::1",
        # an outside run: these passed as 127.0.0.1 (the part before the last ':' was taken)
        "127.0.0.1:8765@evil.example",
        "127.0.0.1:8765, evil.example",
        "127.0.0.1:8765/evil",
        "127.0.0.1:http",
    ],
)
def test_foreign_host_is_403_on_every_route(client, settings, host):
    for method, path in [
        ("GET", "/"),
        ("GET", "/static/app.js"),
        ("GET", "/api/jobs"),
        ("GET", "/api/health"),
        ("GET", "/api/export"),
        ("GET", "/api/no-such-route"),
    ]:
        response = client.open(path, method=method, headers={"Host": host})
        assert response.status_code == 403, (path, host)
        assert response.json["error"]["code"] == "forbidden_host"
        # advice that can help: no "add it to the list" for what is no host name (an outside run)
        advice = "LEARNING_SVC_ALLOWED_HOSTS" in response.json["error"]["message"]
        assert advice == bool(security.hostname(host)), response.json
    response = post(client, job("rebound"), Host=host)
    assert response.status_code == 403 and response.json["error"]["code"] == "forbidden_host"
    assert log_size(settings) == 0


def test_configured_host_names_are_served(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", allowed_hosts=("Studio.LAN",))
    app = create_app(settings)
    try:
        client = app.test_client()
        assert client.get("/api/health", headers={"Host": "studio.lan:8765"}).status_code == 200
        assert post(client, job("lan"), Host="studio.lan:8765").status_code == 201
        assert client.get("/api/health", headers={"Host": "other.lan:8765"}).status_code == 403
    finally:
        app.extensions["learning_svc"].close()


def test_real_server_refuses_a_rebound_host(live_server):
    conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
    try:
        conn.request("GET", "/api/jobs", headers={"Host": f"attacker.example:{live_server.port}"})
        response = conn.getresponse()
        assert response.status == 403
        assert orjson.loads(response.read())["error"]["code"] == "forbidden_host"
    finally:
        conn.close()


def test_a_request_in_absolute_form_is_judged_by_the_host_it_names(live_server):
    """`GET http://evil.example/api/count` with a loopback Host was answered (an outside run):
    in the absolute form the target's host is the request's (RFC 9112 3.2.2), as a proxy sends it."""
    local = f"127.0.0.1:{live_server.port}"
    for target, expected in (
        ("http://evil.example/api/count", 403),
        (f"http://attacker.example:{live_server.port}/api/count?x=1", 403),
        (f"http://{local}/api/count", 200),
        ("/api/count?q=http://evil.example/", 200),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
        try:
            conn.request("GET", target, headers={"Host": local})
            response = conn.getresponse()
            body = orjson.loads(response.read())
            assert response.status == expected, (target, body)
            if expected == 403:
                assert body["error"]["code"] == "forbidden_host"
        finally:
            conn.close()


# ---------------------------------------------------------------- Origin (CSRF) and content type

FOREIGN_ORIGINS = [
    "http://evil.example",
    "http://localhost:8765.evil.example",
    "null",
    "http://127.0.0.1:9999",
    "https://127.0.0.1:1",
    "http://127.0.0.1:8765@evil.example",
    "file://",
    "ftp://localhost",
]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_writes_with_a_foreign_origin_are_403_and_write_nothing(client, settings, origin):
    assert post(client, job("mine")).status_code == 201
    size, ratings = log_size(settings), settings.ratings_path.exists()
    headers = {"Host": "127.0.0.1:8765", "Origin": origin}
    responses = [
        post(client, job("csrf"), **headers),
        client.put("/api/jobs/mine/rating", json={"rating": 0}, headers=headers),
        client.delete("/api/jobs/mine/rating", headers=headers),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403]
    assert {r.json["error"]["code"] for r in responses} == {"forbidden_origin"}
    assert log_size(settings) == size and settings.ratings_path.exists() == ratings


def test_same_origin_and_originless_writes_are_accepted(client):
    same = {"Host": "127.0.0.1:8765", "Origin": "http://127.0.0.1:8765"}
    assert post(client, job("page"), **same).status_code == 201
    assert client.put("/api/jobs/page/rating", json={"rating": 5}, headers=same).status_code == 200
    assert post(client, job("script")).status_code == 201  # the pipeline sends no Origin


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "text/json",
        "application/json; charset=latin-1",  # it was read as UTF-8 all the same
        "application/x-ndjson; charset=iso-8859-1",
    ],
)
def test_writes_need_a_json_content_type(client, settings, content_type):
    """In UTF-8: a charset=latin-1 body was accepted and read as UTF-8."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = orjson.dumps(job("typed"))
    response = client.post("/api/jobs", data=body, headers=headers)
    assert response.status_code == 415 and response.json["error"]["code"] == "unsupported_media_type"
    assert post(client, job("rated")).status_code == 201
    size = log_size(settings)
    assert client.put("/api/jobs/rated/rating", data=b'{"rating": 3}', headers=headers).status_code == 415
    assert client.delete("/api/jobs/rated/rating", data=b'{"source": "x"}', headers=headers).status_code == 415
    assert log_size(settings) == size and not settings.ratings_path.exists()
    charset = client.post("/api/jobs", data=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert charset.status_code == 201


def test_no_cors_headers_and_framing_denied(client):
    cross = {"Origin": "http://evil.example"}
    responses = [
        client.get("/api/jobs", headers=cross),
        client.get("/", headers=cross),
        client.options(
            "/api/jobs",
            headers={
                **cross,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        ),
    ]
    for response in responses:
        assert not [h for h, _ in response.headers if h.lower().startswith("access-control-")]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    page = client.get("/")
    csp = dict(
        part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";") if part.strip()
    )
    assert csp["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no other host
    assert "'none'" in csp["object-src"] and "unsafe" not in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"


# ---------------------------------------------------------------- token


def test_non_loopback_bind_without_token_refuses_to_start(tmp_path):
    for args, env in [
        (["--host", "0.0.0.0"], cli_env()),
        (["--host", "::"], cli_env()),
        ([], cli_env(LEARNING_SVC_HOST="0.0.0.0")),
        (["--host", "127.evil.example"], cli_env()),  # a name, not an address: it was taken for loopback
    ]:
        result = run_cli("serve", *args, "--port", "1", "--data-dir", str(tmp_path / "d"), env=env, timeout=30)
        assert result.returncode != 0, args
        assert "LEARNING_SVC_TOKEN" in result.stderr, result.stderr
        assert "serving" not in result.stdout


@pytest.fixture
def token_app(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", host="0.0.0.0", token=TOKEN)
    app = create_app(settings)
    yield app, settings
    app.extensions["learning_svc"].close()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        f"Bearer {TOKEN}x",
        f"bearer {TOKEN}x",
        TOKEN,
        f"Bearer {TOKEN[:-1]}",
        "Basic dXNlcjpwYXNz",
        f"Bearer  {TOKEN}",
    ],
)
def test_with_a_token_writes_without_it_are_401(token_app, authorization):
    app, settings = token_app
    client = app.test_client()
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = post(client, job("no-token"), **headers)
    assert response.status_code == 401 and response.json["error"]["code"] == "unauthorized"
    assert log_size(settings) == 0
    assert client.get("/api/jobs").status_code == 200  # reads stay open


def test_with_a_token_writes_with_it_pass(token_app):
    app, _ = token_app
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert post(client, job("with-token"), **auth).status_code == 201
    # The scheme is case-insensitive (RFC 9110 11.1); it was refused in any case but "Bearer".
    for scheme in ("bearer", "BEARER"):
        assert post(client, job(f"with-{scheme}"), Authorization=f"{scheme} {TOKEN}").status_code == 201
    assert client.put("/api/jobs/with-token/rating", json={"rating": 2}).status_code == 401
    assert client.put("/api/jobs/with-token/rating", json={"rating": 2}, headers=auth).status_code == 200
    assert client.delete("/api/jobs/with-token/rating").status_code == 401
    assert client.delete("/api/jobs/with-token/rating", headers=auth).status_code == 200


def test_the_token_is_in_no_response_and_no_log(tmp_path):
    server = ServerProcess(tmp_path / "d", env=cli_env(LEARNING_SVC_TOKEN=TOKEN)).start()
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        session = requests.Session()
        created = session.post(server.url + "/api/jobs", data=orjson.dumps(job("t")), headers={**JSON, **auth})
        assert created.status_code == 201
        denied = session.post(server.url + "/api/jobs", data=orjson.dumps(job("u")), headers=JSON)
        assert denied.status_code == 401
        responses = [created, denied] + [
            session.get(server.url + path)
            for path in (
                "/",
                "/static/app.js",
                "/static/style.css",
                "/api/health",
                "/api/openapi.json",
                "/api/jobs",
                "/api/jobs/t",
                "/api/facets",
                "/api/export",
                "/api/export?format=csv",
                "/api/ratings",
                "/nope",
            )
        ]
        responses.append(session.get(server.url + "/api/jobs", headers={"Host": "evil.example"}))
        for response in responses:
            assert TOKEN not in response.text, response.url
            assert not any(TOKEN in value for value in response.headers.values()), response.url
        assert responses[2].status_code == 200 and "text/html" in responses[2].headers["Content-Type"]
    finally:
        server.kill()
    assert TOKEN not in server.output()


# ---------------------------------------------------------------- output files (issue 14.4, 14.5, 14.7)


def _png(path, color=(10, 200, 30)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), color).save(path, "PNG")
    return path


def _record(client, job_id, outputs):
    assert post(client, {"job_id": job_id, "completed_at": 1_764_000_000, "outputs": outputs}).status_code == 201


def test_a_symlink_swapped_between_check_and_send_never_serves_another_file(client, settings, tmp_path):
    """The file was checked, then opened again by send_file: a symlink swapped in between served
    /etc/passwd as image/png. Now the handle that was checked is the one sent."""
    import os
    import threading

    image = _png(tmp_path / "real.png")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:SECRET\n" * 20)
    link = tmp_path / "swapped.png"
    link.symlink_to(image)
    _record(client, "race", [str(link)])
    stop = threading.Event()

    def swap():
        targets, n = (image, secret), 0
        while not stop.is_set():
            n += 1
            tmp = tmp_path / f"link-{n}.tmp"
            tmp.symlink_to(targets[n % 2])
            os.replace(tmp, link)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        bodies = [client.get("/api/jobs/race/outputs/0").get_data() for _ in range(600)]
        thumbs = [client.get("/api/jobs/race/outputs/0/thumbnail").get_data() for _ in range(100)]
    finally:
        stop.set()
        swapper.join()
    assert not [body for body in bodies + thumbs if b"SECRET" in body]
    assert any(body == image.read_bytes() for body in bodies)  # the real image was served too


def test_a_symlink_inside_the_output_root_may_not_lead_out_of_it(client, settings):
    root = settings.output_root
    outside = _png(root.parent / "elsewhere" / "private.png")
    inside = _png(root / "real" / "ok.png")
    (root / "out.png").symlink_to(outside)
    (root / "in.png").symlink_to(inside)
    (root / "dir-out").symlink_to(outside.parent, target_is_directory=True)
    _record(client, "links", ["out.png", "in.png", "dir-out/private.png", "real/ok.png"])
    answers = [client.get(f"/api/jobs/links/outputs/{n}") for n in range(4)]
    assert [a.headers.get("X-Learning-Placeholder") for a in answers] == ["missing", None, "missing", None]
    assert answers[1].get_data() == inside.read_bytes()


def test_confined_outputs_serve_absolute_paths_only_from_the_root_and_the_watched_folders(settings, tmp_path):
    """An outside run: a job naming `/tmp/OUT/secret.png` (or `<root>/../OUT/secret.png`) had
    the service serve that image, with the root set; on a shared machine any local process can
    write a job on a loopback bind without a token. LEARNING_SVC_OUTPUTS_CONFINED keeps every
    output inside the root and the watched folders; by default an absolute path may be anywhere."""
    root, watched = settings.output_root, tmp_path / "watched"
    secret = _png(tmp_path / "OUT" / "secret.png", (1, 1, 1))
    inside = _png(root / "run" / "ok.png", (2, 2, 2))
    seen = _png(watched / "w.png", (3, 3, 3))
    copied = _png(root / "OUT" / "kept.png", (4, 4, 4))  # the outside path's last parts, under the root
    _png(tmp_path / "OUT" / "kept.png", (5, 5, 5))
    (root / "run" / "link.png").symlink_to(secret)
    outputs = [
        str(secret),
        f"{root}/../OUT/secret.png",
        str(inside),
        str(seen),
        str(root / "run" / "link.png"),
        str(tmp_path / "OUT" / "kept.png"),
    ]
    confined = dataclasses.replace(settings, outputs_confined=True, watch=(watched,))
    for options, expected in (
        (confined, [None, None, inside, seen, None, copied]),
        (settings, [secret, secret, inside, seen, secret, tmp_path / "OUT" / "kept.png"]),
    ):
        app = create_app(dataclasses.replace(options, data_dir=tmp_path / f"data-{options.outputs_confined}"))
        try:
            client = app.test_client()
            _record(client, "abs", outputs)
            for n, want in enumerate(expected):
                answer = client.get(f"/api/jobs/abs/outputs/{n}")
                if want is None:
                    assert answer.headers.get("X-Learning-Placeholder") == "missing", (options.outputs_confined, n)
                else:
                    assert answer.get_data() == want.read_bytes(), (options.outputs_confined, n)
        finally:
            app.extensions["learning_svc"].close()
    with pytest.raises(SettingsError, match="set that too"):
        Settings(data_dir=tmp_path / "x", outputs_confined=True).check()
    # a word it does not know is refused, not taken for "off" (the final new-user run)
    environ = {"LEARNING_SVC_OUTPUT_ROOT": str(root), "LEARNING_SVC_DATA_DIR": str(tmp_path / "x")}
    for word, confined in (("1", True), ("On", True), ("yes", True), ("0", False), ("off", False), ("", False)):
        with pytest.MonkeyPatch.context() as env:
            for name, value in {**environ, "LEARNING_SVC_OUTPUTS_CONFINED": word}.items():
                env.setenv(name, value)
            assert Settings.from_env().outputs_confined is confined, word
    for word in ("enabled", "2"):
        with pytest.MonkeyPatch.context() as env:
            env.setenv("LEARNING_SVC_OUTPUTS_CONFINED", word)
            with pytest.raises(SettingsError, match="LEARNING_SVC_OUTPUTS_CONFINED"):
                Settings.from_env()


def test_another_system_s_output_path_is_found_under_the_output_root(client, settings):
    """A StableNew history from Windows names `C:\\Users\\rob\\StableNew\\output\\run\\img.png`:
    on Linux every image was a placeholder, even with the output folder copied under
    LEARNING_SVC_OUTPUT_ROOT (and on Windows once the installation had moved); StableNew's own
    `output\\run\\img.png` with the root at that output folder was not found either. The path's last
    parts are looked for under the root, as a relative path is: never out of it."""
    root = settings.output_root
    deep = _png(root / "output" / "run_1" / "img.png", (1, 2, 3))
    near = _png(root / "run_2" / "b.png", (4, 5, 6))
    moved = _png(root / "run_3" / "c.png", (7, 8, 9))
    _png(root / "flat.png", (3, 3, 3))
    cased, pic = _png(root / "run_7" / "img.png", (5, 5, 5)), _png(root / "run_8" / "pic.png", (6, 6, 6))
    stablenew = _png(root / "run_5" / "e.png", (9, 9, 9))  # StableNew's own relative path, the root at its output/
    secret = _png(root.parent / "elsewhere" / "run_4" / "d.png")
    (root / "run_4").symlink_to(secret.parent, target_is_directory=True)
    outputs = [
        "C:\\Users\\rob\\StableNew\\output\\run_1\\img.png",
        "\\\\nas\\share\\run_2\\b.png",
        "/home/ana/sd/gone/run_3/c.png",  # a POSIX path not on this machine (a folder moved)
        "D:\\x\\run_4\\d.png",  # a link under the root to a folder out of it
        "C:\\x\\..\\run_2\\b.png",
        "C:\\x\\run_9\\none.png",
        "output\\run_5\\e.png",
        "output/../run_5/e.png",
        f"C:\\ComfyUI\\{root.name}\\flat.png",  # ComfyUI's flat output folder, the root
        "C:\\x\\other\\flat.png",  # another folder's flat.png: not this one
        "run_6/flat.png",
        "C:\\x\\RUN_7\\IMG.PNG",  # Windows kept the case the history wrote; the copy here differs
        "Run_8/Pic.png",
    ]
    _record(client, "moved", outputs)
    answers = [client.get(f"/api/jobs/moved/outputs/{n}") for n in range(len(outputs))]
    placeholders = [a.headers.get("X-Learning-Placeholder") for a in answers]
    expected = [None, None, None, "missing", "missing", "missing", None, "missing", None, "missing", "missing"]
    assert placeholders == expected + [None, None]
    assert [a.get_data() for a in answers[-2:]] == [cased.read_bytes(), pic.read_bytes()]
    assert [a.get_data() for a in answers[:3]] == [deep.read_bytes(), near.read_bytes(), moved.read_bytes()]
    assert answers[6].get_data() == stablenew.read_bytes()
    thumbnail = client.get("/api/jobs/moved/outputs/0/thumbnail")
    assert thumbnail.mimetype == "image/jpeg" and "X-Learning-Placeholder" not in thumbnail.headers


def test_outputs_and_thumbnails_are_conditional(client, settings):
    _png(settings.output_root / "a.png")
    _record(client, "cond", ["a.png"])
    for path in ("/api/jobs/cond/outputs/0", "/api/jobs/cond/outputs/0/thumbnail"):
        first = client.get(path)
        assert first.status_code == 200 and first.headers["ETag"] and first.headers["Last-Modified"]
        again = client.get(path, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304 and again.get_data() == b""


def test_a_thumbnail_on_a_data_disk_that_cannot_be_written_is_still_served(client, settings):
    """The cache write was not caught: a full data disk made every thumbnail a 500."""
    _png(settings.output_root / "b.png")
    _record(client, "full", ["b.png"])
    (settings.data_dir / "thumbnails").write_bytes(b"not a folder")  # mkdir fails, as on a full disk
    response = client.get("/api/jobs/full/outputs/0/thumbnail")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert "X-Learning-Placeholder" not in response.headers


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("127.evil.example", False),
        ("127.0.0.1.nip.io.invalid", False),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("", False),
    ],
)
def test_loopback_is_an_address_not_a_prefix(host, loopback):
    assert Settings(host=host).is_loopback is loopback


def test_csv_export_writes_formula_like_text_as_text(client):
    """A prompt, pack or error beginning with = + - @ was written as it came: a spreadsheet
    opening the export ran it (CSV injection). Such text now starts with a `'`; numbers stay numbers."""
    import csv
    import io

    job = {
        "job_id": "csv-inj",
        "completed_at": 1_764_003_600,
        "packs": ["=1+2"],
        "prompt": '=HYPERLINK("http://example.invalid","x")',
        "negative_prompt": "-lowres",
        "seed": -1,
        "extra": {"error": "@SUM(1)"},
    }
    assert client.post("/api/jobs", json=job).status_code == 201
    rows = list(csv.DictReader(io.StringIO(client.get("/api/export?format=csv").get_data(as_text=True))))
    [row] = rows
    assert row["prompt"] == "'" + job["prompt"] and row["negative_prompt"] == "'-lowres"
    assert row["pack"] == "'=1+2" and row["seed"] == "-1"
    assert not any(value.startswith(("=", "+", "@")) for value in row.values())
    # A value with a carriage return alone is quoted: unquoted, it started a row of its own.
    lone_cr = {"job_id": "csv-cr", "completed_at": 1_764_003_601, "negative_prompt": "\r=2"}
    assert client.post("/api/jobs", json=lone_cr).status_code == 201
    rows = list(csv.DictReader(io.StringIO(client.get("/api/export?format=csv").get_data(as_text=True), newline="")))
    assert [row["job_id"] for row in rows] == ["csv-cr", "csv-inj"]
    assert rows[0]["negative_prompt"] == "'\r=2"


@pytest.mark.parametrize("allowed", ["", "studio-box"])
def test_the_token_hint_of_a_service_on_every_address_names_a_host_it_serves(tmp_path, allowed):
    """A new-user run: bound to 0.0.0.0 (the studio set-up) it said to open
    http://0.0.0.0:<port>/#token=..., which the Host check answers 403."""
    import re

    env = cli_env(LEARNING_SVC_HOST="0.0.0.0", LEARNING_SVC_TOKEN="t0ken", LEARNING_SVC_ALLOWED_HOSTS=allowed)
    server = ServerProcess(tmp_path / "learning", env=env).start()
    try:
        hint = re.search(r"open (http://([^:/]+):(\d+)/)#token=<LEARNING_SVC_TOKEN>", server.output())
        assert hint, server.output()
        assert hint.group(2) == (allowed or "127.0.0.1") and int(hint.group(3)) == server.port
        page = requests.get(server.url + "/", headers={"Host": f"{hint.group(2)}:{server.port}"}, timeout=10)
        assert page.status_code == 200, page.text
    finally:
        server.kill()
