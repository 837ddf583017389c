"""One-pass hashing writes: the MD5 and size of a payload, computed while it is written.

This module owns :class:`HashingWriter`, a write-only, forward-only file object that
hands every byte to a local file and to an MD5 digest at the same time, and
:func:`md5_file` for checking a finished file. A writer that wants to seek back
(and so would make the digest disagree with the bytes on disk) fails loudly
with :class:`io.UnsupportedOperation` instead of producing a wrong checksum.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["PAYLOAD_FILE_MODE", "HashingWriter", "md5_file", "write_hashed"]

#: Mode bits of every payload file the bundle layer writes (design §4).
PAYLOAD_FILE_MODE = 0o644

_CHUNK = 1 << 20


class HashingWriter(io.RawIOBase):
    """A forward-only binary file that computes MD5 and size while it writes.

    Opening truncates (or creates) ``path`` with mode 0644. Use it as a context
    manager; on a clean exit the data is flushed and fsynced. After closing,
    :attr:`md5_hex` and :attr:`size` describe exactly the bytes on disk.

    Args:
        path: Local destination file.
        fsync: Flush to stable storage on close (default True).
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        super().__init__()
        self._path = os.fspath(path)
        self._fsync = fsync
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PAYLOAD_FILE_MODE)
        with contextlib.suppress(OSError):  # filesystems without chmod support
            os.fchmod(fd, PAYLOAD_FILE_MODE)  # the umask must not narrow it
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._size = 0

    @property
    def path(self) -> str:
        """The destination path."""
        return self._path

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    @property
    def md5_hex(self) -> str:
        """MD5 hex digest of the bytes written so far."""
        return self._md5.hexdigest()

    def writable(self) -> bool:
        """Always True."""
        return True

    def readable(self) -> bool:
        """Always False."""
        return False

    def seekable(self) -> bool:
        """Always False: a seek would make the digest disagree with the file."""
        return False

    def tell(self) -> int:
        """The current position, which is always the number of bytes written."""
        return self._size

    def write(self, b: ReadableBuffer, /) -> int:
        """Write ``b`` to the file and feed it to the digest."""
        if self.closed:
            raise ValueError("write to a closed HashingWriter")
        view = memoryview(b).cast("B")
        self._file.write(view)
        self._md5.update(view)
        n = view.nbytes
        self._size += n
        return n

    def flush(self) -> None:
        """Flush the underlying file."""
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        """Flush, fsync (unless disabled) and close the file."""
        if self.closed:
            return
        try:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        finally:
            self._file.close()
            super().close()

    def abort(self) -> None:
        """Close without fsync and delete the partial file."""
        if not self.closed:
            self._fsync = False
            with contextlib.suppress(OSError):
                self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def md5_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Return ``(md5_hex, size)`` of a local file, read in chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            size += len(chunk)
    return md5.hexdigest(), size


def write_hashed(
    dest_path: str | os.PathLike[str], write: Callable[[HashingWriter], object]
) -> tuple[str, int]:
    """Call ``write`` with a :class:`HashingWriter` on ``dest_path``; return ``(md5_hex, size)``.

    On an exception the partial file is deleted and the exception propagates.
    """
    with HashingWriter(dest_path) as writer:
        write(writer)
    return writer.md5_hex, writer.size
