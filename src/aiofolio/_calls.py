"""Small adapters between the sync facade's methods and the engine (private).

Owns: :func:`threaded` (run a blocking function in a worker thread, as a coroutine
function the portal can call), :func:`kw` (bind keyword arguments, which the portal does not
pass) and :class:`hybrid` (a method callable on the class and on instances).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["hybrid", "kw", "threaded"]

T = TypeVar("T")


def threaded(fn: Callable[..., T], *args: Any) -> Callable[[], Awaitable[T]]:
    """A coroutine function running ``fn(*args)`` in a worker thread (disk work)."""

    async def run() -> T:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(lambda: fn(*args))

    return run


class hybrid:  # a decorator, named like one
    """A method that works on the class and on instances, getting whichever it was called on."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> Callable[..., Any]:
        target = obj if obj is not None else owner
        return lambda *args, **kwargs: self.fn(target, *args, **kwargs)


def kw(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> Callable[[], Awaitable[T]]:
    """Bind keyword arguments (the portal passes positional ones only)."""

    async def bound() -> T:
        return await fn(*args, **kwargs)

    return bound
