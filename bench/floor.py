"""The HTTP floor of a single-record POST: the service's waitress server (serving.make_server:
the same Adjustments, threads and dispatcher) answering POST /api/jobs (and a rating's PUT)
and doing nothing else, with a bare WSGI app ("waitress") or a Flask route ("flask"). What a
request costs before the service does any of its own work.

    python -m bench.floor waitress|flask PORT      (prints "serving" once it listens)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import orjson

from learning_svc import serving
from learning_svc.config import Settings

ANSWER = orjson.dumps({"job_id": "floor", "status": "created"})


def wsgi_app(environ, start_response):
    orjson.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
    start_response("201 CREATED", [("Content-Type", "application/json"), ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


def flask_app():
    from flask import Flask, Response, request

    app = Flask("floor")

    @app.post("/api/jobs")
    def post():
        orjson.loads(request.get_data())
        return Response(ANSWER, 201, mimetype="application/json")

    @app.put("/api/jobs/<job_id>/rating")
    def rate(job_id):
        orjson.loads(request.get_data())
        return Response(ANSWER, 200, mimetype="application/json")

    return app


def main(kind: str, port: int) -> None:
    app = wsgi_app if kind == "waitress" else flask_app()
    settings = Settings(data_dir=Path(tempfile.gettempdir()), threads=8)  # as bench.Server runs the service
    server = serving.make_server(app, settings, host="127.0.0.1", port=port)
    print("serving", flush=True)
    server.run()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
