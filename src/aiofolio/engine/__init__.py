"""The asyncio engine: everything that runs on the ``aiofolio-io`` loop, below the facade.

Layout and call direction (``docs/ARCHITECTURE.md`` has the whole picture): the facade calls
:mod:`~aiofolio.engine.session` (one open bundle); a session uses
:mod:`~aiofolio.engine.manifests` (the TTL driver) and :mod:`~aiofolio.engine.blobs` (verified
reads and publishes), which use :mod:`~aiofolio.engine.quota`, :mod:`~aiofolio.engine.inuse`
and :mod:`~aiofolio.engine.evict`, which use the store, the backends and the policy.
:mod:`~aiofolio.engine._runtime` holds the engine's only process-wide state. This package
never imports the facade.
"""
