"""The exception and warning tree of aiofolio (owns nothing else).

Every error aiofolio raises derives from :class:`AiofolioError`. Where the meaning fits, a class
also inherits the matching builtin, so ``except KeyError`` or ``except FileNotFoundError`` keeps
working for code written against plain dicts and files::

    AiofolioError(Exception)
    ├── ItemNotFoundError(KeyError)            no item of that name in the bundle
    ├── NotCachedError(FileNotFoundError)      offline, and the item is not in the cache
    ├── ReadOnlyError(PermissionError, RuntimeError)
    │                                          a write to a read-only folio or an http(s) bundle
    ├── LocalReferenceError(PermissionError)   a remote bundle's reference points at a local path
    ├── UsageError(RuntimeError)               the API was called in a way that cannot work
    ├── WarmError                              a cluster warm left items uncached
    │   ├── InvalidArgumentError(ValueError)   an argument with a value that cannot work
    │   └── ArgumentTypeError(TypeError)       an argument of the wrong type, or an
    │                                          operation the object does not support
    ├── RemoteError(OSError)                   the remote store failed
    │   ├── RemoteNotFoundError(FileNotFoundError)
    │   ├── RemotePermissionError(PermissionError)
    │   ├── PreconditionFailedError            a conditional request's condition did not hold
    │   ├── ContentEncodingError               a response encoded in a way we cannot undo
    │   └── TransientError                     worth retrying: 5xx, 408, resets, ...
    │       ├── RemoteTimeoutError(TimeoutError)
    │       └── ThrottledError                 429 / SlowDown; carries ``retry_after``
    ├── IntegrityError                         bytes that do not verify
    │   └── ChecksumMismatchError
    ├── ManifestError                          a manifest that cannot be used
    │   ├── UnsupportedManifestVersionError(RuntimeError)  a newer format than we read
    │   └── ConcurrentWriteError(RuntimeError) another writer published first
    │       └── ManifestReadError              items.json unreadable when a write needs it
    ├── CacheError                             the local cache failed
    │   ├── CacheFullError                     the size limit or the disk is full
    │   ├── CacheLockTimeout(TimeoutError)
    │   ├── CacheCorruptedError
    │   ├── LockUnavailableError               flock refused here: use lock_mode="lease"
    │   ├── UncachedRangeError(OSError)        a partial read outside the cached ranges
    │   └── ArchiveError                       an import_cache archive refused (nothing written)
    │       ├── ArchiveFormatError, ArchivePathError, ArchiveMemberTypeError,
    │       └── ArchiveUnexpectedMemberError, ArchiveSizeError, ArchiveChecksumError
    └── ConfigError(ValueError)                a bad setting; names its source

    AiofolioWarning(UserWarning)
    ├── StaleDataWarning                       served a cached copy that could not be revalidated
    ├── RemoteUpdateWarning                    the remote changed an item since it was cached
    └── LargeFileWarning                       an item or bundle passed the large-file threshold

Third-party exceptions (botocore, aiohttp, gcsfs, fsspec, tenacity) are translated at the
backend boundary with ``raise ... from exc``; none escapes to the caller.

The classes datafolio 2.3.0 raises under the same names (``ConcurrentWriteError``,
``ManifestReadError``, ``UnsupportedManifestVersionError``, and its read-only ``RuntimeError``)
keep datafolio's builtin base, so ``except RuntimeError`` written for datafolio still works.
"""

from __future__ import annotations

__all__ = [
    "AiofolioError",
    "AiofolioWarning",
    "ArchiveChecksumError",
    "ArchiveError",
    "ArchiveFormatError",
    "ArchiveMemberTypeError",
    "ArchivePathError",
    "ArchiveSizeError",
    "ArchiveUnexpectedMemberError",
    "ArgumentTypeError",
    "CacheCorruptedError",
    "CacheError",
    "CacheFullError",
    "CacheLockTimeout",
    "ChecksumMismatchError",
    "ConcurrentWriteError",
    "ConfigError",
    "ContentEncodingError",
    "IntegrityError",
    "InvalidArgumentError",
    "ItemNotFoundError",
    "LargeFileWarning",
    "LocalReferenceError",
    "LockUnavailableError",
    "ManifestError",
    "ManifestReadError",
    "NotCachedError",
    "PreconditionFailedError",
    "ReadOnlyError",
    "RemoteError",
    "RemoteNotFoundError",
    "RemotePermissionError",
    "RemoteTimeoutError",
    "RemoteUpdateWarning",
    "StaleDataWarning",
    "ThrottledError",
    "TransientError",
    "UncachedRangeError",
    "UnsupportedManifestVersionError",
    "UsageError",
    "WarmError",
]


class AiofolioError(Exception):
    """The root of every error aiofolio raises."""

    def __str__(self) -> str:
        # KeyError quotes its message; every aiofolio error prints its message plainly.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ItemNotFoundError(AiofolioError, KeyError):
    """No item of that name exists in the bundle (the message suggests close names)."""


class NotCachedError(AiofolioError, FileNotFoundError):
    """Offline mode, and the item is not in the cache."""


class ReadOnlyError(AiofolioError, PermissionError, RuntimeError):
    """A write was asked of a read-only folio or of a read-only (http) bundle.

    A :class:`RuntimeError`, as datafolio raises for these, and a :class:`PermissionError`.
    """


class LocalReferenceError(AiofolioError, PermissionError):
    """A remote bundle's referenced table points at a local path (``file://`` or a bare path).

    Reading it would let a bundle on S3, GCS or HTTP make this machine read its own files;
    open the folio with ``allow_local_references=True`` to allow it for bundles you trust.
    """


class WarmError(AiofolioError):
    """A cluster warm (``aiofolio.dask.warm``) left items uncached (``raise_for_errors``)."""


class UsageError(AiofolioError, RuntimeError):
    """The API was used in a way that cannot work (e.g. a sync call from the engine thread).

    ``except UsageError`` catches every misuse, including the bad arguments below.
    """


class InvalidArgumentError(UsageError, ValueError):
    """An argument whose value cannot work (``concurrency=0``, a table too big to load whole).

    Also a :class:`ValueError`, which these errors were before it existed.
    """


class ArgumentTypeError(UsageError, TypeError):
    """An argument of the wrong type, or an operation the object does not support.

    Also a :class:`TypeError`, which these errors were before it existed.
    """


class RemoteError(AiofolioError, OSError):
    """The remote store failed; ``url`` and ``status`` say where and how, when known."""

    url: str | None
    status: int | None

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_remote, (type(self), str(self), self.url, self.status, self.__dict__))


def _rebuild_remote(
    cls: type[RemoteError],
    message: str,
    url: str | None,
    status: int | None,
    state: dict[str, object],
) -> RemoteError:
    err = cls(message, url=url, status=status)
    err.__dict__.update(state)
    return err


class RemoteNotFoundError(RemoteError, FileNotFoundError):
    """The remote object or bundle does not exist (HTTP 404, NoSuchKey)."""


class RemotePermissionError(RemoteError, PermissionError):
    """The remote refused access (HTTP 401/403)."""


class PreconditionFailedError(RemoteError):
    """A conditional request's condition did not hold (HTTP 412): the object changed."""


class ContentEncodingError(RemoteError):
    """The server answered with a ``Content-Encoding`` the bytes cannot be recovered from.

    aiofolio asks for ``Accept-Encoding: identity``. A full-object response encoded with gzip
    or deflate anyway is decoded; an encoded *ranged* response (its byte offsets would refer to
    the encoded form), an unknown coding (``br``, ``zstd``, ...) or an undecodable body raises
    this. Not transient: asking again gets the same answer.
    """


class TransientError(RemoteError):
    """A failure worth retrying: timeouts, connection resets, 5xx, 408 and 429."""


class RemoteTimeoutError(TransientError, TimeoutError):
    """The remote did not answer in time, after the bounded retries."""


class ThrottledError(TransientError):
    """The remote asked us to slow down (429, SlowDown); ``retry_after`` is in seconds."""

    retry_after: float | None = None


class IntegrityError(AiofolioError):
    """Bytes that do not verify; they are never returned to the caller."""


class ChecksumMismatchError(IntegrityError):
    """A payload's checksum or size does not match what the manifest records."""


class ManifestError(AiofolioError):
    """A bundle manifest that cannot be used: corrupt JSON, a hostile path, a bad field."""


class UnsupportedManifestVersionError(ManifestError, RuntimeError):
    """The manifest's ``schema_version`` is newer than this aiofolio can read."""


class ConcurrentWriteError(ManifestError, RuntimeError):
    """Another writer published the bundle first; nothing of ours was half-published."""


class ManifestReadError(ConcurrentWriteError):
    """``items.json`` could not be read and verified when a write needed it.

    Writing over a manifest we cannot read could lose another writer's work, so the write is
    refused; :meth:`~aiofolio.DataFolio.refresh` once it is readable, then retry. A subclass of
    :class:`ConcurrentWriteError` (as in datafolio), so retry handlers catch it too.
    """


class CacheError(AiofolioError):
    """The local cache failed (cannot write, cannot lock, ...)."""


class CacheFullError(CacheError):
    """The item does not fit under the hard size limit, or the disk is full."""


class CacheLockTimeout(CacheError, TimeoutError):
    """A cache lock could not be taken in the time allowed."""


class LockUnavailableError(CacheError):
    """``lock_mode="flock"`` and the cache's filesystem refuses ``flock`` (ENOLCK, ENOSYS):
    set ``lock_mode="lease"`` (a network filesystem) or ``"none"``."""


class CacheCorruptedError(CacheError):
    """Cache state on disk is damaged beyond automatic repair."""


class UncachedRangeError(CacheError, OSError):
    """A partial read asked for payload bytes that are not cached (never zero-filled)."""


class ArchiveError(CacheError):
    """A cache export archive refused by ``import_cache``; nothing of it was written."""


class ArchiveFormatError(ArchiveError):
    """Not an aiofolio cache export: unreadable, no or a bad index, a member missing."""


class ArchivePathError(ArchiveError):
    """A member name that is absolute, climbs out (``..``), repeats or is not plain."""


class ArchiveMemberTypeError(ArchiveError):
    """A member that is not a regular file: a symlink, hardlink, device, fifo or folder."""


class ArchiveUnexpectedMemberError(ArchiveError):
    """A regular file at a path the archive's index does not account for."""


class ArchiveSizeError(ArchiveError):
    """A member larger than its index entry says, or than the cap for its kind."""


class ArchiveChecksumError(ArchiveError, ChecksumMismatchError):
    """A member's bytes do not match its digest or the manifest's checksum."""


class ConfigError(AiofolioError, ValueError):
    """A bad setting: the message names its source, the bad value and the accepted forms."""


class AiofolioWarning(UserWarning):
    """The root of every warning aiofolio emits."""


class StaleDataWarning(AiofolioWarning):
    """A cached copy was served because the remote could not be reached to revalidate it."""


class RemoteUpdateWarning(AiofolioWarning):
    """An item changed on the remote since it was cached; the cached copy was dropped."""


class LargeFileWarning(AiofolioWarning):
    """An item or a bundle grew past ``large_file_threshold``."""
