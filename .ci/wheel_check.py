"""CI: build the wheel, install it in a fresh venv outside the repository, serve, POST and GET one job.

Proves that an installed package starts on its own (migrations and static files inside it),
without the checkout on sys.path.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, body: dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method="POST" if body is not None else "GET", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        raw = response.read()
        kind = response.headers.get("Content-Type", "")
        return response.status, json.loads(raw) if "json" in kind else raw.decode()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="learning-svc-wheel-") as tmp:
        tmp = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "dist"), str(REPO)],
            check=True,
        )
        wheel = next((tmp / "dist").glob("learning_svc-*.whl"))
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
        bin_dir = tmp / "venv" / ("Scripts" if os.name == "nt" else "bin")
        subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)], check=True)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LEARNING_SVC_", "PYTHONPATH"))}
        work = tmp / "elsewhere"  # not the checkout: nothing of the repository can be imported from here
        work.mkdir()
        server = subprocess.Popen(
            [str(bin_dir / "learning-svc"), "serve", "--port", str(port), "--data-dir", "data"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    print(server.stdout.read().decode(errors="replace"))
                    raise SystemExit(f"the installed server exited with {server.returncode}")
                try:
                    request(base + "/api/health")
                    break
                except OSError as error:
                    if time.monotonic() > deadline:
                        raise SystemExit("the installed server did not answer within 60 s") from error
                    time.sleep(0.2)
            status, summary = request(
                base + "/api/jobs",
                {
                    "job_id": "wheel-check",
                    "completed_at": 1764000000,
                    "run_config": {"prompt": "a castle <lora:detail:0.5>"},
                },
            )
            assert status == 201 and summary["job_id"] == "wheel-check", (status, summary)
            status, detail = request(base + "/api/jobs/wheel-check")
            assert status == 200 and detail["record"]["loras"] == [{"name": "detail", "weight": 0.5}], detail
            status, page = request(base + "/")
            assert status == 200 and "learning_svc" in page, page[:200]
            location = subprocess.run(
                [str(bin_dir / "python"), "-c", "import learning_svc; print(learning_svc.__file__)"],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            assert str(REPO) not in location, f"imported from the checkout: {location}"
            print(f"wheel check ok: {wheel.name} installed in {tmp / 'venv'} serves, records and lists a job")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
