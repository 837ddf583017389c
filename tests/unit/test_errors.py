"""The error tree: exports, builtin inheritance, messages and pickling."""

from __future__ import annotations

import inspect
import pickle

import pytest

import aiofolio
from aiofolio import errors


def _public_classes() -> list[type[BaseException]]:
    return [
        obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and not name.startswith("_")
    ]


def test_every_error_and_warning_is_exported_at_top_level() -> None:
    classes = _public_classes()
    assert len(classes) >= 25
    for cls in classes:
        assert cls.__name__ in aiofolio.__all__, cls
        assert getattr(aiofolio, cls.__name__) is cls


def test_errors_derive_from_the_root_and_warnings_from_the_warning_root() -> None:
    for cls in _public_classes():
        if issubclass(cls, Warning):
            assert issubclass(cls, errors.AiofolioWarning)
            assert issubclass(cls, UserWarning)
        else:
            assert issubclass(cls, errors.AiofolioError), cls


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.ItemNotFoundError, KeyError),
        (errors.NotCachedError, FileNotFoundError),
        (errors.ConfigError, ValueError),
        (errors.RemoteNotFoundError, FileNotFoundError),
        (errors.RemotePermissionError, PermissionError),
        (errors.RemoteTimeoutError, TimeoutError),
        (errors.CacheLockTimeout, TimeoutError),
        (errors.ReadOnlyError, PermissionError),
        (errors.UsageError, RuntimeError),
        (errors.InvalidArgumentError, ValueError),
        (errors.InvalidArgumentError, RuntimeError),
        (errors.ArgumentTypeError, TypeError),
        (errors.ArgumentTypeError, RuntimeError),
        (errors.RemoteError, OSError),
    ],
)
def test_builtin_inheritance(cls: type[BaseException], builtin: type[BaseException]) -> None:
    assert issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise cls("boom")


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (errors.RemoteTimeoutError, errors.TransientError),
        (errors.ThrottledError, errors.TransientError),
        (errors.TransientError, errors.RemoteError),
        (errors.ChecksumMismatchError, errors.IntegrityError),
        (errors.UnsupportedManifestVersionError, errors.ManifestError),
        (errors.ConcurrentWriteError, errors.ManifestError),
        (errors.CacheFullError, errors.CacheError),
        (errors.CacheCorruptedError, errors.CacheError),
        (errors.InvalidArgumentError, errors.UsageError),
        (errors.ArgumentTypeError, errors.UsageError),
        (errors.StaleDataWarning, errors.AiofolioWarning),
        (errors.RemoteUpdateWarning, errors.AiofolioWarning),
        (errors.LargeFileWarning, errors.AiofolioWarning),
    ],
)
def test_tree_shape(child: type[BaseException], parent: type[BaseException]) -> None:
    assert issubclass(child, parent)


def test_not_found_message_is_not_quoted_like_a_keyerror() -> None:
    err = errors.ItemNotFoundError("no item 'x'; did you mean 'y'?")
    assert str(err) == "no item 'x'; did you mean 'y'?"


def test_remote_error_keeps_url_and_status_through_pickle() -> None:
    err = errors.RemoteNotFoundError("not found: s3://b/k (HTTP 404)", url="s3://b/k", status=404)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is errors.RemoteNotFoundError
    assert (back.url, back.status, str(back)) == ("s3://b/k", 404, str(err))
    throttled = errors.ThrottledError("slow down", url="u", status=429)
    throttled.retry_after = 1.5
    assert pickle.loads(pickle.dumps(throttled)).retry_after == 1.5


def test_module_docstring_draws_every_class() -> None:
    doc = errors.__doc__ or ""
    for cls in _public_classes():
        assert cls.__name__ in doc, cls
        assert cls.__doc__, cls


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [(errors.InvalidArgumentError, ValueError), (errors.ArgumentTypeError, TypeError)],
)
def test_usage_errors_are_caught_by_the_builtin_they_replaced(
    cls: type[errors.UsageError], builtin: type[Exception]
) -> None:
    """Code written when these were plain ValueError/TypeError keeps catching them."""
    try:
        raise cls("bad argument")
    except builtin as exc:  # the old ``except ValueError:`` / ``except TypeError:``
        caught: Exception = exc
    assert isinstance(caught, errors.UsageError)
    assert isinstance(caught, errors.AiofolioError)
    assert str(caught) == "bad argument"
    assert type(pickle.loads(pickle.dumps(caught))) is cls
    with pytest.raises(errors.UsageError, match="bad argument"):
        raise cls("bad argument")
