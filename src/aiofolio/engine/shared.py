"""The shared read-only cache tier: hits from a cache folder that another account filled.

Owns: :class:`SharedTier`, which a bundle's :class:`~aiofolio.engine.blobs.BlobCache` asks for
an item's blob in ``shared_cache_dir`` (after the local tier, or before it with
``shared_cache_priority="first"``; always before a download), and the optional copy of a hit
into the local tier (``shared_cache_copy``). An administrator fills the tier by pointing
aiofolio's ``cache_dir`` at it (``warm_cache``); users mount it read-only. Rules it keeps:

* Nothing in the tier is ever written, locked, touched, evicted or swept: it only reads the
  tier's item records (:meth:`~aiofolio.store.RecordStore.item` and ``load``, which read), the
  manifest saved with them and the blobs (``stat``, ``open`` for reading). No stats file, lock,
  atime or in-use marker goes there; counters and markers are the local tier's. So it works on
  a read-only mount owned by another user.
* A blob is found by digest: the tier's record of this bundle's item version names it; without
  one, the manifest MD5 names it (``v1/blobs/<md5[:2]>/<md5>``, also when the tier cached the
  bytes for another bundle).
* It is verified like a local hit before it is served: with a record, the size and the fast
  hash as :func:`~aiofolio.policy.rehash_on_hit` says; by the manifest MD5 alone, a full MD5
  (remembered per process and file version for blobs above ``REHASH_MAX``). A blob that does
  not verify is skipped with a warning (once per file version) and the read downloads.
* An item without a manifest checksum (what datafolio writes to the cloud) has nothing but the
  tier's record to bind its bytes to it, so that record is used only when the tier's process
  verified the download by a digest (the manifest's or the store's MD5/ETag, CRC32C; not "size
  and version only"), and the manifest the tier saved holds this very item version (the same
  fields: file name, version id, created_at, size...). A bundle rewritten at the same URL,
  whose version ids start over, does not get the old bundle's bytes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

import msgspec

from aiofolio.bundle import Item, Manifest, parse_manifest, payload_path, version_token
from aiofolio.engine._runtime import BundleScope, in_thread
from aiofolio.engine.fetch import INLINE_MAX
from aiofolio.engine.publish import Publisher
from aiofolio.errors import AiofolioError, CacheFullError
from aiofolio.policy import REHASH_MAX
from aiofolio.policy.largefiles import should_cache
from aiofolio.store import (
    FAST_ALGORITHM,
    BlobStore,
    CacheLayout,
    Hashers,
    ItemRecord,
    RecordStore,
    hash_file,
    validate_digest,
)

__all__ = ["SharedTier"]

log = logging.getLogger("aiofolio.cache")

UNVERIFIED: Final = ("", "size and version only")
"""``verified_by`` values of records that no digest verified."""
_WRITE_BITS: Final = 0o222

Verify = Callable[[Path, ItemRecord, bool], bool]
_Sig = tuple[int, int, int]


class Found(NamedTuple):
    """A blob of the tier that may hold an item (not verified yet)."""

    path: Path
    digest: str
    algorithm: str
    size: int
    rec: ItemRecord | None  # None: found by the manifest MD5 alone


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _fields(item: Item) -> Mapping[str, Any]:
    return {k: v for k, v in item.raw.items() if k != "is_current"}


class SharedTier:
    """The shared tier as one bundle's blob cache sees it (see the module docstring).

    Args:
        scope: the bundle (its settings name the tier; its runtime is the local tier).
        verify: the local hit check (``BlobCache.verify``): size and fast hash of a blob.
        publisher: the local tier's door, for copies of hits (``shared_cache_copy``).
    """

    def __init__(self, scope: BundleScope, verify: Verify, publisher: Publisher) -> None:
        settings = scope.settings
        assert settings.shared_cache_dir is not None
        self.scope, self.url, self.rt = scope, scope.url, scope.rt
        self.first = settings.shared_cache_priority == "first"
        self.copy = settings.shared_cache_copy and scope.writes_cache
        layout = CacheLayout(settings.shared_cache_dir)  # constructing touches nothing
        self.root = layout.root
        self._records = RecordStore(layout)  # read methods only
        self._blobs = BlobStore(layout)  # path() only
        self._verify = verify
        self._publisher = publisher
        self._manifest: tuple[str, Manifest | None] = ("", None)
        self._good: dict[str, _Sig] = {}  # fully hashed blobs above REHASH_MAX
        self._bad: dict[str, _Sig] = {}  # blobs that did not verify (warned once)
        self._unreadable = False

    # -- finding -------------------------------------------------------------------------------
    def find(self, item: Item) -> Found | None:
        """The tier's blob of ``item``, if it has one: a few ``stat`` calls, no hashing."""
        if not item.owns_payload:
            return None  # references: their copies follow the external object, not the tier
        rec = self._record(item)
        if rec is not None:
            found = self._lookup(rec.digest, rec.algorithm, rec.size, rec)
            if found is not None:
                return found
        md5 = item.checksum
        if md5 is None:
            return None
        return self._lookup(md5.lower(), "md5", item.size_bytes, None)

    def _lookup(
        self, digest: str, algorithm: str, size: int | None, rec: ItemRecord | None
    ) -> Found | None:
        try:
            path = self._blobs.path(validate_digest(digest))
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        except OSError as exc:  # e.g. not readable by this user: say so once
            if not self._unreadable:
                self._unreadable = True
                log.warning("cannot read the shared cache %s: %s", self.root, exc)
            return None
        if size is not None and st.st_size != size:
            return None
        return Found(path, digest, algorithm, st.st_size, rec)

    def _record(self, item: Item) -> ItemRecord | None:
        """The tier's record of this very item version, when it may be trusted for it."""
        try:
            rec = self._records.item(self.url, item.name)
        except (OSError, AiofolioError):
            return None
        if (
            rec is None
            or rec.version_token.split("#", 1)[0] != version_token(item)
            or rec.payload != payload_path(item)
            or (item.size_bytes is not None and rec.size != item.size_bytes)
        ):
            return None
        if item.checksum is not None:
            # The version token holds the MD5 the tier's download was verified against.
            if rec.algorithm == "md5" and rec.digest != item.checksum.lower():
                return None
            return rec
        if rec.verified_by in UNVERIFIED or not self._saved_with(item):
            return None
        return rec

    def _saved_with(self, item: Item) -> bool:
        """Whether the manifest the tier saved for this bundle holds ``item`` (all fields)."""
        try:
            loaded = self._records.load(self.url)
        except (OSError, AiofolioError):
            return False
        if loaded is None:
            return False
        record, data = loaded
        if data is None:
            return False
        if self._manifest[0] != record.manifest_md5:
            try:
                manifest: Manifest | None = parse_manifest(data, source=f"{self.root} (shared)")
            except (AiofolioError, ValueError):
                manifest = None
            self._manifest = (record.manifest_md5, manifest)
        saved = self._manifest[1]
        if saved is None:
            return False
        want = _fields(item)
        return any(_fields(v) == want for v in saved.versions(item.name))

    # -- verifying -----------------------------------------------------------------------------
    def verify(self, found: Found, full: bool = False) -> bool:
        """Whether ``found`` holds the item's bytes (blocking for big blobs); warns if not."""
        key = str(found.path)
        try:
            sig = _sig(os.stat(found.path))
            if self._bad.get(key) == sig:
                return False  # warned already
            if found.rec is not None:
                ok = self._verify(found.path, found.rec, full)
            elif self._good.get(key) == sig and not full:
                ok = True
            else:
                got = hash_file(found.path, ("md5",)).hexdigest("md5")
                ok = got == found.digest and sig[1] == found.size
                if ok and found.size > REHASH_MAX:
                    self._good[key] = sig
        except OSError as exc:
            log.warning("cannot read %s of the shared cache: %s", found.path, exc)
            return False
        if not ok:
            self._bad[key] = sig
            log.warning(
                "the shared cache's copy %s does not verify; skipping it (downloading instead)",
                found.path,
            )
        return ok

    # -- hits ------------------------------------------------------------------------------------
    def hit_now(self, item: Item) -> Path | None:
        """A small (at most 256 KiB) verified hit, synchronously; None: ask :meth:`hit`."""
        found = self.find(item)
        if found is None or found.size > INLINE_MAX or self.copy or not self.verify(found):
            return None
        self._count(item, found.size)
        return found.path

    async def hit(self, item: Item) -> Path | None:
        """``item``'s verified blob from the tier (or its local copy), or None (a miss)."""
        found = self.find(item)
        if found is None:
            return None
        settings = self.scope.settings
        if self.copy and should_cache(found.size, settings, False):
            copied = await in_thread(self._copy_in, item, found)
            if copied is False:
                return None  # did not verify (warned)
            if isinstance(copied, Path):
                self._count(item, found.size)
                return copied
        if found.size <= INLINE_MAX:
            ok = self.verify(found)  # microseconds for a small blob
        else:
            ok = await in_thread(self.verify, found)
        if not ok:
            return None
        self._count(item, found.size)
        return found.path

    def _count(self, item: Item, size: int) -> None:
        self.rt.stats.add(self.url, hits=1, shared_hits=1, bytes_from_cache=size)
        self.rt.stats.record_access(self.url, item.name)
        if self.scope.settings.log_cache_hits:
            log.info("shared cache hit: %r of %s (%d bytes)", item.name, self.url, size)

    # -- copying into the local tier -------------------------------------------------------------
    def _copy_in(self, item: Item, found: Found) -> Path | bool:
        """Copy (or hard-link) a tier blob into the local tier, verified, under the limits.

        Returns:
            The local blob; True when no copy was made (the limits refused it, or the local
            tier could not take it: serve the tier's blob); False when it did not verify.
        """
        settings, quota, local = self.scope.settings, self.rt.quota, self.rt.blobs
        what = f"local copy of {item.name!r} of {self.url} from the shared cache"
        try:
            ticket = quota.reserve(settings, found.size, what)
        except CacheFullError as exc:
            log.warning("%s skipped: %s", what, exc)
            return True
        published = False
        algorithm = settings.checksum_algorithm
        algorithms = sorted({algorithm, FAST_ALGORITHM, found.algorithm})
        try:
            tmp = local.new_temp()
            try:
                hashers, linked = _link_or_copy(found.path, tmp, algorithms)
                if hashers.hexdigest(found.algorithm) != found.digest or (
                    hashers.size != found.size
                ):
                    self._bad[str(found.path)] = _sig(os.stat(found.path))
                    log.warning(
                        "the shared cache's copy %s does not verify; skipping it "
                        "(downloading instead)",
                        found.path,
                    )
                    return False
                digest = hashers.hexdigest(algorithm)
                if linked:  # the tier's inode, 0444 already: no chmod (it is not ours)
                    final = local.path(digest)
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, final)
                else:
                    final = local.publish(tmp, digest)
                published = True
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            rec = self._publisher.new_record(item, hashers, digest, hashers.size)
            origin = found.rec.verified_by if found.rec is not None else "md5 (manifest)"
            by = f"{origin}, shared cache {'link' if linked else 'copy'}"
            self._publisher.record(msgspec.structs.replace(rec, verified_by=by))
            quota.after_publish(ticket, settings, digest, hashers.size)
            return final
        except (OSError, AiofolioError) as exc:
            log.warning("%s failed: %s", what, exc)
            return True
        finally:
            if not published:
                quota.release(ticket)


def _link_or_copy(src: Path, dest: Path, algorithms: list[str]) -> tuple[Hashers, bool]:
    """Hard-link ``src`` at ``dest`` where allowed (a read-only file on this filesystem), else
    copy it; hash what ``dest`` holds either way."""
    linked = False
    with contextlib.suppress(OSError):
        if not os.stat(src).st_mode & _WRITE_BITS:
            os.link(src, dest)
            linked = True
    if linked:  # never written through: ``dest`` is the tier's inode now
        return hash_file(dest, algorithms), True
    hashers = Hashers(algorithms)
    with open(src, "rb") as fh, open(dest, "xb") as out:
        while block := fh.read(1 << 20):
            hashers.update(block)
            out.write(block)
    return hashers, False
