"""The local-filesystem backend (plain paths and ``file://`` URLs).

Owns: path handling for local bundles, etags derived from ``(size, mtime_ns, inode)``, atomic
puts (a unique temp file in the target folder, then ``os.replace``, mode 0644), and conditional
puts serialised by a per-path lock file kept outside the bundle. Blocking calls run in worker
threads so the event loop never stalls on a slow disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat as stat_mod
import tempfile
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.to_thread
import filelock

from aiofolio.backends._errors import translate
from aiofolio.backends.base import (
    NOT_MODIFIED,
    STREAM_CHUNK,
    BaseBackend,
    FetchResult,
    NotModifiedType,
    ObjectStat,
    RangeInfo,
    RangeReader,
    check_open_range,
    check_pin,
)
from aiofolio.errors import (
    ChecksumMismatchError,
    PreconditionFailedError,
    RemoteNotFoundError,
    TransientError,
)

__all__ = ["LocalBackend", "local_path"]

_FILE_MODE = 0o644
_TMP_NAME = re.compile(r"\..+\.\d+-[0-9a-f]{12}\.tmp")
"""The temporary files of puts in progress (never listed)."""


def local_path(url: str) -> str:
    """The filesystem path of a plain path or ``file://`` URL (made absolute)."""
    if url.startswith("file://"):
        parsed = urllib.parse.urlsplit(url)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"file URL with a remote host is not supported: {url}")
        url = urllib.parse.unquote(parsed.path)
    return os.path.abspath(os.path.expanduser(url))


def _etag(st: os.stat_result) -> str:
    return f"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"


def _stat_of(url: str, st: os.stat_result) -> ObjectStat:
    etag = _etag(st)
    return ObjectStat(
        url=url, size=st.st_size, etag=etag, last_modified=st.st_mtime_ns / 1e9, token=etag
    )


def _lock_for(path: str) -> filelock.BaseFileLock:
    digest = hashlib.sha256(path.encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / "aiofolio-locks"
    folder.mkdir(mode=0o700, exist_ok=True)
    return filelock.FileLock(str(folder / f"{digest}.lock"), timeout=30)


class LocalBackend(BaseBackend):
    """Storage on a local (or mounted network) filesystem."""

    scheme = "file"
    read_only = False

    def __repr__(self) -> str:
        return "LocalBackend()"

    async def stat(self, url: str) -> ObjectStat:
        path = local_path(url)
        try:
            st = await anyio.to_thread.run_sync(os.stat, path)
        except OSError as exc:
            raise translate(exc, url) from exc
        if stat_mod.S_ISDIR(st.st_mode):
            raise RemoteNotFoundError(f"not a file: {url} (a directory)", url=url, status=404)
        return _stat_of(url, st)

    async def exists(self, url: str) -> bool:
        return await anyio.to_thread.run_sync(os.path.isfile, local_path(url))

    def open_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> AbstractAsyncContextManager[RangeReader]:
        check_open_range(start, end)
        return self._open(url, start, end, if_match, expected_size)

    @contextlib.asynccontextmanager
    async def _open(
        self,
        url: str,
        start: int,
        end: int | None,
        if_match: str | None,
        expected_size: int | None,
    ) -> AsyncIterator[RangeReader]:
        path = local_path(url)
        try:
            fh: BinaryIO = await anyio.to_thread.run_sync(open, path, "rb")
        except OSError as exc:
            raise translate(exc, url) from exc
        try:
            # One open file: the stat, the pin and every byte read are of the same inode, even
            # if a writer renames a new file over the path meanwhile.
            st = os.fstat(fh.fileno())
            if stat_mod.S_ISDIR(st.st_mode):
                raise RemoteNotFoundError(f"not a file: {url} (a directory)", url=url, status=404)
            etag = _etag(st)
            size = st.st_size
            stop = size if end is None else min(end, size)
            info = RangeInfo(
                url=url,
                status=416 if start >= size and size > 0 else 206,
                start=start,
                length=max(0, stop - start),
                size=size,
                is_whole=start == 0 and stop == size,
                etag=etag,
                token=etag,
                last_modified=st.st_mtime_ns / 1e9,
            )
            check_pin(info, start=start, if_match=if_match, expected_size=expected_size)

            async def body() -> AsyncIterator[bytes]:
                pos = start
                while pos < stop:
                    want = min(STREAM_CHUNK, stop - pos)
                    try:
                        chunk = await anyio.to_thread.run_sync(os.pread, fh.fileno(), want, pos)
                    except OSError as exc:
                        raise translate(exc, url) from exc
                    if not chunk:
                        raise TransientError(
                            f"file shrank while being read: {url} (at {pos} of {size})", url=url
                        )
                    pos += len(chunk)
                    yield chunk

            async with RangeReader(info, body()) as reader:
                yield reader
        finally:
            fh.close()

    async def fetch_if_changed(self, url: str, token: str | None) -> FetchResult | NotModifiedType:
        path = local_path(url)

        def _read() -> FetchResult | NotModifiedType:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if token is not None and _etag(st) == token:
                    return NOT_MODIFIED
                return fh.read(), _stat_of(url, st)

        try:
            return await anyio.to_thread.run_sync(_read)
        except OSError as exc:
            raise translate(exc, url) from exc

    async def put(
        self,
        url: str,
        data: bytes | str,
        *,
        content_md5: str | None = None,
        cache_control: str | None = None,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectStat:
        path = local_path(url)

        def _put() -> ObjectStat:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(
                folder, f".{os.path.basename(path)}.{os.getpid()}-{secrets.token_hex(6)}.tmp"
            )
            digest = hashlib.md5(usedforsecurity=False)
            try:
                with open(tmp, "wb") as out:
                    if isinstance(data, bytes | bytearray | memoryview):
                        out.write(data)
                        digest.update(data)
                    else:
                        with open(data, "rb") as src:
                            while block := src.read(STREAM_CHUNK):
                                out.write(block)
                                digest.update(block)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, _FILE_MODE)
                if content_md5 is not None and digest.hexdigest() != content_md5.lower():
                    raise ChecksumMismatchError(
                        f"content MD5 mismatch writing {url}: expected {content_md5}, "
                        f"wrote {digest.hexdigest()}"
                    )
                # rename keeps inode, size and mtime: the temp file's stat is the new object's,
                # with no window for another writer's file to be stat'ed in its place.
                st = os.stat(tmp)
                if if_match is None and not if_none_match:
                    os.replace(tmp, path)
                else:
                    with _lock_for(path):
                        _check_condition(url, path, if_match, if_none_match)
                        os.replace(tmp, path)
                return _stat_of(url, st)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

        try:
            return await anyio.to_thread.run_sync(_put)
        except (OSError, filelock.Timeout) as exc:
            raise translate(exc, url) from exc

    async def list(self, url: str) -> list[ObjectStat]:
        prefix = local_path(url)
        if url.endswith(("/", os.sep)) and not prefix.endswith(os.sep):
            prefix += os.sep  # "dir/" lists that folder only, not "dir-sibling"
        as_uri = url.startswith("file://")

        def _walk() -> list[ObjectStat]:
            # A key prefix, as in S3: "a" lists a/x, a-b and ab/y. Only folders that can hold
            # a match are walked.
            root = prefix if prefix.endswith(os.sep) else os.path.dirname(prefix)
            out: list[ObjectStat] = []
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if _may_hold(os.path.join(folder, d) + os.sep, prefix)]
                for name in files:
                    full = os.path.join(folder, name)
                    if not full.startswith(prefix) or _TMP_NAME.fullmatch(name):
                        continue
                    try:
                        st = os.stat(full)
                    except FileNotFoundError:
                        continue
                    where = Path(full)
                    out.append(_stat_of(where.as_uri() if as_uri else where.as_posix(), st))
            return sorted(out, key=lambda s: s.url)

        return await anyio.to_thread.run_sync(_walk)

    async def delete(self, url: str) -> None:
        path = local_path(url)

        def _delete() -> None:
            if os.path.isdir(path) and not os.path.islink(path):
                # An object store has no folders to delete; never remove a tree from here.
                raise IsADirectoryError(f"refusing to delete a directory: {path}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

        try:
            await anyio.to_thread.run_sync(_delete)
        except OSError as exc:
            raise translate(exc, url) from exc

    async def aclose(self) -> None:
        return None


def _may_hold(folder: str, prefix: str) -> bool:
    """Whether ``folder`` (ending in a separator) can contain paths starting with ``prefix``."""
    return folder.startswith(prefix) or prefix.startswith(folder)


def _check_condition(url: str, path: str, if_match: str | None, if_none_match: bool) -> None:
    try:
        current: str | None = _etag(os.stat(path))
    except FileNotFoundError:
        current = None
    if if_none_match and current is not None:
        raise PreconditionFailedError(
            f"object already exists (precondition failed): {url}", url=url, status=412
        )
    if if_match is not None and current != if_match:
        raise PreconditionFailedError(
            f"object changed (precondition failed): {url}", url=url, status=412
        )
