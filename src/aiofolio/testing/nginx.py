"""A real nginx serving a folder on 127.0.0.1, for tests against a server aiofolio did not write.

This module owns :class:`NginxServer`: nginx run in the foreground as one process of the
invoking user (``daemon off; master_process off;``), so it needs no privilege and no system
file: its own config, pid file, temp folders and access log live in a work folder (a test's
``tmp_path``), it listens on a free unprivileged loopback port, and its error log goes to the
captured output of :class:`~aiofolio.testing.ManagedServer`. Options: ``gzip on`` (with
``gzip_types application/json application/octet-stream``, from the first byte) and ``etag``.
The access log records, per request, the method, path, status, body bytes and the headers that
matter here (Range, If-None-Match, If-Match, Accept-Encoding, the answer's Content-Encoding and
ETag): :meth:`NginxServer.requests` parses it.

On Linux the process is tied to this one (``PR_SET_PDEATHSIG``), so an nginx never outlives a
test run that was killed. :func:`find_nginx` tells whether nginx is installed at all.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._procs import LOOPBACK, ManagedServer

__all__ = ["NginxRequest", "NginxServer", "find_nginx"]

_SBIN = os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin"])

# Sets PR_SET_PDEATHSIG (SIGTERM) and execs the command: the kernel then ends the command when
# the process that started it dies, even by SIGKILL. argv: expected parent pid, command...
_EXEC_TIED = """
import ctypes, os, signal, sys
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
except (AttributeError, OSError):
    pass
if os.getppid() != parent:
    sys.exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""

_READY_PATH = "/.aiofolio-ready"
"""Answered 204 and not logged: the readiness probe leaves the access log empty."""

_TIE_TO_PARENT = sys.platform.startswith("linux")

_FIELDS = (
    "method",
    "path",
    "status",
    "bytes_sent",
    "range",
    "if_none_match",
    "if_match",
    "accept_encoding",
    "content_encoding",
    "etag",
)
_LOG_FORMAT = "|".join(
    [
        "$request_method",
        "$uri",
        "$status",
        "$body_bytes_sent",
        "$http_range",
        "$http_if_none_match",
        "$http_if_match",
        "$http_accept_encoding",
        "$sent_http_content_encoding",
        "$sent_http_etag",
    ]
)


def find_nginx() -> str | None:
    """The nginx executable: on PATH, else in the usual sbin folders; None if not installed."""
    return shutil.which("nginx") or shutil.which("nginx", path=_SBIN)


@dataclass(frozen=True)
class NginxRequest:
    """One line of the access log (``None`` where nginx logged ``-``)."""

    method: str
    path: str
    status: int
    bytes_sent: int
    range: str | None
    if_none_match: str | None
    if_match: str | None
    accept_encoding: str | None
    content_encoding: str | None
    etag: str | None

    @property
    def conditional(self) -> bool:
        """Whether the request carried If-None-Match or If-Match."""
        return self.if_none_match is not None or self.if_match is not None


def _parse_line(line: str) -> NginxRequest | None:
    parts = line.rstrip("\n").split("|")
    if len(parts) != len(_FIELDS):
        return None
    values: list[str | None] = [None if p in ("-", "") else p for p in parts]
    return NginxRequest(
        method=values[0] or "",
        path=values[1] or "",
        status=int(values[2] or 0),
        bytes_sent=int(values[3] or 0),
        range=values[4],
        if_none_match=values[5],
        if_match=values[6],
        accept_encoding=values[7],
        content_encoding=values[8],
        etag=values[9],
    )


class NginxServer(ManagedServer):
    """nginx serving ``root`` read-only on a free port of 127.0.0.1.

    Args:
        root: The folder served at ``/``.
        workdir: Where the config, pid file, temp folders and access log go (created).
        gzip: ``gzip on; gzip_types application/json application/octet-stream;``
            (``gzip_min_length 1``): nginx compresses for clients that accept gzip.
        etag: nginx's ``etag`` directive (strong ETags ``"mtime-size"``; weak on gzip answers).
        binary: The nginx executable (default: :func:`find_nginx`).
        startup_timeout: Seconds to wait until it answers.

    Raises:
        FileNotFoundError: nginx is not installed (callers skip on it).
    """

    name = "nginx"

    def __init__(
        self,
        root: str | os.PathLike[str],
        workdir: str | os.PathLike[str],
        *,
        gzip: bool = False,
        etag: bool = True,
        binary: str | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        found = binary or find_nginx()
        if found is None:
            raise FileNotFoundError("nginx is not installed (not on PATH nor in /usr/sbin)")
        self.binary = found
        self.root = Path(root).resolve()
        self.workdir = Path(workdir).resolve()
        self.gzip = gzip
        self.etag = etag
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        self.config_path = self.workdir / "nginx.conf"
        self.access_log = self.workdir / "access.log"
        self.pid_file = self.workdir / "nginx.pid"
        super().__init__(
            self._argv,
            ready_path=_READY_PATH,
            startup_timeout=startup_timeout,
            stop_timeout=5.0,
        )

    def _argv(self, port: int) -> Sequence[str]:
        self.config_path.write_text(self.config(port))
        conf = str(self.config_path)
        command = [self.binary, "-p", str(self.workdir), "-c", conf, "-e", "stderr"]
        if _TIE_TO_PARENT:
            return [sys.executable, "-c", _EXEC_TIED, str(os.getpid()), *command]
        return command

    def config(self, port: int) -> str:
        """The nginx.conf for ``port``."""
        tmp = self.workdir / "tmp"
        gzip = (
            "gzip on;\n    gzip_types application/json application/octet-stream;\n"
            "    gzip_min_length 1;\n    gzip_vary on;"
            if self.gzip
            else "gzip off;"
        )
        return f"""# written by aiofolio.testing.nginx for one test run
daemon off;
master_process off;
worker_processes 1;
pid {self.pid_file};
error_log stderr notice;
events {{
    worker_connections 256;
}}
http {{
    types {{
        application/json json;
        text/plain txt md;
        application/octet-stream bin parquet npy npz joblib skops pkl;
    }}
    default_type application/octet-stream;
    log_format aiofolio escape=none '{_LOG_FORMAT}';
    access_log {self.access_log} aiofolio;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    keepalive_timeout 30;
    etag {"on" if self.etag else "off"};
    {gzip}
    server {{
        listen {LOOPBACK}:{port};
        server_name localhost;
        root {self.root};
        location / {{
        }}
        location = {_READY_PATH} {{
            access_log off;
            return 204;
        }}
    }}
}}
"""

    def url_for(self, path: str) -> str:
        """The URL of ``path`` (relative to the served folder)."""
        return f"{self.endpoint_url}/{path.lstrip('/')}"

    def clear_log(self) -> None:
        """Empty the access log (nginx appends, so it keeps logging to the same file)."""
        if self.access_log.exists():
            with open(self.access_log, "r+b") as fh:
                fh.truncate(0)

    def requests(self, *, settle: float = 0.2) -> list[NginxRequest]:
        """The access log's requests, in order.

        nginx writes a line once a response is finished; ``settle`` seconds (bounded) are
        given for the last ones to land when the log is still growing.
        """
        deadline = time.monotonic() + settle
        last = -1
        while True:
            text = self.access_log.read_text() if self.access_log.exists() else ""
            if len(text) == last or time.monotonic() >= deadline:
                break
            last = len(text)
            time.sleep(0.02)
        out = []
        for line in text.splitlines():
            record = _parse_line(line)
            if record is not None:
                out.append(record)
        return out
