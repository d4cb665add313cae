"""Runs: starting, retrying and steering them, and reading what they did.

``record`` holds the typed record of a run (run → phases → stages → calls) and ``read_run``
reads one back from the Prefect API; ``read_runs`` lists runs with what their records say,
newest first, and ``read_bundles`` reads the context bundles a run's calls used. The modules:
``_run`` (running a compiled definition and retrying a run), ``_entry`` (the Python API's
entry points, on the CLI's Prefect API), ``_control`` (pause, resume, cancel), ``_read``,
``_list``, ``_find`` and ``_bundles`` (reading). They read only the Prefect API, so they work
the same for a run of this process, of another one or of a worker elsewhere, and after a
crash. Names are imported on first use: the phase scheduler, which writes records, imports
``taskmark.runs.record`` alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["STATES", "RunNotFound", "RunSummary", "read_bundles", "read_runs"]

if TYPE_CHECKING:
    from taskmark.runs._bundles import read_bundles
    from taskmark.runs._find import RunNotFound
    from taskmark.runs._list import STATES, read_runs
    from taskmark.runs._summary import RunSummary

_WHERE = {
    "STATES": "taskmark.runs._list",
    "read_runs": "taskmark.runs._list",
    "RunNotFound": "taskmark.runs._find",
    "RunSummary": "taskmark.runs._summary",
    "read_bundles": "taskmark.runs._bundles",
}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the name is
    if name not in _WHERE:
        raise AttributeError(f"module 'taskmark.runs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)
