"""Subprocess servers on 127.0.0.1 for tests, benchmarks and the demo.

This module owns the lifecycle of external server processes: picking a free loopback port,
starting the command with a sanitized environment (no proxies, fake cloud credentials, no cloud
metadata lookups), polling until it answers with a time bound, and stopping it by its own pid
(terminate, then kill after a bound). It provides two concrete servers:

- :class:`MotoServer`: ``python -m moto.server`` (an S3 API), with bucket creation through a
  boto3 client (``s3fs.mkdir(bucket)`` fails in ``us-east-1``), ``/moto-api/reset``, and the
  ``storage_options`` for s3fs. By default its child applies :func:`patch_moto_ranged_get`
  first, so a ranged GET reads only the requested bytes (test infrastructure, not the library).
- :class:`GcsEmulator`: ``python -m gcp_storage_emulator start --in-memory``, with bucket
  creation through its JSON API, ``/wipe``, and the ``storage_options`` for gcsfs.

Nothing here talks to anything but 127.0.0.1. Third-party clients (boto3, gcsfs, s3fs) are
imported lazily, so importing :mod:`aiofolio.testing` needs none of them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

logger = logging.getLogger("aiofolio.testing")

LOOPBACK = "127.0.0.1"

#: Fake AWS credentials and region used for moto. Never valid anywhere else.
AWS_TEST_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}

#: Environment for code that talks to the GCS emulator. gcsfs >= 2025 swaps in an
#: ``ExtendedGcsFileSystem`` at import unless this is "false"; against an emulator it retries a
#: gRPC bucket-type lookup for about 60 s per operation. It must be set before gcsfs is imported.
GCS_TEST_ENV: Mapping[str, str] = {
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
}

_PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# Runs a Python module as __main__ in a child that exits when its parent process dies (even by
# SIGKILL, or os._exit from a timeout), so no server outlives the test run that started it.
_WATCHDOG = """
import os, runpy, signal, sys, threading, time
parent = int(sys.argv[1])
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    os._exit(1)
threading.Thread(target=watch, daemon=True).start()
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def python_module_argv(module: str, *args: str) -> list[str]:
    """``python -m module args...``, wrapped so the child dies with this process."""
    return [sys.executable, "-c", _WATCHDOG, str(os.getpid()), module, *args]


def _display(argv: Sequence[str]) -> str:
    if len(argv) > 4 and argv[1] == "-c" and argv[2].endswith(_WATCHDOG):
        argv = [argv[0], "-m", *argv[4:]]
    return " ".join(argv)


_MOTO_PATCHED_MARK = "aiofolio: moto patched, ranged GETs read only their bytes"
# Run in moto's child before ``moto.server`` (see MotoServer(fast_ranges=True)). It loads this
# file by path, so the child does not import the aiofolio package (only the stdlib and moto).
_MOTO_PRELUDE = f"""
import importlib.util as _u
_spec = _u.spec_from_file_location("_aiofolio_moto_patch", {os.path.abspath(__file__)!r})
_mod = _u.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
if _mod.patch_moto_ranged_get():
    import sys as _sys
    _sys.stderr.write({_MOTO_PATCHED_MARK!r} + "\\n")
    _sys.stderr.flush()
del _u, _spec, _mod
"""


def patch_moto_ranged_get() -> bool:
    """Make moto answer a ranged ``GetObject`` by reading only the requested bytes.

    moto (5.x) builds every GetObject response from ``FakeKey.value``, which reads and copies
    the whole object out of its spooled temp file, and only then slices out the ``Range``. A
    ranged GET of 8 MiB from a 256 MiB object therefore copies 256 MiB, so N parallel ranged
    GETs cost the server N whole-object copies. Measured here on a 256 MiB object, 32 ranged
    GETs of 8 MiB, 8 in flight, straight to moto: 8.1 s unpatched, 0.32 s patched (one plain
    GET: 0.3 s). This patch is applied in moto's own process, by :class:`MotoServer` only
    (test and benchmark infrastructure, never the library):

    - during a ``GET`` with a ``Range`` header, ``FakeKey.value`` read inside
      ``S3Response.get_object`` returns a lazy stand-in with the object's length whose slice
      seeks and reads just that slice from the spooled file (under the key's lock), so moto's
      own range handling (parsing, 416s, ``Content-Range``, dropped checksums) is unchanged;
    - wherever moto does not slice it (no range applied: multi-range, unparsable range,
      ``partNumber``), ``S3Response.key_response`` turns it back into the full bytes, so
      every response is byte for byte what unpatched moto sends.

    Headers, ETags, status codes and conditionals are untouched. If moto's internals do not
    look as expected, nothing is patched (a warning is logged) and moto works as shipped.

    Returns:
        True when the patch is in place (also when it already was).
    """
    import threading

    try:
        models = importlib.import_module("moto.s3.models")
        responses = importlib.import_module("moto.s3.responses")
    except ImportError:
        logger.warning("moto.s3 not importable: ranged GETs not patched")
        return False
    key_cls: Any = getattr(models, "FakeKey", None)
    resp_cls: Any = getattr(responses, "S3Response", None)
    prop = vars(key_cls).get("value") if isinstance(key_cls, type) else None
    if (
        not isinstance(prop, property)
        or prop.fget is None
        or resp_cls is None
        or not callable(getattr(resp_cls, "get_object", None))
        or not callable(getattr(resp_cls, "key_response", None))
    ):
        logger.warning("moto internals changed (FakeKey.value / S3Response): not patched")
        return False
    if getattr(resp_cls, "_aiofolio_ranged_get", False):
        return True

    state = threading.local()
    full_value: Callable[[Any], bytes] = prop.fget

    class _KeyBytes:
        """Stands in for ``FakeKey.value``: its length, and slices read from the file."""

        __slots__ = ("key",)

        def __init__(self, key: Any) -> None:
            self.key = key

        def __len__(self) -> int:
            return int(self.key.size)

        def __getitem__(self, index: Any) -> Any:
            if isinstance(index, slice):
                start, stop, step = index.indices(len(self))
                if step == 1:
                    with self.key.lock:
                        buf = self.key._value_buffer
                        buf.seek(start)
                        return bytes(buf.read(max(0, stop - start)))
            return full_value(self.key)[index]

        def materialize(self) -> bytes:
            return full_value(self.key)

    def value(self: Any) -> Any:
        if getattr(state, "lazy", False):
            return _KeyBytes(self)
        return full_value(self)

    orig_get_object = resp_cls.get_object
    orig_key_response = resp_cls.key_response

    def get_object(self: Any) -> Any:
        state.lazy = getattr(state, "ranged", False)
        try:
            return orig_get_object(self)
        finally:
            state.lazy = False

    def key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        state.ranged = request.method == "GET" and bool(request.headers.get("range"))
        try:
            status, out_headers, body = orig_key_response(self, request, full_url, headers)
        finally:
            state.ranged = state.lazy = False
        if isinstance(body, _KeyBytes):
            body = body.materialize()
        return status, out_headers, body

    key_cls.value = property(value, prop.fset, prop.fdel, prop.__doc__)
    resp_cls.get_object = get_object
    resp_cls.key_response = key_response
    resp_cls._aiofolio_ranged_get = True
    logger.debug("moto patched: ranged GETs read only the requested bytes")
    return True


class ServerStartError(RuntimeError):
    """A managed server did not become ready in time, or exited; the message holds its log."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def loopback_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``os.environ`` without proxy settings, with ``NO_PROXY`` for loopback.

    Args:
        extra: Variables to set on top.
    """
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = f"{LOOPBACK},localhost"
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def http_call(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """One HTTP request to a loopback URL without any proxy; returns (status, body).

    HTTP error statuses are returned, not raised. Connection errors raise ``OSError``.
    """
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"refusing non-loopback URL {url!r}")
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with _NO_PROXY_OPENER.open(req, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return int(exc.code), bytes(body)


def unique_bucket_name(prefix: str = "test") -> str:
    """A bucket name valid on S3 and GCS and unique within the process run."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kernel problem
            logger.error("process %d did not die after SIGKILL", proc.pid)


_MS = TypeVar("_MS", bound="ManagedServer")


class ManagedServer:
    """A command bound to 127.0.0.1 on a free port, started and stopped by this object.

    ``argv(port)`` builds the command line. :meth:`start` spawns it with its output in an
    unlinked temporary file (a file, not a pipe, so a chatty server never blocks), then polls
    ``ready_path`` over HTTP until the server answers with a status below 500, or fails with
    :class:`ServerStartError` holding the log once ``startup_timeout`` has passed or the process
    exited. A port race ("address in use") is retried on a new port, a bounded number of times.
    :meth:`stop` terminates the process by pid, waits ``stop_timeout``, then kills it.

    Use it as a context manager or call :meth:`start` / :meth:`stop`. A finalizer also stops the
    process if the object is dropped or the interpreter exits.
    """

    name: str = "server"

    def __init__(
        self,
        argv: Callable[[int], Sequence[str]],
        *,
        name: str | None = None,
        ready_path: str = "/",
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        start_attempts: int = 3,
    ) -> None:
        self._argv = argv
        if name is not None:
            self.name = name
        self._ready_path = ready_path
        self._env = loopback_env(env)
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._start_attempts = max(1, start_attempts)
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log_path: str | None = None  # only where an open file cannot be unlinked
        self._log: BinaryIO | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # -- properties ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (only while running)."""
        if self._port is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._port

    @property
    def host(self) -> str:
        """Always 127.0.0.1."""
        return LOOPBACK

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """Same as :attr:`endpoint_url`."""
        return self.endpoint_url

    @property
    def pid(self) -> int | None:
        """The pid of the server process, or None when not started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_text(self, limit: int = 20_000) -> str:
        """The last ``limit`` characters of the server's combined stdout/stderr."""
        fh = self._log
        if fh is None:
            return ""
        try:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self: _MS) -> _MS:
        """Start the process and wait until it is ready. Idempotent while running."""
        if self.running:
            return self
        last_error: ServerStartError | None = None
        for _ in range(self._start_attempts):
            try:
                self._start_once(free_port())
                self._after_start()
                return self
            except ServerStartError as exc:
                last_error = exc
                log = self.log_text()
                self.stop()
                if "address already in use" not in log.lower():
                    break
        assert last_error is not None
        raise last_error

    def _after_start(self) -> None:
        """Hook for subclasses: runs once the server answers."""

    def _start_once(self, port: int) -> None:
        fd, path = tempfile.mkstemp(prefix=f"aiofolio-{self.name}-", suffix=".log")
        # Read through a description of our own (the child's shares the write offset), and
        # unlink at once so no log file is left behind even if this process gets killed.
        self._log = open(path, "rb")  # noqa: SIM115 - closed in stop()
        try:
            os.unlink(path)
        except OSError:
            self._log_path = path
        argv = [str(a) for a in self._argv(port)]
        logger.debug("starting %s: %s", self.name, _display(argv))
        with os.fdopen(fd, "wb") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,  # a Ctrl-C in the terminal does not hit it first
            )
        self._port = port
        self._finalizer = weakref.finalize(self, _stop_process, self._proc, self._stop_timeout)
        deadline = time.monotonic() + self._startup_timeout
        url = f"http://{LOOPBACK}:{port}{self._ready_path}"
        last = "no attempt"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {code} before it was ready "
                    f"(command: {_display(argv)}).\n--- log ---\n{self.log_text()}"
                )
            if "address already in use" in self.log_text(4000).lower():
                # the emulator's server thread dies but its main thread lives on: fail fast
                raise ServerStartError(
                    f"{self.name} could not bind port {port}.\n--- log ---\n{self.log_text()}"
                )
            try:
                status, _ = http_call("GET", url, timeout=1.0)
                if status < 500:
                    logger.debug("%s ready on port %d (pid %d)", self.name, port, self._proc.pid)
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = repr(exc)
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self.name} not ready at {url} after {self._startup_timeout:.1f} s "
                    f"(last attempt: {last}; command: {_display(argv)}).\n"
                    f"--- log ---\n{self.log_text()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the process by pid (kill after ``stop_timeout``) and drop its log."""
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process once
            self._finalizer = None
        self._proc = None
        self._port = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._log_path)
            self._log_path = None

    def __enter__(self: _MS) -> _MS:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"{self.endpoint_url} pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.name} {state}>"


class MotoServer(ManagedServer):
    """moto's S3 API as a subprocess: ``python -m moto.server -H 127.0.0.1 -p PORT``.

    The child exits by itself if this process dies without stopping it.

    moto honours ``If-Match`` / ``If-None-Match`` on GET, HEAD and PUT (``If-None-Match: *``).
    Every client made here uses the fake credentials of :data:`AWS_TEST_ENV` and the loopback
    endpoint, so nothing can reach AWS.

    Args:
        startup_timeout: Seconds to wait for the server to answer.
        stop_timeout: Seconds between terminate and kill on stop.
        fast_ranges: Apply :func:`patch_moto_ranged_get` in the child, so a ranged GET reads
            only its bytes instead of copying the whole object (same responses). False runs
            moto exactly as shipped (for before/after measurements).
    """

    name = "moto"
    region = "us-east-1"

    def __init__(
        self,
        *,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        fast_ranges: bool = True,
    ) -> None:
        self.fast_ranges = fast_ranges
        self.ranges_patched = False

        def argv(port: int) -> list[str]:
            cmd = python_module_argv("moto.server", "-H", LOOPBACK, "-p", str(port))
            if fast_ranges:
                cmd[2] = _MOTO_PRELUDE + cmd[2]
            return cmd

        super().__init__(
            argv,
            ready_path="/moto-api/",
            env=AWS_TEST_ENV,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )
        self._client: Any = None

    def _after_start(self) -> None:
        # The child writes the mark to its log (before moto's own output) once it patched.
        self.ranges_patched = self.fast_ranges and _MOTO_PATCHED_MARK in self.log_text()
        if self.fast_ranges and not self.ranges_patched:
            logger.warning("moto runs unpatched: ranged GETs copy the whole object")

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` (and fsspec ``storage_options``).

        Args:
            endpoint_url: Talk to this URL instead of moto, e.g. a fault proxy in front of it.
        """
        return {
            "endpoint_url": endpoint_url or self.endpoint_url,
            "key": AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
            "secret": AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"region_name": self.region},
            "config_kwargs": {"proxies": {}},
        }

    def boto3_client(self, endpoint_url: str | None = None, **config: Any) -> Any:
        """A new boto3 S3 client for this server (or ``endpoint_url``); needs boto3.

        Args:
            endpoint_url: Talk to this URL instead of moto, e.g. a fault proxy in front of it.
            **config: Extra ``botocore.config.Config`` arguments (e.g. ``retries``).
        """
        boto3 = importlib.import_module("boto3")
        botocore_config = importlib.import_module("botocore.config")
        session = boto3.session.Session(
            aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=self.region,
        )
        config.setdefault("proxies", {})
        return session.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            config=botocore_config.Config(**config),
        )

    @property
    def client(self) -> Any:
        """A shared boto3 S3 client straight to moto (created on first use)."""
        if self._client is None:
            self._client = self.boto3_client()
        return self._client

    def s3fs(self, endpoint_url: str | None = None, **kwargs: Any) -> Any:
        """A new ``s3fs.S3FileSystem`` for this server (no instance cache); needs s3fs."""
        s3fs = importlib.import_module("s3fs")
        opts = self.storage_options(endpoint_url)
        opts.update(kwargs)
        opts.setdefault("skip_instance_cache", True)
        return s3fs.S3FileSystem(**opts)

    def create_bucket(self, name: str | None = None, *, versioned: bool = False) -> str:
        """Create a bucket through boto3 and return its name (unique when not given)."""
        bucket = name or unique_bucket_name()
        self.client.create_bucket(Bucket=bucket)
        if versioned:
            self.client.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
        return bucket

    def put_object(self, bucket: str, key: str, data: bytes) -> str:
        """Write an object directly to moto; returns its (quoted) ETag."""
        etag: str = self.client.put_object(Bucket=bucket, Key=key, Body=data)["ETag"]
        return etag

    def put_path(self, path: str, data: bytes) -> None:
        """Write ``data`` at a path-style ``/bucket/key`` (a fault-proxy ``on_replace`` hook)."""
        bucket, _, key = path.lstrip("/").partition("/")
        if not key:
            raise ValueError(f"not a /bucket/key path: {path!r}")
        self.put_object(bucket, key, data)

    def reset(self) -> None:
        """Drop every bucket and object (``POST /moto-api/reset``)."""
        status, body = http_call("POST", f"{self.endpoint_url}/moto-api/reset")
        if status != 200:
            raise RuntimeError(f"moto reset failed: HTTP {status}: {body[:200]!r}")

    def stop(self) -> None:
        """Stop the server (see :meth:`ManagedServer.stop`) and drop the shared client."""
        if self._client is not None:
            self._client.close()
            self._client = None
        super().stop()


class GcsEmulator(ManagedServer):
    """gcp-storage-emulator as a subprocess, in memory (``python -m gcp_storage_emulator start``).

    The child exits by itself if this process dies without stopping it.

    Known limits (checked against its source): it is a single-threaded ``http.server`` speaking
    HTTP/1.0 with a listen backlog of 5; it ignores preconditions (``ifGenerationMatch`` ...);
    it ignores suffix ranges (``bytes=-N`` returns the whole object with 200); it has no HEAD
    (501). It does return ``generation``, ``md5Hash``, ``crc32c`` and ``etag`` in metadata, and
    ``generation`` changes on every write.
    """

    name = "gcs-emulator"
    project = "test-project"

    def __init__(self, *, startup_timeout: float = 30.0, stop_timeout: float = 5.0) -> None:
        super().__init__(
            lambda port: python_module_argv(
                "gcp_storage_emulator",
                "start",
                "--host",
                LOOPBACK,
                "--port",
                str(port),
                "--in-memory",
            ),
            ready_path="/",
            env=GCS_TEST_ENV,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``gcsfs.GCSFileSystem``: endpoint, anonymous token, project.

        Build the filesystem with ``gcsfs.core.GCSFileSystem`` (or set
        ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` before importing gcsfs), see
        :data:`GCS_TEST_ENV`.
        """
        return {
            "endpoint_url": endpoint_url or self.endpoint_url,
            "token": "anon",
            "project": self.project,
        }

    def gcsfs(self, endpoint_url: str | None = None, **kwargs: Any) -> Any:
        """A new plain ``gcsfs.core.GCSFileSystem`` for the emulator; needs gcsfs."""
        core = importlib.import_module("gcsfs.core")
        opts = self.storage_options(endpoint_url)
        opts.update(kwargs)
        opts.setdefault("skip_instance_cache", True)
        return core.GCSFileSystem(**opts)

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket through the JSON API and return its name (unique when not given)."""
        bucket = name or unique_bucket_name()
        status, body = http_call(
            "POST",
            f"{self.endpoint_url}/storage/v1/b?project={self.project}",
            data=json.dumps({"name": bucket}).encode(),
            headers={"Content-Type": "application/json"},
        )
        if status != 200:
            raise RuntimeError(f"bucket {bucket!r} not created: HTTP {status}: {body[:200]!r}")
        return bucket

    def reset(self) -> None:
        """Drop every bucket and object (``GET /wipe``)."""
        status, body = http_call("GET", f"{self.endpoint_url}/wipe")
        if status != 200:
            raise RuntimeError(f"emulator wipe failed: HTTP {status}: {body[:200]!r}")
