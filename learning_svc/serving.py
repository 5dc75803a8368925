"""waitress, configured so that no client can freeze the service.

- Room for many clients: a high connection limit (Settings.connection_limit); idle
  keep-alive connections are closed after Settings.idle_seconds, and a request whose
  headers are not in within Settings.header_seconds (or which is not complete within
  REQUEST_SECONDS) is dropped, so connections held open or trickled byte by byte cannot
  fill the server.
- Writes never wait on readers: POST, PUT, PATCH and DELETE have worker threads of their
  own (Settings.write_threads), so clients that stop reading a long export cannot take the
  threads a pipeline's write needs; and a response that a client has stopped reading for
  Settings.stall_seconds is abandoned, which frees its thread.
- waitress' own error answers (a body over the limit, a malformed request) have the
  service's JSON error shape and its security headers.
"""

from __future__ import annotations

import threading
import time

import orjson
from waitress import trigger
from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

from . import records
from .config import Settings
from .security import SECURITY_HEADERS

REQUEST_SECONDS = 300.0  # from a request's first byte to the end of its body (a 64 MiB batch on a slow link)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Parser(HTTPRequestParser):
    def __init__(self, adj):
        super().__init__(adj)
        self.began = time.monotonic()


class JsonErrorTask(ErrorTask):
    """waitress' error responses in the SPEC §2 shape, with the security headers."""

    CODES = {400: "bad_request", 413: "too_large", 431: "headers_too_large", 500: "internal", 501: "not_implemented"}

    def execute(self):
        error = self.request.error
        message = f"{error.reason}: {error.body}"
        if error.code == 413:  # waitress' own "exceeds max_body of 67174400": as the service's batch limit says it
            message = f"the body is larger than {records.size_text(self.channel.server.limits.max_batch_bytes)}"
        body = orjson.dumps(
            {
                "error": {
                    "code": self.CODES.get(error.code, "http_error"),
                    "message": message,
                    "fields": [],
                }
            }
        )
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), *SECURITY_HEADERS.items()])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    parser_class = _Parser
    error_task_class = JsonErrorTask

    def _flush_outbufs_below_high_watermark(self):
        """As waitress does, but a client that stops reading cannot hold the thread forever."""
        if self.total_outbufs_len <= self.adj.outbuf_high_watermark:
            return
        with self.outbuf_lock:
            _, exception = self._flush_exception(self._flush_some, do_close=False)
            if exception:
                self.server.pull_trigger()
                self.outbuf_lock.wait(1.0)
                return
            waiting_since, left = time.monotonic(), self.total_outbufs_len
            while self.connected and self.total_outbufs_len > self.adj.outbuf_high_watermark:
                self.server.pull_trigger()
                self.outbuf_lock.wait(1.0)
                if self.total_outbufs_len < left:  # the client takes some: it is slow, not gone
                    waiting_since, left = time.monotonic(), self.total_outbufs_len
                elif time.monotonic() - waiting_since > self.server.limits.stall_seconds:
                    self.will_close = True
                    self.server.pull_trigger()
                    raise ClientDisconnected("the client stopped reading the response")


class _Trigger(trigger.trigger):
    """waitress' wake-up pipe, never written to once closed: a worker thread still finishing a
    response after the server stopped would write b"x" into whatever file has since taken the
    pipe's fd number (a restarted service's SQLite index: "file is not a database")."""

    def __init__(self, map):
        self._pulling = threading.Lock()
        super().__init__(map)

    def _physical_pull(self):
        with self._pulling:
            if not self._closed:  # close() sets it before _close() frees the fds under the lock
                super()._physical_pull()

    def _close(self):
        with self._pulling:
            super()._close()


class _Server(TcpWSGIServer):
    channel_class = _Channel
    limits: Settings = Settings()

    def __init__(self, application, map, **kwargs):
        super().__init__(application, map, **kwargs)
        self.trigger.close()  # waitress' own, replaced before the loop ever polls it
        self.trigger = _Trigger(map)

    def maintenance(self, now):
        """waitress closes idle connections; also those whose request takes too long to arrive."""
        super().maintenance(now)
        clock = time.monotonic()
        for channel in list(self.active_channels.values()):
            request = channel.request
            if request is None or request.completed:
                continue
            age = clock - getattr(request, "began", clock)
            if age > REQUEST_SECONDS or (not request.headers_finished and age > self.limits.header_seconds):
                channel.will_close = True


class SplitDispatcher:
    """Two worker pools: one for writes, one for everything else (a channel is queued with its request)."""

    def __init__(self, read_threads: int, write_threads: int):
        self.reads, self.writes = ThreadedTaskDispatcher(), ThreadedTaskDispatcher()
        self.reads.set_thread_count(read_threads)
        self.writes.set_thread_count(write_threads)

    def add_task(self, channel):
        request = channel.requests[0] if getattr(channel, "requests", None) else None
        pool = self.writes if request is not None and request.command in WRITE_METHODS else self.reads
        pool.add_task(channel)

    def set_thread_count(self, count):
        self.reads.set_thread_count(count)

    def shutdown(self, cancel_pending=True, timeout=5):
        first = self.reads.shutdown(cancel_pending, timeout)
        return self.writes.shutdown(cancel_pending, timeout) and first


def make_server(app, settings: Settings, host: str | None = None, port: int | None = None, sock=None):
    """The waitress server for `app` (call .run() to serve; its task_dispatcher.shutdown() and
    the channels' close to stop). `sock`: a listening socket to accept from (serve --workers)."""
    adj = Adjustments(
        host=host or settings.host,
        port=port if port is not None else settings.port,
        threads=settings.threads,
        connection_limit=settings.connection_limit,
        channel_timeout=settings.idle_seconds,
        cleanup_interval=1,
        outbuf_high_watermark=4 * 2**20,
        max_request_body_size=settings.max_batch_bytes + 65536,
        ident="learning_svc",
        clear_untrusted_proxy_headers=True,
        asyncore_use_poll=True,
    )
    dispatcher = SplitDispatcher(settings.threads, settings.write_threads)
    socket_map: dict = {}
    if sock is not None:
        sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
        server = _Server(
            app, socket_map, _sock=sock, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo, bind_socket=False
        )
        server.limits = settings
        return server
    servers = [_Server(app, socket_map, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo) for sockinfo in adj.listen]
    for server in servers:
        server.limits = settings
    if len(servers) == 1:
        return servers[0]
    listening = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(
        socket_map, adj=adj, effective_listen=listening, dispatcher=dispatcher, log_info=servers[0].log_info
    )
