"""The large-file policy as pure decisions: what to cache, and when a bundle grew too big.

Owns: :func:`should_cache` (whether a read puts an item into the cache, from its size,
``large_file_threshold``, ``cache_large_files`` and a per-call ``force_cache``),
:func:`is_large`, :func:`owned_payload_bytes` (what a bundle's own payloads weigh, counted
from its manifest) and :func:`growth_warning` (the text of the
:class:`~aiofolio.errors.LargeFileWarning` an ``add`` raises, or None). No I/O, no ``await``:
the engine asks, the policy answers.

"Large" means at or above ``large_file_threshold`` (as the setting is documented). An item of
unknown size is never large: the policy does not add a request to learn a size.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiofolio.bundle.manifest import ITEM_TYPE_DIRS, Item, payload_path
from aiofolio.config import Settings, human_size

__all__ = ["growth_warning", "human_size", "is_large", "owned_payload_bytes", "should_cache"]


def is_large(size: int | None, threshold: int) -> bool:
    """Whether ``size`` bytes is at or above ``threshold`` (an unknown size is not large)."""
    return size is not None and size >= threshold


def should_cache(item_size: int | None, settings: Settings, force_cache: bool = False) -> bool:
    """Whether a read should put an item of ``item_size`` bytes into the cache.

    Args:
        item_size: The payload size from the manifest, or None when it is not recorded.
        settings: The folio's settings (``large_file_threshold``, ``cache_large_files``).
        force_cache: ``get(name, force_cache=True)``: cache it whatever its size.

    Returns:
        False only for a large item (see :func:`is_large`) with ``cache_large_files`` off (or
        ``stream_large_files`` on) and no ``force_cache``; such an item is streamed to a
        private scratch file instead.
    """
    if force_cache or (settings.cache_large_files and not settings.stream_large_files):
        return True
    return not is_large(item_size, settings.large_file_threshold)


def owned_payload_bytes(items: Iterable[Item]) -> int:
    """The bytes of the payloads a bundle owns, each payload counted once.

    Every descriptor that owns a payload counts (current ones and older versions a snapshot
    keeps); references own nothing; a payload two descriptors share counts once; a payload
    of unrecorded size counts as 0.
    """
    seen: set[str] = set()
    total = 0
    for item in items:
        if not item.owns_payload or item.item_type not in ITEM_TYPE_DIRS:
            continue
        path = payload_path(item)
        if path in seen:
            continue
        seen.add(path)
        total += item.size_bytes or 0
    return total


def growth_warning(
    *,
    name: str,
    item_size: int | None,
    before: int,
    after: int,
    items: int,
    threshold: int,
    is_table: bool,
) -> str | None:
    """The ``LargeFileWarning`` text for adding item ``name``, or None for no warning.

    Two cases warn, as the seed's large-file policy does, in one message when both hold:

    * the item itself is large (at or above ``threshold``): on every such add;
    * the bundle's owned payload bytes cross the threshold with this add (``before`` below
      it, ``after`` at or above it): once per crossing, not on every later add. A bundle
      that shrinks below the threshold (a delete, a conversion to a reference) and grows
      past it again warns again.

    Args:
        name: The item added.
        item_size: Its payload size in bytes (None: unknown).
        before: Owned payload bytes of the bundle before the add.
        after: Owned payload bytes after it.
        items: Number of current items after the add.
        threshold: ``large_file_threshold``.
        is_table: The item is an included table (then the advice names references).
    """
    parts: list[str] = []
    if is_large(item_size, threshold):
        assert item_size is not None
        parts.append(
            f"item {name!r} is {human_size(item_size)}, at or above large_file_threshold "
            f"({human_size(threshold)}); it is included in the bundle"
        )
    if before < threshold <= after:
        parts.append(
            f"the bundle now holds {human_size(after)} in {items} item(s), past "
            f"large_file_threshold ({human_size(threshold)})"
        )
    if not parts:
        return None
    advice = (
        f"consider a reference instead: convert_to_reference({name!r}), or "
        f"optimize_storage() for every large table"
        if is_table
        else "consider keeping large tables as references: optimize_storage()"
    )
    return "; ".join(parts) + f". {advice[0].upper()}{advice[1:]}"
