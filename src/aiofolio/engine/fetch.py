"""Downloads of payloads into local files, verified while they stream.

Owns: :func:`download_verified`, which streams an object into a unique temp file, computes
MD5 and size on the way (no second pass), checks them against what the manifest records,
downloads once more on a mismatch, and only then moves the file into place with
``os.replace``. Bytes that fail verification are never published or returned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets

import anyio.to_thread

from aiofolio.backends import Backend
from aiofolio.bundle import HashingWriter
from aiofolio.errors import ChecksumMismatchError

__all__ = ["download_verified"]

log = logging.getLogger("aiofolio.fetch")


async def _download_once(backend: Backend, url: str, tmp: str) -> tuple[str, int]:
    writer = await anyio.to_thread.run_sync(lambda: HashingWriter(tmp, fsync=False))
    try:
        async for chunk in backend.iter_range(url):
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    await anyio.to_thread.run_sync(writer.close)
    return writer.md5_hex, writer.size


async def download_verified(
    backend: Backend,
    url: str,
    dest: str,
    *,
    md5: str | None = None,
    size: int | None = None,
    attempts: int = 2,
) -> str:
    """Download ``url`` to the local path ``dest``, verified; return ``dest``.

    Args:
        backend: where to read from.
        url: the object.
        dest: the final local path (its folder must exist).
        md5: the expected MD5 hex, if the manifest records one.
        size: the expected size, if the manifest records one.
        attempts: downloads tried before a mismatch raises.

    Raises:
        ChecksumMismatchError: the bytes did not verify ``attempts`` times.
    """
    folder = os.path.dirname(dest) or "."
    for attempt in range(1, attempts + 1):
        tmp = os.path.join(folder, f".{os.path.basename(dest)}.{secrets.token_hex(6)}.part")
        try:
            got_md5, got_size = await _download_once(backend, url, tmp)
            bad = []
            if size is not None and got_size != size:
                bad.append(f"size {got_size} != {size}")
            if md5 is not None and got_md5 != md5.lower():
                bad.append(f"md5 {got_md5} != {md5}")
            if not bad:
                os.replace(tmp, dest)
                return dest
            log.warning(
                "download of %s did not verify (%s), attempt %d of %d",
                url,
                ", ".join(bad),
                attempt,
                attempts,
            )
            if attempt == attempts:
                raise ChecksumMismatchError(
                    f"{url} did not verify after {attempts} downloads: {', '.join(bad)}"
                )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    raise AssertionError("unreachable")  # pragma: no cover
