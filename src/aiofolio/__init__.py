"""aiofolio: an async-first caching client for DataFolio bundles.

The public API is what ``__all__`` lists (a test keeps it honest); every other module is
private. Every type a public method takes or returns that a caller may want to annotate
(``Settings``, ``MetadataDict``, ``Item``, ``WarmHandle``, ...) is exported here. See README.md
for the quickstart and docs/ARCHITECTURE.md for the architecture.
"""

from __future__ import annotations

from aiofolio._config_file import ConfigChange
from aiofolio._folio_reading import DataAccessor, ItemProxy
from aiofolio._folio_snapshots import SnapshotAccessor, SnapshotView
from aiofolio._search import find, list_folios, remove_alias, set_alias
from aiofolio._version import __version__
from aiofolio._warm import WarmHandle
from aiofolio.bundle import Item
from aiofolio.config import ResolvedSettings, Settings
from aiofolio.engine.inventory import BlobProblem, CachedBundle, CachedItem, VerifyReport
from aiofolio.engine.manifests import InvalidationCallback
from aiofolio.engine.revalidate import RefreshOutcome
from aiofolio.engine.warm import WarmProgress, WarmResult
from aiofolio.errors import (
    AiofolioError,
    AiofolioWarning,
    ArchiveChecksumError,
    ArchiveError,
    ArchiveFormatError,
    ArchiveMemberTypeError,
    ArchivePathError,
    ArchiveSizeError,
    ArchiveUnexpectedMemberError,
    ArgumentTypeError,
    CacheCorruptedError,
    CacheError,
    CacheFullError,
    CacheLockTimeout,
    ChecksumMismatchError,
    ConcurrentWriteError,
    ConfigError,
    ContentEncodingError,
    IntegrityError,
    InvalidArgumentError,
    ItemNotFoundError,
    LargeFileWarning,
    LocalReferenceError,
    LockUnavailableError,
    ManifestError,
    ManifestReadError,
    NotCachedError,
    PreconditionFailedError,
    ReadOnlyError,
    RemoteError,
    RemoteNotFoundError,
    RemotePermissionError,
    RemoteTimeoutError,
    RemoteUpdateWarning,
    StaleDataWarning,
    ThrottledError,
    TransientError,
    UncachedRangeError,
    UnsupportedManifestVersionError,
    UsageError,
    WarmError,
)
from aiofolio.folio import DataFolio, MetadataDict  # imported after __version__, which it uses

refresh_all = DataFolio.refresh_all
arefresh_all = DataFolio.arefresh_all

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
    "BlobProblem",
    "CacheCorruptedError",
    "CacheError",
    "CacheFullError",
    "CacheLockTimeout",
    "CachedBundle",
    "CachedItem",
    "ChecksumMismatchError",
    "ConcurrentWriteError",
    "ConfigChange",
    "ConfigError",
    "ContentEncodingError",
    "DataAccessor",
    "DataFolio",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidationCallback",
    "Item",
    "ItemNotFoundError",
    "ItemProxy",
    "LargeFileWarning",
    "LocalReferenceError",
    "LockUnavailableError",
    "ManifestError",
    "ManifestReadError",
    "MetadataDict",
    "NotCachedError",
    "PreconditionFailedError",
    "ReadOnlyError",
    "RefreshOutcome",
    "RemoteError",
    "RemoteNotFoundError",
    "RemotePermissionError",
    "RemoteTimeoutError",
    "RemoteUpdateWarning",
    "ResolvedSettings",
    "Settings",
    "SnapshotAccessor",
    "SnapshotView",
    "StaleDataWarning",
    "ThrottledError",
    "TransientError",
    "UncachedRangeError",
    "UnsupportedManifestVersionError",
    "UsageError",
    "VerifyReport",
    "WarmError",
    "WarmHandle",
    "WarmProgress",
    "WarmResult",
    "__version__",
    "arefresh_all",
    "find",
    "list_folios",
    "refresh_all",
    "remove_alias",
    "set_alias",
]
