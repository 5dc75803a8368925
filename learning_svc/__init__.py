"""learning_svc: the flight recorder and rating switchboard of a Stable Diffusion pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings

if TYPE_CHECKING:  # the pipeline imports learning_svc.client: the package must not pull in Flask
    from flask import Flask

STATIC = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None, service=None) -> Flask:
    """The Flask app factory: builds the service for `settings` and starts its committer."""
    import threading

    from flask import Flask, send_from_directory

    from . import api, images, security
    from .service import Service

    settings = settings or Settings.from_env()
    images.quiet_size_warnings()
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_batch_bytes  # the largest body; a JSON one is checked for less
    app.json.sort_keys = False
    app.extensions["learning_svc"] = service = service or Service(settings).start()
    if settings.watch and settings.watchers and service.watcher is None:
        from .watch import FolderWatcher

        service.watcher = FolderWatcher(
            service,
            list(settings.watch),
            settings.output_root,
            poll=settings.watch_poll,
            delay=settings.watch_delay,
            publish_to=settings.watch_state,
        ).start()
    app.extensions["learning_svc_settings"] = settings
    app.extensions["learning_svc_exports"] = threading.BoundedSemaphore(api.export_slots(settings.threads))
    security.install(app, settings)
    _compress_json(app)
    api.install_error_handlers(app)
    app.register_blueprint(api.bp)

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html", max_age=0)

    return app


COMPRESS_ABOVE = 1400  # bytes: smaller answers fit a packet anyway


def _compress_json(app) -> None:
    """gzip JSON answers for clients that take it (a listing page: 38 KB, 5 KB gzipped), and the
    page's own HTML, JS and CSS (116 KB of JS, 30 KB gzipped; compressed once per file)."""
    import gzip

    from flask import request

    static_gz: dict[str, bytes] = {}  # ETag of a static file -> its gzipped bytes (the files never change)

    def _gzip_static(response):
        etag = response.headers.get("ETag")
        if response.status_code != 200 or not etag or "Content-Range" in response.headers:
            return response
        if etag not in static_gz:
            response.direct_passthrough = False  # read the file once
            static_gz[etag] = gzip.compress(response.get_data(), compresslevel=9)
        response.direct_passthrough = False
        response.set_data(static_gz[etag])
        response.headers["Content-Encoding"] = "gzip"
        if not etag.startswith("W/"):  # not the same bytes as the identity form (as nginx's gzip does)
            response.headers["ETag"] = f"W/{etag}"
        response.vary.add("Accept-Encoding")
        return response

    @app.after_request
    def _gzip(response):
        if (
            response.mimetype in ("text/javascript", "application/javascript", "text/css", "text/html")
            and "gzip" in request.headers.get("Accept-Encoding", "").lower()
            and "Content-Encoding" not in response.headers
        ):
            return _gzip_static(response)
        if (
            response.mimetype not in ("application/json", "application/x-ndjson")
            or response.direct_passthrough
            or response.is_streamed
            or "gzip" not in request.headers.get("Accept-Encoding", "").lower()
            or "Content-Encoding" in response.headers
        ):
            return response
        data = response.get_data()
        if len(data) < COMPRESS_ABOVE:
            return response
        response.set_data(gzip.compress(data, compresslevel=5))
        response.headers["Content-Encoding"] = "gzip"
        response.vary.add("Accept-Encoding")
        return response
