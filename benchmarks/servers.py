"""Loopback servers for the benchmarks, started on first use and stopped at the end of the run.

:class:`ServerPool` hands out moto (S3), the GCS emulator and shaped-link servers
(:class:`ShapingServer`: ``benchmarks/_shaper.py`` running aiofolio's ``FaultServer`` in its own
process; :meth:`ServerPool.http_plain` is the same file server with no shaping). Each is
started once, registered on the runner's ``ExitStack`` so it is stopped at the end of the run,
on errors and on Ctrl-C; a server that failed to start is not retried. Every server binds
127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from aiofolio.testing import (
    GCS_TEST_ENV,
    GcsEmulator,
    ManagedServer,
    MotoServer,
    free_port,
    http_call,
    unique_bucket_name,
)

from .context import Profile

SHAPER_SCRIPT = Path(__file__).resolve().with_name("_shaper.py")

S = TypeVar("S")


class ShapingServer(ManagedServer):
    """A shaped link (latency + per-connection bandwidth) in its own process.

    Args:
        name: For logs.
        latency_s: Delay before each response.
        bandwidth: Bytes/s per response body.
        upstream: Forward every request to this loopback URL (reverse-proxy mode); or
        objects: ``{"/path": file}`` to serve from memory (file-server mode), and/or
        trees: ``{"/prefix": folder}``: every file under the folder, as ``/prefix/<relpath>``
            (for bundles of many files: the command line stays short).
        max_lifetime_s: The process exits by itself after this long.
        startup_timeout: Seconds to wait for it to answer (loading many files takes a while).
    """

    def __init__(
        self,
        name: str,
        *,
        latency_s: float,
        bandwidth: float | None,
        upstream: str | None = None,
        objects: Mapping[str, Path] | None = None,
        trees: Mapping[str, Path] | None = None,
        max_lifetime_s: float = 3600.0,
        startup_timeout: float = 60.0,
    ) -> None:
        self.latency_s = latency_s
        self.bandwidth = bandwidth
        self.upstream = upstream
        self.admin_port: int | None = None

        def argv(port: int) -> list[str]:
            self.admin_port = free_port()
            cmd = [
                sys.executable,
                str(SHAPER_SCRIPT),
                "--port",
                str(port),
                "--admin-port",
                str(self.admin_port),
                "--latency",
                repr(latency_s),
                "--max-lifetime",
                repr(max_lifetime_s),
            ]
            if bandwidth:
                cmd += ["--bandwidth", repr(bandwidth)]
            if upstream:
                cmd += ["--upstream", upstream]
            for path, file in (objects or {}).items():
                cmd += ["--object", f"{path}={file}"]
            for prefix, folder in (trees or {}).items():
                cmd += ["--tree", f"{prefix}={folder}"]
            return cmd

        # "/" is the JSON listing in file mode; moto and the GCS emulator both answer it < 500.
        # The name ends up in a log file name: keep it to safe characters.
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "shaper"
        super().__init__(
            argv, name=safe, ready_path="/", startup_timeout=startup_timeout, stop_timeout=5.0
        )

    def url_for(self, path: str) -> str:
        return self.endpoint_url + (path if path.startswith("/") else "/" + path)

    def _admin(self, method: str, path: str) -> dict[str, Any]:
        if self.admin_port is None:
            raise RuntimeError(f"{self.name} is not running")
        status, body = http_call(method, f"http://127.0.0.1:{self.admin_port}{path}")
        if status != 200:
            raise RuntimeError(f"{self.name} admin {path}: HTTP {status}")
        out: dict[str, Any] = json.loads(body)
        return out

    def stats(self) -> dict[str, Any]:
        """``{"requests", "bytes", "by_method": {M: {requests, bytes, ranged}}, "statuses"}``."""
        return self._admin("GET", "/stats")

    def reset_stats(self) -> None:
        self._admin("POST", "/reset")

    def _after_start(self) -> None:
        self.reset_stats()  # forget the readiness probes

    @contextlib.contextmanager
    def counting(self) -> Any:
        """``with srv.counting() as c:`` ... ``c["stats"]`` holds the requests made inside."""
        self.reset_stats()
        box: dict[str, Any] = {}
        yield box
        box["stats"] = self.stats()


def describe_requests(stats: Mapping[str, Any], ops: int) -> str:
    """``"1.0 GET/op"``-style note from :meth:`ShapingServer.stats` over ``ops`` operations."""
    if ops <= 0:
        return ""
    if not stats.get("requests"):
        return "no remote requests"
    parts = []
    for method, m in sorted(stats.get("by_method", {}).items()):
        per = m["requests"] / ops
        ranged = f" ({m['ranged'] / ops:g} ranged)" if m.get("ranged") else ""
        parts.append(f"{per:g} {method}{ranged}")
    return "requests/op: " + ", ".join(parts)


class ServerPool:
    """Servers started on first use; all stopped when ``stack`` closes.

    Args:
        stack: The runner's ``contextlib.ExitStack``.
        profile: For the link shaping.
        log: Progress output.
        max_lifetime_s: Upper bound for the shaper processes' lives.
    """

    def __init__(
        self,
        stack: contextlib.ExitStack,
        profile: Profile,
        log: Callable[[str], None] = print,
        max_lifetime_s: float = 3600.0,
    ) -> None:
        self._stack = stack
        self.profile = profile
        self._log = log
        self._max_lifetime_s = max_lifetime_s
        self._started: dict[str, Any] = {}
        self._failed: dict[str, BaseException] = {}

    def _get(self, key: str, make: Callable[[], S], start: Callable[[S], object]) -> S:
        if key in self._started:
            return self._started[key]  # type: ignore[no-any-return]
        if key in self._failed:
            raise RuntimeError(f"{key} failed to start earlier") from self._failed[key]
        self._log(f"  starting {key} ...")
        server = make()
        try:
            start(server)
        except BaseException as exc:
            self._failed[key] = exc
            raise
        finally:
            # stop() is safe on a server that never started; register either way
            self._stack.callback(self._stop, key, server)
        self._started[key] = server
        return server

    def _stop(self, key: str, server: Any) -> None:
        try:
            server.stop()
        except Exception as exc:  # keep stopping the others
            self._log(f"  stopping {key} failed: {exc!r}")

    @property
    def started(self) -> list[str]:
        return list(self._started)

    # -- S3 -----------------------------------------------------------------------------------

    def moto(self) -> MotoServer:
        return self._get("moto", MotoServer, lambda s: s.start())

    def s3_bucket(self) -> str:
        """One bucket in moto for the whole run."""
        moto = self.moto()
        if "s3-bucket" not in self._started:
            self._started["s3-bucket"] = moto.create_bucket(unique_bucket_name("bench"))
        return str(self._started["s3-bucket"])

    def s3_shaped(self) -> ShapingServer:
        """The shaped link as a reverse proxy in front of moto."""
        moto = self.moto()
        return self._shaper("s3-shaped", upstream=moto.endpoint_url)

    # -- GCS ----------------------------------------------------------------------------------

    def gcs(self) -> GcsEmulator:
        for k, v in GCS_TEST_ENV.items():  # before anything imports gcsfs
            os.environ.setdefault(k, v)
        return self._get("gcs-emulator", GcsEmulator, lambda s: s.start())

    def gcs_bucket(self) -> str:
        emu = self.gcs()
        if "gcs-bucket" not in self._started:
            self._started["gcs-bucket"] = emu.create_bucket(unique_bucket_name("bench"))
        return str(self._started["gcs-bucket"])

    def gcs_shaped(self) -> ShapingServer:
        """The shaped link as a reverse proxy in front of the GCS emulator."""
        emu = self.gcs()
        return self._shaper("gcs-shaped", upstream=emu.endpoint_url)

    # -- plain HTTP ---------------------------------------------------------------------------

    def http_shaped(
        self,
        key: str,
        objects: Mapping[str, Path] | None = None,
        *,
        trees: Mapping[str, Path] | None = None,
    ) -> ShapingServer:
        """A shaped file server holding ``objects`` (``{"/path": file}``) and the files of
        ``trees`` (``{"/prefix": folder}``), one per ``key``."""
        return self._shaper(f"http-shaped:{key}", objects=objects, trees=trees)

    def http_plain(self, key: str, *, trees: Mapping[str, Path]) -> ShapingServer:
        """The same file server in its own process with **no** shaping (loopback speed): no
        latency, no bandwidth cap. Still counts requests. One per ``key``."""
        return self._shaper(f"http-plain:{key}", trees=trees, shaped=False, startup_timeout=300.0)

    def _shaper(
        self,
        key: str,
        *,
        upstream: str | None = None,
        objects: Mapping[str, Path] | None = None,
        trees: Mapping[str, Path] | None = None,
        shaped: bool = True,
        startup_timeout: float = 60.0,
    ) -> ShapingServer:
        p = self.profile
        return self._get(
            key,
            lambda: ShapingServer(
                key,
                latency_s=p.link_latency_s if shaped else 0.0,
                bandwidth=p.link_bandwidth if shaped else None,
                upstream=upstream,
                objects=objects,
                trees=trees,
                max_lifetime_s=self._max_lifetime_s,
                startup_timeout=startup_timeout,
            ),
            lambda s: s.start(),
        )
