"""Partial Parquet reads: ``get(name, columns=[...])`` fetches and caches only what it reads.

Owns: the column-read path of a remote Parquet table that is not cached whole, and the footer
reads of ``get_schema``. The footer is one tail range (:data:`FOOTER_READ` bytes, Arrow's own
first footer read; read again further back when the footer is longer); the column chunks a read
needs are computed from the footer's row groups (dictionary page or first data page, plus the
chunk's compressed size), near ranges are coalesced and the missing ones fetched, every request
pinned to the version token and size of the footer's response: a payload replaced meanwhile
fails the pin, the partial is dropped and the read starts over once, so bytes of two versions
are never mixed. Pieces land in :class:`~aiofolio.store.partials.PartialStore` (atomic, each
with a fast hash checked whenever it is read: a damaged piece drops the partial and refetches),
through the quota's reserve / after-publish steps. pyarrow reads a :class:`CachedRangesFile`
that serves those pieces only and raises :class:`~aiofolio.errors.UncachedRangeError` for any
other byte (never zero-filled). A partial never counts as the cached item: a whole ``get``
downloads and verifies the payload as usual, then drops the partial.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import io
import json
import logging
import os
import struct
from typing import Any, Final

from aiofolio.backends.base import trim_range
from aiofolio.bundle import Item
from aiofolio.engine._runtime import BundleScope, in_thread
from aiofolio.errors import PreconditionFailedError, UncachedRangeError
from aiofolio.store.partials import PARTIAL_PREFIX, PartialMeta, piece_hash

__all__ = [
    "COALESCE_GAP",
    "FOOTER_READ",
    "PARTIAL_MIN",
    "CachedRangesFile",
    "NoPartial",
    "PartialRead",
    "coalesce",
    "needed_ranges",
    "wants",
]

log = logging.getLogger("aiofolio.partial")

PARTIAL_MIN: Final = 1 << 20
"""Payloads smaller than this are read whole (a partial would save next to nothing)."""
FOOTER_READ: Final = 64 * 1024
"""The tail cached first: Arrow's first footer read, so opening the file needs nothing else."""
COALESCE_GAP: Final = 256 * 1024
"""Ranges this close are fetched as one (above Arrow's own 8 KiB read coalescing)."""
_MAGIC: Final = b"PAR1"
_OPTS: Final = frozenset({"columns", "frame", "force_cache"})


class NoPartial(Exception):
    """This read cannot be served partially (read the payload whole instead)."""


def wants(item: Item, opts: dict[str, Any]) -> bool:
    """Whether a read of ``item`` with ``opts`` takes the partial path."""
    cols = opts.get("columns")
    size = item.size_bytes
    return (
        item.item_type == "included_table"
        and item.table_format == "parquet"
        and not item.get("polars_only")
        and isinstance(cols, list | tuple)
        and opts.get("frame", "pandas") in ("pandas", "arrow")
        and set(opts) <= _OPTS
        and (size is None or size >= PARTIAL_MIN)
    )


def fingerprint(item: Item) -> str:
    """The manifest entry's identity: any change to it invalidates the partial."""
    text = json.dumps(dict(item.raw), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def footer_file(tail: bytes) -> bytes:
    """A minimal Parquet file around the footer at the end of ``tail`` (for metadata only)."""
    (length,) = struct.unpack("<I", tail[-8:-4])
    return _MAGIC + tail[-8 - length :]


def needed_ranges(tail: bytes, columns: list[str]) -> list[tuple[int, int]]:
    """The column-chunk byte ranges a read of ``columns`` needs (from the footer in ``tail``)."""
    import pyarrow.parquet as pq

    footer = footer_file(tail)
    pf = pq.ParquetFile(io.BytesIO(footer))
    md = pf.metadata
    names = set(columns)
    pandas = pf.schema_arrow.pandas_metadata or {}
    names |= {c for c in pandas.get("index_columns", []) if isinstance(c, str)}
    wanted = [
        j
        for j in range(md.num_columns)
        if any((p := md.schema.column(j).path) == n or p.startswith(n + ".") for n in names)
    ]
    ranges: list[tuple[int, int]] = []
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        for j in wanted:
            cc = rg.column(j)
            start = cc.data_page_offset
            dict_at = cc.dictionary_page_offset
            if cc.has_dictionary_page and dict_at is not None and 0 < dict_at < start:
                start = dict_at
            ranges.append((start, start + cc.total_compressed_size))
    return ranges


def coalesce(ranges: list[tuple[int, int]], gap: int = COALESCE_GAP) -> list[tuple[int, int]]:
    """Sorted ranges with those at most ``gap`` apart merged."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _missing(ranges: list[tuple[int, int]], have: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``ranges`` no piece in ``have`` covers."""
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        at = start
        for h_start, h_end in have:
            if h_end <= at or h_start >= end:
                continue
            if h_start > at:
                out.append((at, h_start))
            at = max(at, h_end)
        if at < end:
            out.append((at, end))
    return out


class CachedRangesFile(io.RawIOBase):
    """A read-only file of ``size`` bytes that has only ``pieces`` (start -> bytes)."""

    def __init__(self, size: int, pieces: dict[int, bytes]) -> None:
        super().__init__()
        self._size = size
        self._starts = sorted(pieces)
        self._pieces = pieces
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def size(self) -> int:
        return self._size

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._pos + len(view), self._size)
        at, done = self._pos, 0
        while at < end:
            i = bisect.bisect_right(self._starts, at) - 1
            piece = self._pieces[self._starts[i]] if i >= 0 else b""
            offset = at - self._starts[i] if i >= 0 else 0
            if i < 0 or offset >= len(piece):
                raise UncachedRangeError(f"bytes {at}-{end} of the payload are not cached")
            n = min(len(piece) - offset, end - at)
            view[done : done + n] = piece[offset : offset + n]
            at, done = at + n, done + n
        self._pos = at
        return done


class _Damaged(Exception):
    """A cached piece failed its hash (or vanished)."""


class PartialRead:
    """The partial of one item of one bundle (``object_url``: its payload)."""

    def __init__(self, scope: BundleScope, object_url: str, item: Item) -> None:
        self.scope = scope
        self.object_url = object_url
        self.item = item
        self.store = scope.rt.partials
        self.bundle = scope.url
        self.name = item.name
        self.item_dir = self.store.item_dir(self.bundle, self.name)
        self.keep = scope.writes_cache  # read-only cache mode: pieces stay in memory
        self._memory: dict[int, bytes] = {}

    async def _valid_meta(self) -> PartialMeta | None:
        meta = await in_thread(self.store.load, self.bundle, self.name)
        if meta is None:
            return None
        size = self.item.size_bytes
        if meta.fingerprint != fingerprint(self.item) or (size is not None and size != meta.size):
            await self.drop()
            return None
        return meta

    async def drop(self) -> None:
        self._memory.clear()
        if self.keep:
            await in_thread(self.store.remove, self.bundle, self.name)

    async def _save(self, meta: PartialMeta) -> None:
        if self.keep:
            await in_thread(self.store.save, meta)

    def _online(self) -> None:
        if self.scope.offline:  # the whole read raises NotCachedError
            raise NoPartial(f"offline, and {self.name!r} is not cached")

    def _load(self, meta: PartialMeta, piece: tuple[int, int, str]) -> bytes:
        start, end, digest = piece
        if start in self._memory:
            return self._memory[start]
        try:
            data = self.store.read_piece(self.bundle, self.name, start, end)
        except OSError as exc:
            raise _Damaged(str(exc)) from None
        if len(data) != end - start or piece_hash(data, meta.algorithm) != digest:
            raise _Damaged(f"piece {start}-{end} failed its hash")
        return data

    def _write(self, meta: PartialMeta, start: int, data: bytes) -> None:
        if not self.keep:
            self._memory[start] = data
            meta.pieces.append((start, start + len(data), piece_hash(data, meta.algorithm)))
            return
        tmp = self.store.temp_path(self.bundle, self.name)
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o444)
            os.replace(tmp, self.store.piece_path(self.bundle, self.name, start, start + len(data)))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        meta.pieces.append((start, start + len(data), piece_hash(data, meta.algorithm)))

    async def _get(self, start: int, end: int, meta: PartialMeta) -> bytes:
        parts: list[bytes] = []
        backend = self.scope.backend
        async with backend.open_range(
            self.object_url, start, end, if_match=meta.token, expected_size=meta.size
        ) as reader:
            async for chunk in trim_range(reader, start, end):
                parts.append(chunk)
        data = b"".join(parts)
        if len(data) != end - start:
            raise PreconditionFailedError(f"{self.object_url}: short range {start}-{end}")
        return data

    async def _fetch_footer(self) -> tuple[PartialMeta, bytes]:
        """Fetch the tail (and the rest of a long footer), pinned; save it as the first piece."""
        self._online()
        await self.drop()
        backend, url = self.scope.backend, self.object_url
        size = self.item.size_bytes
        if size is None:  # datafolio may record no size: one byte states it
            async with backend.open_range(url, 0, 1) as reader:
                size = reader.size
        if size is None or size < PARTIAL_MIN:
            raise NoPartial(f"{url}: size unknown or small")
        start = max(0, size - FOOTER_READ)
        async with backend.open_range(url, start, size, expected_size=size) as reader:
            token = reader.token
            tail = b"".join([c async for c in trim_range(reader, start, size)])
        if token is None or len(tail) != size - start or tail[-4:] != _MAGIC:
            raise NoPartial(f"{url}: no version token, or not a Parquet file")
        meta = PartialMeta(
            url=self.bundle,
            name=self.name,
            fingerprint=fingerprint(self.item),
            size=size,
            token=token,
        )
        (length,) = struct.unpack("<I", tail[-8:-4])
        if length + 8 > len(tail):  # a long footer: the rest of it, same version
            begin = size - 8 - length
            if begin < 4:
                raise NoPartial(f"{url}: footer length {length} does not fit")
            tail = await self._get(begin, start, meta) + tail
            start = begin
        await in_thread(self._write, meta, start, tail)
        await self._save(meta)
        return meta, tail

    async def footer(self) -> tuple[PartialMeta, bytes]:
        """The cached tail (fetched when absent or damaged): the meta and the tail's bytes."""
        meta = await self._valid_meta()
        if meta is not None:
            tails = [p for p in meta.pieces if p[1] == meta.size]
            if tails:
                try:
                    return meta, await in_thread(self._load, meta, tails[0])
                except _Damaged as exc:
                    log.warning("partial footer of %s::%s dropped: %s", self.bundle, self.name, exc)
        return await self._fetch_footer()

    async def _fetch(self, meta: PartialMeta, ranges: list[tuple[int, int]]) -> None:
        settings, rt = self.scope.settings, self.scope.rt
        self._online()
        need = sum(e - s for s, e in ranges) if self.keep else 0
        ticket = await in_thread(rt.quota.reserve, settings, need, f"{self.name} (columns)")
        limit = asyncio.Semaphore(max(1, settings.parallel_downloads))

        async def one(start: int, end: int) -> None:
            async with limit:
                data = await self._get(start, end, meta)
            await in_thread(self._write, meta, start, data)

        try:
            await asyncio.gather(*(one(s, e) for s, e in ranges))
            await self._save(meta)
        except BaseException:
            await in_thread(rt.quota.release, ticket)
            await self._save(meta)  # what landed stays usable
            raise
        key = f"{PARTIAL_PREFIX}{self.item_dir.relative_to(self.store.root)}"
        await in_thread(rt.quota.after_publish, ticket, settings, key, need)

    async def _attempt(self, columns: list[str]) -> tuple[int, dict[int, bytes]]:
        meta, tail = await self.footer()
        ranges = await in_thread(needed_ranges, tail, columns)
        tail_start = meta.size - len(tail)
        ranges = coalesce([(s, min(e, tail_start)) for s, e in ranges if s < tail_start])
        have = [(s, e) for s, e, _ in meta.pieces]
        missing = _missing(ranges, have)
        if missing:
            await self._fetch(meta, missing)
        keep = [p for p in meta.pieces if p[1] == meta.size or _overlaps(p, ranges)]
        loaded = await in_thread(lambda: {p[0]: self._load(meta, p) for p in keep})
        return meta.size, loaded

    async def pieces(self, columns: list[str]) -> tuple[int, dict[int, bytes]]:
        """The payload's size and the verified pieces a read of ``columns`` needs.

        A version change between requests (a failed pin) or a damaged piece drops the partial
        and starts over once; the second failure raises.
        """
        for attempt in (1, 2):
            try:
                return await self._attempt(columns)
            except (PreconditionFailedError, _Damaged) as exc:
                log.warning(
                    "partial of %s::%s dropped (%s)%s",
                    self.bundle,
                    self.name,
                    exc,
                    ", reading again" if attempt == 1 else "",
                )
                await self.drop()
                if attempt == 2:
                    if isinstance(exc, _Damaged):
                        raise NoPartial(str(exc)) from exc
                    raise
        raise AssertionError("unreachable")

    async def schema(self) -> Any:
        """The table's ``pyarrow.Schema`` from the (cached) footer."""
        import pyarrow.parquet as pq

        _, tail = await self.footer()
        return pq.ParquetFile(io.BytesIO(footer_file(tail))).schema_arrow


def _overlaps(piece: tuple[int, int, str], ranges: list[tuple[int, int]]) -> bool:
    return any(piece[0] < e and s < piece[1] for s, e in ranges)
