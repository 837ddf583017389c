"""Shared pytest fixtures: real loopback servers (moto S3, GCS emulator, HTTP file/fault server).

Server fixtures never skip: if moto or the emulator cannot start, the fixture fails with the
server's log. Session-scoped servers are shared; the function-scoped fixtures hand each test a
fresh bucket, or the HTTP servers reset (objects, faults, stats).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# gcsfs swaps in ExtendedGcsFileSystem at import unless this is "false"; against the emulator
# that retries a gRPC lookup for ~60 s per call. It must be set before anything imports gcsfs.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import pytest

from aiofolio.testing import (
    AWS_TEST_ENV,
    FaultServer,
    GcsEmulator,
    MotoServer,
    ThreadedServer,
)

if TYPE_CHECKING:
    from aiofolio.testing.dfbundles import DatafolioBundle
    from aiofolio.testing.nginx import NginxServer

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's S3 on 127.0.0.1 (session); AWS env set to fake credentials, proxies removed."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_TEST_ENV.items():
            mp.setenv(name, value)
        for name in _PROXY_VARS:
            mp.delenv(name, raising=False)
        server = MotoServer()
        server.start()  # raises ServerStartError with the log: an error, never a skip
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsEmulator]:
    """gcp-storage-emulator in memory on 127.0.0.1 (session)."""
    server = GcsEmulator()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_server: MotoServer) -> str:
    """A fresh, uniquely named bucket in moto."""
    return moto_server.create_bucket()


@pytest.fixture
def gcs_bucket(gcs_server: GcsEmulator) -> str:
    """A fresh, uniquely named bucket in the GCS emulator."""
    return gcs_server.create_bucket()


@pytest.fixture(scope="session")
def _http_thread() -> Iterator[ThreadedServer[FaultServer]]:
    with ThreadedServer(FaultServer()) as threaded:
        yield threaded


@pytest.fixture
def http_server(_http_thread: ThreadedServer[FaultServer]) -> Iterator[FaultServer]:
    """The HTTP file/fault server (its own thread and loop), empty: no objects, faults, stats."""
    server = _http_thread.server
    server.reset()
    yield server
    server.reset()  # also releases hanging requests


@pytest.fixture(scope="session")
def _fault_proxy_thread(moto_server: MotoServer) -> Iterator[ThreadedServer[FaultServer]]:
    proxy = FaultServer(upstream=moto_server.endpoint_url, on_replace=moto_server.put_path)
    with ThreadedServer(proxy) as threaded:
        yield threaded


@pytest.fixture
def fault_proxy(_fault_proxy_thread: ThreadedServer[FaultServer]) -> Iterator[FaultServer]:
    """A FaultServer proxying to ``moto_server``, without faults and with zeroed stats.

    Point S3 clients at it with ``moto_server.storage_options(endpoint_url=fault_proxy.url)``
    or ``moto_server.boto3_client(endpoint_url=fault_proxy.url)``.
    """
    proxy = _fault_proxy_thread.server
    proxy.reset()
    yield proxy
    proxy.reset()


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Every test gets its own cache folder, no ``AIOFOLIO_*``/``DATAFOLIO_*`` variable from the
    caller's environment, and no configure_cache() leftovers."""
    from aiofolio import config

    for name in list(os.environ):
        if name.startswith(("AIOFOLIO_", "DATAFOLIO_")):
            monkeypatch.delenv(name)
    folder = str(tmp_path_factory.mktemp("aiofolio-cache"))
    monkeypatch.setenv("AIOFOLIO_CACHE_DIR", folder)
    config.reset_configure()
    yield folder
    config.reset_configure()


# -- nginx, and bundles written by the real datafolio ---------------------------------------------
# (Real nginx processes on loopback ports; skipped with the reason when nginx is not installed.
# The datafolio bundles are written by ``datafolio.DataFolio`` itself: see
# ``aiofolio.testing.dfbundles``.)

NGINX_MISSING = (
    "nginx is not installed (not on PATH nor in /usr/sbin): .ci/run installs it with "
    "'apt-get install nginx' when it runs as root; elsewhere install nginx to run these tests"
)


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """The nginx executable; skips the test (with the reason) when nginx is not installed."""
    from aiofolio.testing.nginx import find_nginx

    found = find_nginx()
    if found is None:
        pytest.skip(NGINX_MISSING)
    return found


@pytest.fixture
def nginx_factory(
    nginx_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., NginxServer]]:
    """``start(root, *, gzip=False, etag=True)``: a running nginx serving ``root``.

    Each has its own config, pid file, temp folders and access log in a fresh temp folder;
    all are stopped after the test.
    """
    from aiofolio.testing.nginx import NginxServer

    started: list[NginxServer] = []

    def start(
        root: str | os.PathLike[str], *, gzip: bool = False, etag: bool = True
    ) -> NginxServer:
        work = tmp_path_factory.mktemp("nginx")
        server = NginxServer(root, work, gzip=gzip, etag=etag, binary=nginx_binary)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def datafolio_local_bundle(tmp_path: Path) -> DatafolioBundle:
    """Every item type, written by the real datafolio 2.3.0 to a local folder."""
    from aiofolio.testing.dfbundles import write_datafolio_bundle

    return write_datafolio_bundle(tmp_path / "df-local", tmp_path / "df-local-sources")


@pytest.fixture
def datafolio_s3_bundle(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> tuple[DatafolioBundle, str]:
    """Every item type, written by the real datafolio 2.3.0 to moto; (bundle, ``s3://`` URL).

    datafolio writes through cloudfiles, pointed at moto with its ``s3://http://HOST:PORT/``
    form; open the URL with ``moto_server.storage_options()``.
    """
    from aiofolio.testing.dfbundles import datafolio_s3_location, write_datafolio_bundle

    location = datafolio_s3_location(moto_server.endpoint_url, s3_bucket, "df-bundle")
    bundle = write_datafolio_bundle(location, tmp_path / "df-s3-sources")
    return bundle, f"s3://{s3_bucket}/df-bundle"
