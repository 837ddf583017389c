"""Shared pytest fixtures: real loopback servers (moto S3, GCS emulator, HTTP file/fault server).

Server fixtures never skip: if moto or the emulator cannot start, the fixture fails with the
server's log. Session-scoped servers are shared; the function-scoped fixtures hand each test a
fresh bucket, or the HTTP servers reset (objects, faults, stats).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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
