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
    from flask import Flask, send_from_directory

    from . import api, security
    from .service import Service

    settings = settings or Settings.from_env()
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_batch_bytes  # the largest body; a JSON one is checked for less
    app.json.sort_keys = False
    app.extensions["learning_svc"] = service = service or Service(settings).start()
    if settings.watch and service.watcher is None:
        from .watch import FolderWatcher

        service.watcher = FolderWatcher(
            service, list(settings.watch), settings.output_root or Path.cwd(), poll=settings.watch_poll
        ).start()
    app.extensions["learning_svc_settings"] = settings
    security.install(app, settings)
    api.install_error_handlers(app)
    app.register_blueprint(api.bp)

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html", max_age=0)

    return app
