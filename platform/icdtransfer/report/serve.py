"""`icdtransfer dashboard --serve`: one file on 127.0.0.1, to this machine's own names only.

The dashboard shows patient-derived results (no text, but still not for the network), so the
server answers `/` and `/dashboard.html` with that one file and 404 for every other path (no
directory listing, nothing else of `reports/`), and 403 when the Host header is not
127.0.0.1:PORT or localhost:PORT: a web page whose name an attacker points at 127.0.0.1 (DNS
rebinding) sends its own name as Host and gets nothing.
"""

from __future__ import annotations

import http.server
import logging
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

PATHS = ("/", "/dashboard.html")


def dashboard_server(page: Path, port: int) -> http.server.ThreadingHTTPServer:
    """A server bound to 127.0.0.1:`port` (0: any free port) that serves `page` only."""
    page = page.resolve()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    bound = server.server_address[1]
    server.page = page  # type: ignore[attr-defined]
    server.hosts = {f"127.0.0.1:{bound}", f"localhost:{bound}"}  # type: ignore[attr-defined]
    return server


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "icdtransfer"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        if self.headers.get("Host", "") not in self.server.hosts:  # type: ignore[attr-defined]
            self.send_error(403, "unexpected Host header")
            return
        if urlsplit(self.path).path not in PATHS:
            self.send_error(404)
            return
        content = self.server.page.read_bytes()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if body:
            self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("%s " + format, self.address_string(), *args)
