"""The 1.x names and the caching seed's spellings, on real bundles.

* ``add_sklearn``/``get_sklearn`` store and load an estimator datafolio reads back.
* ``configure_cache(enabled=, default_ttl=, stale_warning=, shared_cache_priority=)`` set the
  settings they name; ``configure_large_file_policy`` and ``add(force_include=,
  as_reference=)`` decide included or referenced, with the seed's warnings.
* A three-argument ``on_cache_invalidation`` callback gets ``(name, old, new)``.
* ``cache_stats`` has the seed's keys; ``cache_status()`` without a name covers every item;
  ``clear_cache(name)`` and ``refresh_cache(name)`` act on one item.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datafolio
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from aiofolio import ConfigError, DataFolio, LargeFileWarning, RemoteUpdateWarning
from aiofolio._seed_compat import reset_large_file_policy
from aiofolio.config import resolve_settings
from aiofolio.testing import MotoServer

TABLE = pd.DataFrame({"a": list(range(2000)), "b": [f"v{i}" for i in range(2000)]})


@pytest.fixture(autouse=True)
def _policy() -> Iterator[None]:
    reset_large_file_policy()
    yield
    reset_large_file_policy()


def test_sklearn_names(tmp_path: Path) -> None:
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.5]])
    clf = LogisticRegression().fit(x, [0, 0, 1, 1])
    folio = DataFolio(tmp_path / "b")
    folio.add_sklearn("clf", clf, description="a classifier")
    got = folio.get_sklearn("clf")
    np.testing.assert_array_equal(got.predict(x), clf.predict(x))
    assert folio.item_info("clf")["item_type"] == "model"
    theirs = datafolio.DataFolio(folio.path, read_only=True)
    np.testing.assert_array_equal(theirs.get_model("clf").predict(x), clf.predict(x))


def test_configure_cache_seed_spellings() -> None:
    DataFolio.configure_cache(enabled=False, default_ttl=120, shared_cache_priority="fallback")
    settings = resolve_settings().settings
    assert settings.cache_enabled is False
    assert settings.cache_ttl == 120
    with pytest.raises(ConfigError):
        DataFolio.configure_cache(default_ttl=1, cache_ttl=2)
    with pytest.raises(ConfigError):
        DataFolio.configure_cache(shared_cache_priority="primary")
    with pytest.raises(ConfigError):
        DataFolio.configure_cache(stale_warning="no")
    DataFolio.configure_cache(stale_warning=False)
    with warnings.catch_warnings(record=True) as seen:
        from aiofolio import StaleDataWarning

        warnings.warn(StaleDataWarning("stale"), stacklevel=1)
    assert seen == []


def _size(folio: DataFolio, name: str) -> int:
    return int(folio.item_info(name)["size_bytes"])


def test_large_file_policy_and_add_options(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    folio.add("probe", TABLE)
    size = _size(folio, "probe")
    DataFolio.configure_large_file_policy(size_threshold=size - 1, default_action="reference")
    folio = DataFolio(tmp_path / "b")  # opened after the policy: its threshold applies
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        folio.add("big", TABLE)
    assert [str(w.message) for w in seen if w.category is LargeFileWarning] == [
        str(seen[-1].message)
    ]
    assert "REFERENCE" in str(seen[-1].message)  # one warning, the policy's
    info = folio.item_info("big")
    assert info["item_type"] == "referenced_table"
    assert Path(info["path"].removeprefix("file://")).is_file()  # its payload, in tables/
    assert folio.get("big").equals(TABLE)
    with pytest.warns(LargeFileWarning, match="included in the bundle"):
        folio.add("kept", TABLE, force_include=True)
    assert folio.item_info("kept")["item_type"] == "included_table"
    DataFolio.configure_large_file_policy(warn_on_include=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=LargeFileWarning)
        folio.add("quiet", TABLE, force_include=True)
    folio.add("small", 1)  # not a table: never referenced
    assert folio.item_info("small")["item_type"] == "json_data"
    DataFolio.configure_large_file_policy(default_action="include")
    folio.add("small_ref", TABLE.head(3), as_reference=True)
    assert folio.item_info("small_ref")["item_type"] == "referenced_table"
    with pytest.raises(TypeError, match="needs a table"):
        folio.add("arr", np.arange(3), as_reference=True)
    with pytest.raises(ValueError, match="not both"):
        folio.add("x", TABLE, as_reference=True, force_include=True)
    with pytest.raises(ValueError, match="default_action"):
        DataFolio.configure_large_file_policy(default_action="drop")
    assert datafolio.DataFolio(folio.path, read_only=True).is_valid()


def test_seed_cache_methods(moto_server: MotoServer, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/seed"
    writer = DataFolio(url, storage_options=moto_server.storage_options(), cache_enabled=False)
    writer.add("a", 1)
    writer.add("b", [1, 2])
    now = [1000.0]
    folio = DataFolio(
        url, storage_options=moto_server.storage_options(), clock=lambda: now[0], cache_ttl=10
    )
    calls: list[tuple[Any, ...]] = []

    def seed_callback(item_name: str, old: Any, new: Any) -> None:
        calls.append((item_name, old["version_id"], new["version_id"]))

    assert folio.on_cache_invalidation(seed_callback) is seed_callback
    two: list[Any] = []
    folio.on_cache_invalidation(lambda old, new: two.append(new["name"]))
    assert folio.get("a") == 1
    assert folio.get("a") == 1
    statuses = folio.cache_status()
    assert set(statuses) == {"a", "b"}
    assert statuses["a"]["cached"] is True
    assert statuses["b"]["cached"] is False
    stats = folio.cache_stats()
    assert stats["cache_hit_rate"] == stats["hit_rate"] == 0.5
    whole = DataFolio.cache_stats()
    for key in ("total_size", "total_bundles", "total_items", "cache_hit_rate", "oldest_access"):
        assert key in whole, key
    assert whole["total_items"] >= 1
    assert whole["total_size"] > 0

    folio.clear_cache("a")
    assert folio.cache_status("a")["cached"] is False
    assert folio.get("b") == [1, 2]
    writer.add("a", 2, overwrite=True)
    with pytest.warns(RemoteUpdateWarning):
        folio.refresh_cache("a")
    assert calls == [("a", "a--r2", "a--r4")]
    assert two == ["a"]
    assert folio.cache_status("a")["cached"] is True
    assert folio.get("a") == 2
    folio.clear_cache()
    assert not any(s["cached"] for s in folio.cache_status().values())
