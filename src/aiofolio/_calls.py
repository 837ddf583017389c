"""Small adapters between the facade's methods and the engine (private).

Owns: :func:`threaded` (run a blocking function in a worker thread, as a coroutine function
the portal can call), :func:`kw` (bind keyword arguments, which the portal does not pass) and
:class:`hybrid` (a method callable on the class and on instances). All three keep the wrapped
function's parameters and return type, for mypy (``ParamSpec``) and for ``inspect.signature``
(IDEs, ``help()``).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast

__all__ = ["hybrid", "kw", "threaded"]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


def threaded(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Callable[[], Awaitable[T]]:
    """A coroutine function running ``fn(*args, **kwargs)`` in a worker thread (disk work)."""

    async def run() -> T:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    return run


def kw(
    fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> Callable[[], Awaitable[T]]:
    """Bind keyword arguments (the portal passes positional ones only)."""

    async def bound() -> T:
        return await fn(*args, **kwargs)

    bound.__name__ = getattr(fn, "__name__", "bound")  # what the work is, in traces and tests
    return bound


class hybrid(Generic[P, R]):  # a decorator, named like one
    """A method that works on the class and on instances, getting whichever it was called on.

    ``DataFolio.cache_info()`` passes the class as the first argument, ``folio.cache_info()``
    the folio. Either way the attribute is a bound method of the undecorated function, so its
    signature (minus the first parameter), its docstring and ``inspect.iscoroutinefunction``
    are the function's own; mypy sees ``Callable[P, R]`` with the real parameters.
    """

    def __init__(self, fn: Callable[Concatenate[Any, P], R]) -> None:
        self.fn = fn
        functools.update_wrapper(cast(Any, self), fn)  # __doc__, __name__, __wrapped__

    def __get__(self, obj: object, owner: type[Any] | None = None) -> Callable[P, R]:
        target = obj if obj is not None else owner
        return cast("Callable[P, R]", types.MethodType(self.fn, target))
