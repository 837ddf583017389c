"""Where everything lives in the on-disk cache: the versioned directory layout and bundle keys.

This module owns :class:`CacheLayout` (the paths of every cache area, and creating them with
the right modes and a ``CACHEDIR.TAG``) and :func:`bundle_key` (the directory name of a bundle
record). It decides names only; what goes into the files belongs to the other ``store``
modules. The layout is the same for every process and versioned (``v1``), so an incompatible
change gets a new directory instead of a migration::

    <cache_dir>/CACHEDIR.TAG            marks the folder as a cache for backup tools
    <cache_dir>/config.json             settings file (read by aiofolio.config, not here)
    <cache_dir>/v1/blobs/ab/<digest>    immutable content named by its digest (mode 0444)
    <cache_dir>/v1/bundles/<key>/       bundle record: record.json, manifest-<md5>.json,
                                        items.snap, items/<host>-<pid>-<random>.log
    <cache_dir>/v1/tmp/                 unique temp files "<pid>-<random>.part"
    <cache_dir>/v1/locks/               best-effort lock files
    <cache_dir>/v1/stats/               per-process counter files
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Final

from aiofolio.errors import CacheError

__all__ = [
    "CACHEDIR_TAG_NAME",
    "CACHEDIR_TAG_SIGNATURE",
    "LAYOUT_VERSION",
    "CacheLayout",
    "bundle_key",
]

LAYOUT_VERSION: Final = "v1"
"""The name of the versioned folder under the cache root."""

CACHEDIR_TAG_NAME: Final = "CACHEDIR.TAG"
CACHEDIR_TAG_SIGNATURE: Final = "Signature: 8a477f597d28d172789f06886806bc55"
"""The first line of a cache directory tag (https://bford.info/cachedir/)."""

_CACHEDIR_TAG_TEXT: Final = (
    f"{CACHEDIR_TAG_SIGNATURE}\n"
    "# This file is a cache directory tag created by aiofolio.\n"
    "# It marks this folder as a cache that backup tools may skip.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)

_ROOT_MODE: Final = 0o700
_SLUG_MAX: Final = 60
_HASH_CHARS: Final = 16
_SLUG_JUNK: Final = re.compile(r"[^a-z0-9._-]+")
_SLUG_RUNS: Final = re.compile(r"([._-])[._-]+")


def bundle_key(url: str) -> str:
    """The directory name of a bundle's record: a readable slug plus a hash of the URL.

    The slug keeps the scheme and path characters (lowercased, anything outside
    ``[a-z0-9._-]`` turned into ``-``, runs collapsed, at most 60 characters) so a person can
    tell the folders apart; the ``sha256(url)[:16]`` suffix makes two different URLs never
    share a key (the slug alone is lossy). The hash covers the URL exactly as given: callers
    pass the canonical form of a bundle URL (the engine normalizes it), and two spellings of
    one bundle get two keys.

    Args:
        url: The bundle URL (or local path).

    Returns:
        A name such as ``s3-lab-exp-001-1f3a9c0d2b4e6f70``; never empty, never ``.`` or
        ``..``, and free of path separators.
    """
    digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    text = url.lower().replace("://", "-")
    slug = _SLUG_RUNS.sub(r"\1", _SLUG_JUNK.sub("-", text))[:_SLUG_MAX].strip("._-")
    return f"{slug}-{digest}" if slug else digest


class CacheLayout:
    """The paths of one cache directory (all areas of the ``v1`` layout).

    Constructing a layout touches nothing on disk; call :meth:`ensure` before the first write.

    Args:
        root: The cache directory (``Settings.cache_dir``); ``~`` is expanded and the path
            made absolute.

    Attributes:
        root: The cache directory.
        version_dir: ``<root>/v1``.
        blobs_dir: Content-addressed blobs, fanned out by the first two hex digits.
        bundles_dir: One folder per bundle record.
        tmp_dir: Temp files of downloads and writes in progress.
        locks_dir: Best-effort lock files.
        stats_dir: Per-process counter files.
    """

    __slots__ = (
        "blobs_dir",
        "bundles_dir",
        "locks_dir",
        "root",
        "stats_dir",
        "tmp_dir",
        "version_dir",
    )

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root: Path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
        self.version_dir: Path = self.root / LAYOUT_VERSION
        self.blobs_dir: Path = self.version_dir / "blobs"
        self.bundles_dir: Path = self.version_dir / "bundles"
        self.tmp_dir: Path = self.version_dir / "tmp"
        self.locks_dir: Path = self.version_dir / "locks"
        self.stats_dir: Path = self.version_dir / "stats"

    def __repr__(self) -> str:
        return f"CacheLayout({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CacheLayout) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @property
    def cachedir_tag(self) -> Path:
        """``<root>/CACHEDIR.TAG``."""
        return self.root / CACHEDIR_TAG_NAME

    def ensure(self) -> None:
        """Create every area of the layout and the ``CACHEDIR.TAG``; idempotent.

        A root this call creates gets mode 0700 exactly (chmod after mkdir, whatever the
        umask). An existing root keeps its mode, so a cache folder someone set up on purpose
        (group-shared, say) is not narrowed behind their back. The tag is written once, by an
        atomic rename, so concurrent processes never see a partial one.

        Raises:
            CacheError: A folder cannot be created or the tag cannot be written; the message
                names the path and the OS reason.
        """
        root = self.root
        try:
            root.mkdir(mode=_ROOT_MODE, parents=True)
        except FileExistsError:
            if not root.is_dir():
                raise _cache_error("create the cache directory", root, None) from None
        except OSError as exc:
            raise _cache_error("create the cache directory", root, exc) from exc
        else:
            try:
                os.chmod(root, _ROOT_MODE)
            except OSError as exc:
                raise _cache_error("set the mode of the cache directory", root, exc) from exc
        for folder in (
            self.version_dir,
            self.blobs_dir,
            self.bundles_dir,
            self.tmp_dir,
            self.locks_dir,
            self.stats_dir,
        ):
            try:
                folder.mkdir(exist_ok=True)
            except FileExistsError:  # exists, but not as a directory
                raise _cache_error("create the cache directory", folder, None) from None
            except OSError as exc:
                raise _cache_error("create the cache directory", folder, exc) from exc
        self._write_tag()

    def _write_tag(self) -> None:
        tag = self.cachedir_tag
        if tag.is_file():
            return
        part = self.root / f".{CACHEDIR_TAG_NAME}.{os.getpid()}-{secrets.token_hex(4)}.part"
        try:
            part.write_text(_CACHEDIR_TAG_TEXT, encoding="ascii")
            os.replace(part, tag)
        except OSError as exc:
            with contextlib.suppress(OSError):
                part.unlink()
            raise _cache_error("write", tag, exc) from exc

    def bundle_key(self, url: str) -> str:
        """The record folder name of ``url``; see :func:`bundle_key`."""
        return bundle_key(url)

    def bundle_dir(self, url: str) -> Path:
        """The record folder of ``url``: ``<root>/v1/bundles/<bundle_key(url)>``."""
        return self.bundles_dir / bundle_key(url)


def _cache_error(what: str, path: Path, exc: OSError | None) -> CacheError:
    if exc is None:
        reason = "a file that is not a directory is in the way"
    else:
        reason = exc.strerror or str(exc)
    return CacheError(f"cannot {what} {path}: {reason}")
