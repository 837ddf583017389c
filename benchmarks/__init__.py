"""aiofolio's benchmark harness: ``python -m benchmarks`` (``nox -s bench``).

- :mod:`benchmarks.harness`: timing (:func:`~benchmarks.harness.measure`), statistics, the
  result model (:class:`~benchmarks.harness.Row`), ratios, JSON / Markdown / PNG writers.
- :mod:`benchmarks.context`: :class:`~benchmarks.context.Context` handed to every scenario,
  :class:`~benchmarks.context.Scenario`, the quick and full profiles.
- :mod:`benchmarks.servers`: moto, the GCS emulator and shaped-link servers, started lazily.
- :mod:`benchmarks.scenarios`: one module per scenario group, registered in ``SCENARIOS``.

See README.md in this folder for how to run it, what each row means and how to add one.
"""

from __future__ import annotations

from .context import Context, Profile, Scenario
from .harness import Row, Samples, measure, measure_async

__all__ = ["Context", "Profile", "Row", "Samples", "Scenario", "measure", "measure_async"]
