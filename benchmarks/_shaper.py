"""A shaped-link server in its own process, for the benchmarks only.

Runs :class:`aiofolio.testing.FaultServer` with one fault on every path: ``latency`` seconds
before each response and ``bandwidth`` bytes/s per response body (so per connection). It either
serves objects loaded from files (``--object /path=FILE``, or every file under a folder with
``--tree /prefix=DIR``, served as ``/prefix/<relative path>``) or forwards everything to
``--upstream`` (moto, the GCS emulator). A second tiny HTTP app on ``--admin-port`` answers
``GET /stats`` (request and byte counts as JSON) and ``POST /reset`` (zero them).

Its own process keeps the pacing off the GIL of the client being measured. It exits on SIGTERM
or SIGINT, when its parent process goes away, or after ``--max-lifetime`` seconds.
Started by :class:`benchmarks.servers.ShapingServer`; run by file path, it imports only
aiofolio and aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from aiofolio.testing import Fault, FaultServer

LOOPBACK = "127.0.0.1"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    p.add_argument("--bandwidth", type=float, default=None, help="bytes/s per response")
    p.add_argument("--upstream", default=None, help="http://127.0.0.1:PORT to forward to")
    p.add_argument("--object", action="append", default=[], help="/path=FILE to serve")
    p.add_argument(
        "--tree", action="append", default=[], help="/prefix=DIR: serve every file under DIR"
    )
    p.add_argument("--max-lifetime", type=float, default=3600.0, help="exit after this many s")
    return p.parse_args(argv)


def _stats_json(server: FaultServer) -> dict[str, object]:
    by_method: dict[str, dict[str, int]] = {}
    for rec in server.stats.records():
        m = by_method.setdefault(rec.method, {"requests": 0, "bytes": 0, "ranged": 0})
        m["requests"] += 1
        m["bytes"] += rec.bytes_sent
        m["ranged"] += rec.range is not None
    return {
        "requests": server.stats.requests(),
        "bytes": server.stats.bytes_served(),
        "by_method": by_method,
        "statuses": sorted(set(server.stats.statuses())),
    }


def _load_objects(specs: Sequence[str], trees: Sequence[str] = ()) -> dict[str, bytes]:
    objects = {}
    for spec in specs:
        path, sep, file = spec.partition("=")
        if not sep or not path.startswith("/"):
            raise SystemExit(f"bad --object {spec!r}: want /path=FILE")
        objects[path] = Path(file).read_bytes()
    for spec in trees:
        prefix, sep, folder = spec.partition("=")
        root = Path(folder)
        if not sep or not prefix.startswith("/") or not root.is_dir():
            raise SystemExit(f"bad --tree {spec!r}: want /prefix=DIR")
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                found = Path(dirpath, name)
                key = f"{prefix.rstrip('/')}/{found.relative_to(root).as_posix()}"
                objects[key] = found.read_bytes()
    return objects


async def _main(args: argparse.Namespace) -> None:
    objects = _load_objects(args.object, args.tree)
    server = FaultServer(objects, upstream=args.upstream, port=args.port, writable=False)
    objects.clear()
    if args.latency > 0 or args.bandwidth:
        server.set_fault("*", Fault(latency=args.latency, bandwidth=args.bandwidth))

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(_stats_json(server))

    async def reset(_: web.Request) -> web.Response:
        server.stats.reset()
        return web.json_response({"ok": True})

    admin = web.Application()
    admin.router.add_get("/stats", stats)
    admin.router.add_post("/reset", reset)
    runner = web.AppRunner(admin, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, args.admin_port).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    await server.start()  # the main port answers last: ready means both are up
    try:
        deadline = loop.time() + args.max_lifetime
        while not stop.is_set() and loop.time() < deadline and os.getppid() == parent:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await server.stop()
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(_main(_parse(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
