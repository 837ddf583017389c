"""Parsing of the response headers the HTTP-speaking backends share (pure functions, no I/O).

Owns: entity tags (strong and weak, as tokens), ``Content-Range``, ``Content-Encoding``, and
the digests a store states about an object: S3's ETag (when it is the content's MD5) and
``x-amz-checksum-crc32c``, GCS's ``x-goog-hash``, and HTTP's ``Content-MD5``, ``Digest``
(RFC 3230) and ``Repr-Digest`` (RFC 9530). Each parser takes the header strings as servers
send them and returns ``None`` for anything it cannot vouch for.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "ContentRange",
    "content_codings",
    "content_range_total",
    "crc32c_from_s3",
    "goog_hashes",
    "header_values",
    "http_digests",
    "is_weak",
    "md5_from_s3_etag",
    "parse_content_range",
    "parse_etag",
    "quote_etag",
    "same_entity",
]

MD5_SOURCES = ("etag", "store", "content-md5", "digest")
"""The values of :attr:`~aiofolio.backends.base.ObjectStat.md5_source`."""

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


def header_values(headers: Mapping[str, Any], name: str) -> list[str]:
    """Every value of header ``name`` (aiohttp multidicts keep repeats; plain dicts one)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return [str(v) for v in getall(name, [])]
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return [] if value is None else [str(value)]


# -- entity tags ----------------------------------------------------------------------------


def parse_etag(value: str | None) -> str | None:
    """An ETag header as a token: ``"abc"`` gives ``abc``, a weak ``W/"abc"`` gives ``W/abc``.

    The weak marker is kept because it changes what the token may be used for: RFC 9110
    compares ``If-Match`` strongly, so a weak tag can never satisfy it (see :func:`quote_etag`
    and the HTTP backend).
    """
    if not value:
        return None
    value = value.strip()
    weak = value[:2] in ("W/", "w/")
    if weak:
        value = value[2:].strip()
    value = value.strip('"')
    if not value:
        return None
    return f"W/{value}" if weak else value


def is_weak(token: str | None) -> bool:
    """Whether a token (from :func:`parse_etag`) is a weak entity tag."""
    return token is not None and token.startswith("W/")


def quote_etag(token: str) -> str:
    """A token back in header form: ``abc`` gives ``"abc"``, ``W/abc`` gives ``W/"abc"``."""
    if is_weak(token):
        return f'W/"{token[2:]}"'
    return f'"{token}"'


def same_entity(a: str | None, b: str | None) -> bool:
    """Weak comparison of two tokens (RFC 9110 8.8.3.2): equal opaque parts, W/ ignored."""
    if a is None or b is None:
        return False
    return a.removeprefix("W/") == b.removeprefix("W/")


# -- ranges and codings ---------------------------------------------------------------------


class ContentRange(NamedTuple):
    """A parsed ``Content-Range``: ``[start, end)`` of the body, and the object's total size.

    ``start``/``end`` are None for ``bytes */N`` (a 416's form); ``total`` is None for ``/*``.
    """

    start: int | None
    end: int | None
    total: int | None


_CONTENT_RANGE = re.compile(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)\s*/\s*(\d+|\*)\s*", re.IGNORECASE)


def parse_content_range(value: str | None) -> ContentRange | None:
    """``bytes 0-9/100`` gives ``(0, 10, 100)``; ``bytes */100`` gives ``(None, None, 100)``.

    An empty range ``bytes N-(N-1)/T`` gives ``(N, N, T)``. Returns None for an absent,
    malformed or inverted header.
    """
    if not value:
        return None
    m = _CONTENT_RANGE.fullmatch(value)
    if m is None:
        return None
    first, last, total_s = m.groups()
    total = None if total_s == "*" else int(total_s)
    if first is None:
        return None if total is None else ContentRange(None, None, total)
    start, end = int(first), int(last) + 1
    # ``bytes N-(N-1)/N`` is how some servers (gcp-storage-emulator) say "nothing from N".
    if end < start or (total is not None and end > total):
        return None
    return ContentRange(start, end, total)


def content_range_total(value: str | None) -> int | None:
    """The ``/N`` total of a ``Content-Range``, even when its range part is unusable."""
    m = re.search(r"/\s*(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def content_codings(value: str | None) -> list[str]:
    """The content codings of a ``Content-Encoding`` header, lowercased, ``identity`` dropped."""
    if not value:
        return []
    return [c for c in (p.strip().lower() for p in value.split(",")) if c and c != "identity"]


# -- digests --------------------------------------------------------------------------------


def _b64_digest(value: str, length: int) -> bytes | None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == length else None


def _md5_b64(value: str) -> str | None:
    raw = _b64_digest(value, 16)
    return raw.hex() if raw is not None else None


def _crc32c_b64(value: str) -> str | None:
    value = value.strip()
    return value if _b64_digest(value, 4) is not None else None


_KMS = ("aws:kms", "aws:kms:dsse")


def md5_from_s3_etag(
    etag: str | None,
    *,
    server_side_encryption: str | None = None,
    sse_customer_algorithm: str | None = None,
) -> str | None:
    """The content MD5 an S3 ETag states, or None.

    Only a single-part upload's ETag is the MD5 (32 hex digits, no ``-N`` part count), and only
    when the object is not encrypted with SSE-KMS (``x-amz-server-side-encryption: aws:kms`` or
    ``aws:kms:dsse``) or SSE-C (``x-amz-server-side-encryption-customer-algorithm``): those
    ETags are opaque. SSE-S3 (``AES256``) keeps the MD5.
    """
    if not etag:
        return None
    tag = etag.strip().strip('"')
    if not _HEX32.fullmatch(tag):
        return None
    if server_side_encryption and server_side_encryption.strip().lower() in _KMS:
        return None
    if sse_customer_algorithm:
        return None
    return tag.lower()


def crc32c_from_s3(value: str | None, checksum_type: str | None = None) -> str | None:
    """A full-object CRC32C from ``x-amz-checksum-crc32c`` (base64), or None.

    A multipart object's checksum may be COMPOSITE (a checksum of the part checksums, shown as
    ``xxxx==-N``): that is not the content's CRC32C and is dropped.
    """
    if not value:
        return None
    if checksum_type and checksum_type.strip().upper() == "COMPOSITE":
        return None
    if "-" in value:
        return None
    return _crc32c_b64(value)


def goog_hashes(values: list[str]) -> tuple[str | None, str | None]:
    """``x-goog-hash: crc32c=...,md5=...`` (one header or several) to (md5 hex, crc32c b64)."""
    md5 = crc = None
    for part in ",".join(v for v in values if v).split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name == "md5" and value:
            md5 = _md5_b64(value) or md5
        elif name == "crc32c" and value:
            crc = _crc32c_b64(value) or crc
    return md5, crc


def _digest_md5(values: list[str]) -> str | None:
    """``Digest: SHA-256=..., MD5=...`` (RFC 3230; algorithm names are case-insensitive)."""
    for part in ",".join(values).split(","):
        name, sep, value = part.strip().partition("=")
        if sep and name.strip().lower() == "md5":
            md5 = _md5_b64(value)
            if md5 is not None:
                return md5
    return None


def _repr_digest_md5(values: list[str]) -> str | None:
    """``Repr-Digest: sha-256=:...:, md5=:...:`` (an RFC 8941 dictionary of byte sequences)."""
    for member in ",".join(values).split(","):
        name, sep, value = member.strip().partition("=")
        if not sep or name.strip().lower() != "md5":
            continue
        value = value.split(";", 1)[0].strip()  # drop parameters
        if len(value) >= 2 and value[0] == ":" and value[-1] == ":":
            md5 = _md5_b64(value[1:-1])
            if md5 is not None:
                return md5
    return None


def http_digests(headers: Mapping[str, Any], *, whole_body: bool) -> tuple[str | None, str | None]:
    """The object's MD5 stated by an HTTP response, and where it came from.

    ``Repr-Digest`` and ``Digest`` describe the whole selected representation (so they hold for
    a 206 too): source ``"digest"``. ``Content-MD5`` describes the body sent, so it is used
    only when ``whole_body`` (a 200, a HEAD, or a 206 that covers every byte): source
    ``"content-md5"``. Call this only for unencoded responses; an encoded one's digests
    describe the encoded bytes.

    Returns:
        ``(md5 hex, md5_source)`` or ``(None, None)``.
    """
    md5 = _repr_digest_md5(header_values(headers, "Repr-Digest"))
    if md5 is None:
        md5 = _digest_md5(header_values(headers, "Digest"))
    if md5 is not None:
        return md5, "digest"
    if whole_body:
        for value in header_values(headers, "Content-MD5"):
            md5 = _md5_b64(value)
            if md5 is not None:
                return md5, "content-md5"
    return None, None
