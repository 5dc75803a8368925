"""The README's examples do what it says: its curl commands and Python handlers run against the
real server, every `learning-svc` command line in it parses, and its Command line and
Settings sections name every command, option and variable the code has (and no other)."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
import requests

from learning_svc import cli

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
PACKAGE = Path(cli.__file__).parent


def code_blocks(language: str | None = None) -> list[str]:
    """The fenced blocks of the README, in order (those of one language if given)."""
    found = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.M | re.S)
    return [body for lang, body in found if language is None or lang == language]


def section(title: str) -> str:
    """The text under `## title`, up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def shell_commands(block: str) -> list[list[str]]:
    """A shell block's commands as words: continuations joined, comments dropped."""
    commands, pending = [], ""
    for line in block.replace("\\\n", " ").splitlines():
        pending += line + "\n"
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on on the next line
            continue
        commands += [words] if words else []
        pending = ""
    assert not pending, f"unclosed quote in {pending!r}"
    return commands


def curl_request(words: list[str], base_url: str) -> requests.Request:
    """What a `curl -X M URL -H h -d body` command sends, aimed at `base_url`."""
    assert words[0] == "curl"
    method, headers, data, url = "GET", {}, None, None
    rest = iter(words[1:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            data = next(rest)
            method = method if "-X" in words else "POST"
        elif word.startswith("http"):
            url = word.replace("http://127.0.0.1:8765", base_url)
        else:
            raise AssertionError(f"the test does not know curl's {word!r}: teach curl_request")
    return requests.Request(method, url, headers=headers, data=data)


def send(request: requests.Request) -> requests.Response:
    with requests.Session() as http:
        return http.send(request.prepare(), timeout=10)


def test_the_first_screens_curl_commands_do_what_their_comments_say(live_server):
    block = next(b for b in code_blocks("sh") if "curl -X POST" in b)
    post, put = (curl_request(words, live_server.url) for words in shell_commands(block))

    first = send(post)
    assert first.status_code == 201, first.text
    job_id = first.json()["job_id"]
    assert job_id == "3f2a9c1e7b4d"
    assert first.json()["model"] == "juggernautXL.safetensors [dd08fa32f9]"
    assert first.json()["loras"] == ["add-detail-xl"]

    # "posting the same record again is 200 and writes nothing"
    journal = live_server.settings.data_dir / "learning_log_v2.jsonl"
    size = journal.stat().st_size
    again = send(post)
    assert again.status_code == 200, again.text
    assert journal.stat().st_size == size

    # "the same job_id with other content is 409"
    post.data = post.data.replace('"steps": 30', '"steps": 31')
    assert '"steps": 31' in post.data
    assert send(post).status_code == 409
    assert journal.stat().st_size == size

    rated = send(put)
    assert rated.status_code == 200, rated.text
    assert live_server.http.get(f"{live_server.url}/api/jobs/{job_id}", timeout=10).json()["rating"] == 4


def _run_python_block(marker: str, base_url: str) -> dict:
    block = next(b for b in code_blocks("python") if marker in b)
    assert "http://127.0.0.1:8765" in block
    namespace: dict = {}
    exec(compile(block.replace("http://127.0.0.1:8765", base_url), "README.md", "exec"), namespace)
    return namespace


def test_the_pipeline_handler_records_and_rates_a_job(live_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its offline fallback folder is relative: logs/learning
    handlers = _run_python_block("# StableNew-style completion handler", live_server.url)
    started = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    job = SimpleNamespace(
        job_id="9b2e4c6a8d0f4e1a9c3b5d7f9e1a3c5b",
        started_at=started,
        completed_at=started.timestamp() + 14.5,
        prompt_packs=[SimpleNamespace(name="PORTRAIT_basic")],
        variant_index=1,
        variant_total=4,
        randomization_plan={"seed": "random"},
        stages=[SimpleNamespace(name="txt2img", config={"steps": 28}), SimpleNamespace(name="upscale", config={})],
        run_id="run-0042",
    )
    run_config = SimpleNamespace(to_dict=lambda: {"model": "sdxl_base.safetensors", "sampler": "Euler a", "seed": 7})
    result = SimpleNamespace(
        status="completed", image_paths=[tmp_path / "out" / "a.png"], stage_timings={"txt2img": 12.4, "upscale": 2.1}
    )

    handlers["on_job_completed"](job, run_config, result)
    handlers["on_user_rated"](job.job_id, 5)

    stored = live_server.http.get(f"{live_server.url}/api/jobs/{job.job_id}", timeout=10).json()["summary"]
    assert stored["status"] == "completed"
    assert stored["packs"] == ["PORTRAIT_basic"]
    assert (stored["variant_index"], stored["variant_total"]) == (1, 4)
    assert stored["model"] == "sdxl_base.safetensors"
    assert stored["steps"] == 28  # from the txt2img stage
    assert stored["started_at"] == started.timestamp()
    assert stored["outputs"] == [str(tmp_path / "out" / "a.png")]
    assert stored["run_id"] == "run-0042"
    assert stored["rating"] == 5
    assert not (tmp_path / "logs").exists()  # the service answered: nothing fell back offline


def test_the_stablenew_handler_records_a_job_from_its_snapshot(live_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    handlers = _run_python_block("njr = job.snapshot", live_server.url)
    snapshot = {
        "normalized_job": {
            "prompt_pack_id": "pack-7",
            "prompt_pack_name": "FANTASY_castles",
            "variant_index": 2,
            "variant_total": 3,
            "output_paths": ["output/Pipeline/castle_03.png"],
            "positive_prompt": "a castle on a hill <lora:detail_tweaker:0.6>",
            "base_model": "dreamshaper_8.safetensors",
        }
    }
    job = SimpleNamespace(
        job_id="c0ffee00c0ffee00c0ffee00c0ffee00",
        snapshot=snapshot,
        started_at=datetime(2026, 12, 6, 9, 0, 0),  # naive: UTC, as StableNew's
        completed_at=datetime(2026, 12, 6, 9, 0, 20),
    )

    handlers["on_job_completed"](job, {"success": False, "error": "CUDA out of memory", "run_id": "r1"})

    stored = live_server.http.get(f"{live_server.url}/api/jobs/{job.job_id}", timeout=10).json()["summary"]
    assert stored["status"] == "failed"
    assert stored["error"] == "CUDA out of memory"
    assert stored["packs"] == ["FANTASY_castles"]
    assert (stored["variant_index"], stored["variant_total"]) == (2, 3)
    assert stored["model"] == "dreamshaper_8.safetensors"
    assert stored["loras"] == ["detail_tweaker"]
    assert stored["completed_at"] == datetime(2026, 12, 6, 9, 0, 20, tzinfo=UTC).timestamp()
    assert stored["outputs"] == ["output/Pipeline/castle_03.png"]
    assert stored["run_id"] == "r1"


def _readme_command_lines() -> list[list[str]]:
    """Every `learning-svc …` command in the README's shell blocks and inline code, as the
    words after `learning-svc` (environment assignments before it dropped)."""
    lines = [words for block in code_blocks("sh") for words in shell_commands(block)]
    lines += [shlex.split(code) for code in re.findall(r"`((?:\.venv/bin/)?learning-svc [^`]+)`", README)]
    found = []
    for words in lines:
        names = [i for i, word in enumerate(words) if word.endswith("learning-svc")]
        if names:
            found.append(words[names[0] + 1 :])
    return found


def test_every_learning_svc_command_line_in_the_readme_parses():
    lines = _readme_command_lines()
    assert len(lines) >= 10, lines
    for words in lines:
        name, *args = words
        command = cli.main.commands.get(name)
        assert command is not None, f"README runs `learning-svc {name}`, which does not exist"
        # The placeholders of a usage example stand for a value of the right kind.
        args = [{"<password>": "x", "N": "2"}.get(arg, arg) for arg in args]
        try:
            command.make_context(f"learning-svc {name}", list(args), resilient_parsing=False)
        except click.exceptions.Exit:
            pass
        except click.UsageError as error:
            pytest.fail(f"README's `learning-svc {shlex.join(words)}` does not parse: {error.format_message()}")


def test_the_command_line_section_names_every_command_and_option():
    text = section("Command line")
    documented = dict(re.findall(r"^- `(\w+)((?: [^`]*)?)`", text, flags=re.M))
    assert set(documented) == set(cli.main.commands), "commands in README's Command line vs the CLI"
    for name, command in cli.main.commands.items():
        options = {opt for param in command.params for opt in param.opts if opt.startswith("--")}
        shown = set(re.findall(r"--[a-z-]+", documented[name]))
        assert shown == options, f"`{name}`: README shows {sorted(shown)}, the CLI has {sorted(options)}"


def test_the_settings_table_names_every_variable_the_code_reads():
    read = set()
    for path in PACKAGE.rglob("*.py"):
        read |= set(re.findall(r"\"(LEARNING_SVC_[A-Z_]+)\"", path.read_text(encoding="utf-8")))
    table = set(re.findall(r"^\| `(LEARNING_SVC_[A-Z_]+)`(?: / `(LEARNING_SVC_[A-Z_]+)`)?", section("Settings"), re.M))
    documented = {name for pair in table for name in pair if name}
    assert read, "no LEARNING_SVC_ variable found in the code"
    assert documented == read, (
        f"only in the code: {sorted(read - documented)}; only in README: {sorted(documented - read)}"
    )
