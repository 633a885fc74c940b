"""`icdtransfer dashboard --serve`: the dashboard file only, to this machine's own names only,
checked with real HTTP requests against the real command."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path):
    reports = tmp_path / "reports"
    (reports / "tables").mkdir(parents=True)
    (reports / "dashboard.html").write_text("<html>the dashboard</html>", encoding="utf-8")
    (reports / "summary.json").write_text('{"micro_f": 0.7}')
    (reports / "tables" / "table2_tuned.csv").write_text("variant,micro_f\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "icdtransfer", "dashboard", "--serve", "--port", str(port),
         "--set", f"report.out_dir={reports}"],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(timeout=30)


def _get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_serves_the_dashboard_file_and_nothing_else(served: int) -> None:
    port = served
    for path in ("/", "/dashboard.html"):
        status, body = _get(port, path)
        assert (status, body) == (200, b"<html>the dashboard</html>")
    assert _get(port, "/dashboard.html", host=f"localhost:{port}")[0] == 200
    for path in ("/summary.json", "/tables/", "/tables/table2_tuned.csv", "/../summary.json"):
        status, body = _get(port, path)
        assert status == 404 and b"micro_f" not in body and b"table2" not in body


def test_rejects_other_host_names(served: int) -> None:
    # DNS rebinding: a web page on attacker.example resolving its name to 127.0.0.1
    port = served
    for host in (f"attacker.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", ""):
        status, body = _get(port, "/", host=host)
        assert status == 403 and b"dashboard" not in body
