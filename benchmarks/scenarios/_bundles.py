"""Bundles for the benchmarks, written without aiofolio: by hand in datafolio 2.x format, or by
the real ``datafolio`` package in a subprocess.

- :func:`write_json_bundle`: a folder with ``items.json`` and one ``json_data`` payload per
  item (``artifacts/<name>--r<k>.json``, MD5 ``checksum``, no ``size_bytes``), the layout
  datafolio 2.3.0 writes. It is plain ``json`` + ``hashlib``, so a bundle of 100,000 items
  takes seconds instead of 100,000 commits, and it does not depend on aiofolio's internals.
- :func:`kept_bundle`: such a bundle kept between runs under ``benchmarks/out/bundles/``
  (git-ignored), keyed by its parameters; built in a temporary sibling and renamed into place,
  so a run killed half-way leaves nothing that looks complete.
- :func:`datafolio_write`: ``datafolio.DataFolio(path).add(name, array)`` in a child process
  (local folder or ``s3://http://127.0.0.1:PORT/bucket/prefix`` for moto), with HOME and the
  cloud-files folders pointed at scratch folders and fake AWS credentials, so the package can
  never pick up a real credential file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiofolio.testing import AWS_TEST_ENV

#: Bundles kept between runs (benchmarks/out is git-ignored).
KEPT_ROOT = Path(__file__).resolve().parents[1] / "out" / "bundles"
#: Bump when the layout written here changes: kept bundles of another version are rebuilt.
FORMAT_VERSION = 1
_COMPLETE = ".complete"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def json_payload(i: int, size: int) -> bytes:
    """The deterministic JSON document of item ``i``, exactly ``size`` bytes (distinct per
    item, so the cache cannot share blobs between items)."""
    head = json.dumps({"i": i, "pad": ""}).encode()
    fill = size - len(head)
    if fill < 0:
        raise ValueError(f"{size} bytes is too small for item {i}")
    digest = hashlib.sha256(str(i).encode()).hexdigest()
    pad = (digest * (fill // len(digest) + 1))[:fill]
    return json.dumps({"i": i, "pad": pad}).encode()


def json_value(i: int, size: int) -> dict[str, Any]:
    """What ``get`` of item ``i`` must return."""
    value: dict[str, Any] = json.loads(json_payload(i, size))
    return value


def write_json_bundle(
    root: Path, items: Iterable[tuple[str, bytes]], metadata: dict[str, Any] | None = None
) -> int:
    """Write a datafolio 2.x bundle of ``json_data`` items (``(name, payload)``) into ``root``
    (created); ``items.json`` last. Returns the number of items."""
    root.mkdir(parents=True, exist_ok=True)
    now = _now()
    entries: list[dict[str, Any]] = []
    made: set[Path] = set()
    for k, (name, payload) in enumerate(items):
        version = f"{name}--r{k + 2}"  # r1 created the bundle; item k was added at r(k+2)
        filename = f"{version}.json"
        path = root / "artifacts" / filename
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(payload)
        entries.append(
            {
                "name": name,
                "item_type": "json_data",
                "filename": filename,
                "checksum": hashlib.md5(payload, usedforsecurity=False).hexdigest(),
                "data_type": "dict",
                "created_at": now,
                "version_id": version,
                "is_current": True,
            }
        )
    meta = dict(metadata or {})
    meta.update(
        created_at=now,
        updated_at=now,
        _datafolio={"version": "2.3.0", "created_by": "aiofolio-benchmarks"},
    )
    doc = {
        "schema_version": 2,
        "revision": len(entries) + 1,
        "metadata": meta,
        "items": entries,
        "snapshots": {},
    }
    (root / "items.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return len(entries)


def kept_bundle(key: str, build: Callable[[Path], object], log: Callable[[str], None]) -> Path:
    """The bundle folder ``KEPT_ROOT/<key>-v<FORMAT_VERSION>``, built by ``build(folder)``
    the first time (in a temporary sibling, renamed into place when complete)."""
    final = KEPT_ROOT / f"{key}-v{FORMAT_VERSION}"
    if (final / _COMPLETE).is_file():
        log(f"  reusing the kept bundle {final}")
        return final
    KEPT_ROOT.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(final, ignore_errors=True)  # an incomplete one
    tmp = KEPT_ROOT / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
        (tmp / _COMPLETE).write_text(_now(), encoding="utf-8")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"  built the kept bundle {final}")
    return final


# -- the real datafolio, in a child process ---------------------------------------------------

_WRITER = r"""
import json, sys
import numpy as np
import datafolio

cfg = json.loads(sys.argv[1])
array = np.fromfile(cfg["array_file"], dtype=cfg["dtype"])
folio = datafolio.DataFolio(cfg["path"])
folio.add(cfg["name"], array)
print(json.dumps({"datafolio": datafolio.__version__}), flush=True)
"""


def datafolio_available() -> str | None:
    """datafolio's version if the package is installed, else None."""
    import importlib.metadata

    try:
        return importlib.metadata.version("datafolio")
    except importlib.metadata.PackageNotFoundError:
        return None


def datafolio_write(
    path: str, name: str, array_file: Path, dtype: str, home: Path, timeout_s: float = 600.0
) -> str:
    """``datafolio.DataFolio(path).add(name, np.fromfile(array_file, dtype))`` in a child
    process; returns datafolio's version. ``home`` is a scratch folder used as HOME (so the
    cloud-files secrets lookups find nothing real)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in {"http_proxy", "https_proxy", "all_proxy"}
    }
    env.update(AWS_TEST_ENV)
    env.update(
        HOME=str(home),
        CLOUD_VOLUME_DIR=str(home / "cloudvolume"),
        CLOUD_FILES_DIR=str(home / "cloudfiles"),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    cfg = {"path": path, "name": name, "array_file": str(array_file), "dtype": dtype}
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, json.dumps(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"datafolio write to {path} failed: {done.stderr.strip()[-600:]}")
    version: str = json.loads(done.stdout.strip().splitlines()[-1])["datafolio"]
    return version
