"""Host / Origin / token checks and protective response headers (SPEC §4 "Local by default")."""

from __future__ import annotations

import hmac
import re
from urllib.parse import urlsplit

from flask import Flask, request

from .config import LOOPBACK_HOSTS, Settings

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# A Host header as RFC 9110 has it: a name or an IPv4 address, or an IPv6 one in brackets, and
# an optional port. Anything else (`127.0.0.1:8765@evil.example`, two headers joined by a comma)
# names no host (it passed as 127.0.0.1).
HOST_FORM = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(:[0-9]{1,5})?")


def hostname(host_header: str) -> str:
    """`[::1]:8765` -> `::1`, `Example.COM:80` -> `example.com`; "" when it is not a host."""
    match = HOST_FORM.fullmatch(host_header.strip().lower())
    return "" if match is None else match.group(1).strip("[]")


def allowed_hosts(settings: Settings) -> set[str]:
    hosts = {*LOOPBACK_HOSTS, *(h.lower() for h in settings.allowed_hosts)}
    if settings.host not in ("0.0.0.0", "::", ""):
        hosts.add(settings.host.lower())
    return hosts


def _refuse_host(host: str) -> Refused:
    if not hostname(host):  # no host name to add to the list
        return Refused(403, "forbidden_host", f"Host {host[:100]!r} is not a host name with an optional port")
    return Refused(
        403, "forbidden_host", f"Host {host[:100]!r} is not served here (add it to LEARNING_SVC_ALLOWED_HOSTS)"
    )


def check_request(settings: Settings, allowed: set[str]) -> None:
    host = request.headers.get("Host", "")
    if hostname(host) not in allowed:
        raise _refuse_host(host)
    target = request.environ.get("REQUEST_URI") or ""
    if "://" in target.partition("?")[0]:  # the absolute form (a proxy's): its host is the request's (RFC 9112 3.2.2)
        named = urlsplit(target).netloc
        if hostname(named) not in allowed:
            raise _refuse_host(named)
    if request.method not in WRITE_METHODS:
        return
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or parts.netloc.lower() != host.lower() or parts.scheme not in ("http", "https"):
            raise Refused(403, "forbidden_origin", f"cross-origin write from {origin[:100]!r} refused")
    if settings.token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 9110 11.1): "bearer" is as good as "Bearer".
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise Refused(
                401, "unauthorized", "this server needs 'Authorization: Bearer <LEARNING_SVC_TOKEN>' on writes"
            )
    mimetype = request.mimetype
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):  # it was read as UTF-8 all the same
        raise Refused(415, "unsupported_media_type", f"send the body as UTF-8, not charset={charset[:40]}")
    if mimetype == "application/x-ndjson" and request.method == "POST" and request.path == "/api/jobs":
        return  # a batch of records (one per line)
    if mimetype != "application/json" and not (
        request.method == "DELETE" and not mimetype and not request.content_length
    ):
        message = "send the body as JSON with 'Content-Type: application/json'"
        if request.method == "POST" and request.path == "/api/jobs":
            message += ", or many records, one per line, with 'Content-Type: application/x-ndjson'"
        raise Refused(415, "unsupported_media_type", message)


def install(app: Flask, settings: Settings) -> None:
    allowed = allowed_hosts(settings)

    @app.before_request
    def _guard():
        check_request(settings, allowed)

    @app.after_request
    def _headers(response):
        if request.method == "OPTIONS" and response.status_code == 200 and not response.content_length:
            # Flask's own answer: an empty text/html 200; say "nothing to send" (the Allow header is the answer)
            response.status_code = 204
            del response.headers["Content-Type"]
            del response.headers["Content-Length"]
        response.headers.update(SECURITY_HEADERS)
        return response
