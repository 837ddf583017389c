"""Content hashes of the cache: one streaming pass feeds several digests, plus a fast file hash.

This module owns the algorithm names the cache records (``ItemRecord.algorithm`` and
``ItemRecord.fast_algorithm``), :class:`Hashers` (update several hashlib-like objects with each
chunk, so a download is hashed once for the manifest checksum and once for fast hit
verification without a second read), and :func:`fast_hash_file`.

The fast algorithm is ``xxh3_128`` when the optional ``xxhash`` package is importable; without
it, ``blake2b_128`` (BLAKE2b with a 16-byte digest) from the standard library, named as what
it is. A record names the algorithm it was hashed with, so a cache written by a process that
had ``xxhash`` is still verifiable by one that has it, and a process without it can tell
(:func:`is_available`) and fall back to the full checksum.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "FAST_ALGORITHM",
    "HashLike",
    "Hashers",
    "available_algorithms",
    "fast_hash_file",
    "hash_file",
    "is_available",
    "new_hasher",
]

_READ_CHUNK: Final = 4 << 20


class HashLike(Protocol):
    """What :class:`Hashers` needs of a hash object (hashlib's and xxhash's qualify)."""

    def update(self, data: ReadableBuffer, /) -> None:
        """Feed more bytes."""

    def hexdigest(self) -> str:
        """The digest of the bytes so far, lowercase hex."""


def _md5() -> HashLike:
    return hashlib.md5(usedforsecurity=False)


def _sha256() -> HashLike:
    return hashlib.sha256()


def _blake2b_128() -> HashLike:
    return hashlib.blake2b(digest_size=16)


_FACTORIES: dict[str, Callable[[], HashLike]] = {
    "md5": _md5,
    "sha256": _sha256,
    "blake2b_128": _blake2b_128,
}

FAST_ALGORITHM: str = "blake2b_128"
"""The algorithm of :func:`fast_hash_file` in this process: ``xxh3_128`` or ``blake2b_128``."""

try:  # optional: ~15x faster than md5 or blake2b
    import xxhash as _xxhash  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:  # pragma: no cover - depends on the environment
    _FACTORIES["xxh3_128"] = cast("Callable[[], HashLike]", _xxhash.xxh3_128)
    _FACTORIES["xxh3_64"] = cast("Callable[[], HashLike]", _xxhash.xxh3_64)
    FAST_ALGORITHM = "xxh3_128"


class _Crc32c:
    """CRC32C (Castagnoli) as a :class:`HashLike`: hex of the big-endian 32-bit value."""

    __slots__ = ("_c",)

    def __init__(self) -> None:
        import google_crc32c  # type: ignore[import-not-found, import-untyped, unused-ignore]

        factory: Any = google_crc32c.Checksum
        self._c: Any = factory()

    def update(self, data: ReadableBuffer, /) -> None:
        self._c.update(data if isinstance(data, bytes) else bytes(data))

    def hexdigest(self) -> str:
        return bytes(self._c.digest()).hex()


try:  # optional (installed with gcsfs): verifies GCS objects that state only a CRC32C
    import google_crc32c as _crc  # type: ignore[import-not-found, import-untyped, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    del _crc
    _FACTORIES["crc32c"] = _Crc32c


def available_algorithms() -> tuple[str, ...]:
    """The algorithm names this process can compute, sorted."""
    return tuple(sorted(_FACTORIES))


def is_available(algorithm: str) -> bool:
    """Whether this process can compute ``algorithm`` (``xxh3_*`` needs ``xxhash``)."""
    return algorithm in _FACTORIES


def new_hasher(algorithm: str) -> HashLike:
    """A fresh hash object for ``algorithm``.

    Args:
        algorithm: ``md5``, ``sha256``, ``blake2b_128``, or ``xxh3_128``/``xxh3_64`` when
            ``xxhash`` is installed.

    Raises:
        ValueError: The algorithm is unknown or not available in this process.
    """
    try:
        factory = _FACTORIES[algorithm]
    except KeyError:
        hint = " (it needs the 'xxhash' package)" if algorithm.startswith("xxh") else ""
        raise ValueError(
            f"unknown or unavailable hash algorithm {algorithm!r}{hint}; "
            f"available: {', '.join(available_algorithms())}"
        ) from None
    return factory()


class Hashers:
    """Several digests of one byte stream, updated together.

    Example::

        hashers = Hashers(["md5", FAST_ALGORITHM])
        for chunk in chunks:
            hashers.update(chunk)
        hashers.hexdigest("md5"), hashers.size

    Args:
        algorithms: Algorithm names (duplicates are ignored); see :func:`new_hasher`.

    Raises:
        ValueError: An algorithm is unknown or unavailable, or none is given.
    """

    __slots__ = ("_hashers", "_size")

    def __init__(self, algorithms: Iterable[str]) -> None:
        self._hashers: dict[str, HashLike] = {}
        for name in algorithms:
            if name not in self._hashers:
                self._hashers[name] = new_hasher(name)
        if not self._hashers:
            raise ValueError("Hashers needs at least one algorithm")
        self._size = 0

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithm names, in the order given."""
        return tuple(self._hashers)

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    def update(self, data: ReadableBuffer) -> None:
        """Feed ``data`` (bytes, bytearray, memoryview, ...) to every digest."""
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        for hasher in self._hashers.values():
            hasher.update(view)
        self._size += view.nbytes

    def hexdigest(self, algorithm: str) -> str:
        """The lowercase hex digest of ``algorithm`` over the bytes so far.

        Raises:
            KeyError: ``algorithm`` is not one of this object's algorithms.
        """
        return self._hashers[algorithm].hexdigest()

    def hexdigests(self) -> dict[str, str]:
        """Every digest over the bytes so far, by algorithm name."""
        return {name: hasher.hexdigest() for name, hasher in self._hashers.items()}


def hash_file(path: str | os.PathLike[str], algorithms: Iterable[str]) -> Hashers:
    """Hash a local file with several algorithms in one read.

    Args:
        path: The file.
        algorithms: Algorithm names; see :func:`new_hasher`.

    Returns:
        The :class:`Hashers` after the whole file (``size`` is the file's length).

    Raises:
        OSError: The file cannot be read.
        ValueError: An algorithm is unknown or unavailable.
    """
    hashers = Hashers(algorithms)
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= _READ_CHUNK:
            # Small files (cache hits mostly): one read, no zeroed 4 MiB buffer to allocate.
            hashers.update(fh.read())
            return hashers
        buf = bytearray(_READ_CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            hashers.update(view[:n])
    return hashers


def fast_hash_file(path: str | os.PathLike[str], algorithm: str | None = None) -> str:
    """The fast content hash of a local file, for verifying a cache hit.

    Args:
        path: The file.
        algorithm: The algorithm; :data:`FAST_ALGORITHM` by default. Pass the record's
            ``fast_algorithm`` to verify a blob hashed by another process.

    Returns:
        The lowercase hex digest.

    Raises:
        OSError: The file cannot be read.
        ValueError: The algorithm is unknown or unavailable (check :func:`is_available`).
    """
    name = FAST_ALGORITHM if algorithm is None else algorithm
    return hash_file(path, (name,)).hexdigest(name)
