"""Loopback servers for aiofolio's tests, benchmarks and demo (owns no library logic).

Everything here binds or talks to 127.0.0.1 only.

- :class:`MotoServer`, :class:`GcsEmulator`: S3 (moto) and GCS (gcp-storage-emulator) as
  subprocesses on free ports, built on :class:`ManagedServer`.
- :class:`FileServer`: an in-memory HTTP object server (ETag, ranges, conditionals, PUT,
  DELETE) with per-path request and byte counts (:class:`ServerStats`).
- :class:`FaultServer` + :class:`Fault`: the same server with injected latency, bandwidth caps,
  errors, resets, truncation, corruption, mid-download replacement and hangs; also a reverse
  proxy in front of another loopback server (e.g. moto).
- :class:`ThreadedServer`: hosts a file or fault server on its own thread and event loop.
- :class:`NginxServer` (:mod:`.nginx`): a real nginx serving a folder, as a foreground
  process with its config, pid file, temp folders and access log under a work folder.
- :mod:`.dfbundles`: bundles written by the real ``datafolio`` package (imported on use).
"""

from __future__ import annotations

from ._procs import (
    AWS_TEST_ENV,
    GCS_TEST_ENV,
    GcsEmulator,
    ManagedServer,
    MotoServer,
    ServerStartError,
    free_port,
    http_call,
    loopback_env,
    unique_bucket_name,
)
from .faultserver import Fault, FaultServer
from .fileserver import (
    FileServer,
    RequestRecord,
    ResponseShape,
    ServerStats,
    StoredObject,
    ThreadedServer,
    parse_range,
)
from .nginx import NginxRequest, NginxServer, find_nginx

__all__ = [
    "AWS_TEST_ENV",
    "GCS_TEST_ENV",
    "Fault",
    "FaultServer",
    "FileServer",
    "GcsEmulator",
    "ManagedServer",
    "MotoServer",
    "NginxRequest",
    "NginxServer",
    "RequestRecord",
    "ResponseShape",
    "ServerStartError",
    "ServerStats",
    "StoredObject",
    "ThreadedServer",
    "find_nginx",
    "free_port",
    "http_call",
    "loopback_env",
    "parse_range",
    "unique_bucket_name",
]
