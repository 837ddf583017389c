"""aiofolio: an async-first caching client for DataFolio bundles.

The public API is what ``__all__`` lists (a test keeps it honest); every other module is
private. See README.md for the quickstart and ../DESIGN.md for the architecture.
"""

from __future__ import annotations

from aiofolio.errors import (
    AiofolioError,
    AiofolioWarning,
    CacheCorruptedError,
    CacheError,
    CacheFullError,
    CacheLockTimeout,
    ChecksumMismatchError,
    ConcurrentWriteError,
    ConfigError,
    ContentEncodingError,
    IntegrityError,
    ItemNotFoundError,
    LargeFileWarning,
    ManifestError,
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
    UnsupportedManifestVersionError,
    UsageError,
)

__version__ = "0.1.0"

from aiofolio.engine.revalidate import RefreshOutcome
from aiofolio.engine.warm import WarmHandle, WarmProgress, WarmResult
from aiofolio.folio import DataFolio  # imported after __version__, which it uses

refresh_all = DataFolio.refresh_all
arefresh_all = DataFolio.arefresh_all

__all__ = [
    "AiofolioError",
    "AiofolioWarning",
    "CacheCorruptedError",
    "CacheError",
    "CacheFullError",
    "CacheLockTimeout",
    "ChecksumMismatchError",
    "ConcurrentWriteError",
    "ConfigError",
    "ContentEncodingError",
    "DataFolio",
    "IntegrityError",
    "ItemNotFoundError",
    "LargeFileWarning",
    "ManifestError",
    "NotCachedError",
    "PreconditionFailedError",
    "ReadOnlyError",
    "RefreshOutcome",
    "RemoteError",
    "RemoteNotFoundError",
    "RemotePermissionError",
    "RemoteTimeoutError",
    "RemoteUpdateWarning",
    "StaleDataWarning",
    "ThrottledError",
    "TransientError",
    "UnsupportedManifestVersionError",
    "UsageError",
    "WarmHandle",
    "WarmProgress",
    "WarmResult",
    "__version__",
    "arefresh_all",
    "refresh_all",
]
