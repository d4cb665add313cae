"""taskmark: markdown LLM workflows compiled into Prefect 3 flows.

::

    import taskmark
    definition = taskmark.load("definitions/daily-market-analysis.md")
    flow = taskmark.compile(definition)          # a prefect.Flow
    result = taskmark.run("definitions/daily-market-analysis.md", question="What moved BTC?")
    taskmark.on("phase:complete", print)
    record = taskmark.read_run(result.flow_run_id)  # the run's typed record

Names are imported on first use, so ``import taskmark`` costs neither Prefect nor litellm.
``run``, ``arun`` and ``aretry`` use the same Prefect API as the CLI: ``PREFECT_API_URL`` when
it is set, else taskmark's local server, started if needed (never Prefect's ephemeral one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RunRecord", "RunResult", "aread_run", "aretry", "arun", "compile", "load", "on", "read_run", "run"]

if TYPE_CHECKING:
    from taskmark.definition import load_definition as load
    from taskmark.flows import compile
    from taskmark.runs._entry import aread_run, aretry, arun, read_run, run
    from taskmark.runs._run import RunResult, on
    from taskmark.runs.record import RunRecord

_WHERE = {
    "load": ("taskmark.definition", "load_definition"),
    "compile": ("taskmark.flows", "compile"),
    "run": ("taskmark.runs._entry", "run"),
    "arun": ("taskmark.runs._entry", "arun"),
    "aretry": ("taskmark.runs._entry", "aretry"),
    "on": ("taskmark.runs._run", "on"),
    "RunResult": ("taskmark.runs._run", "RunResult"),
    "read_run": ("taskmark.runs._entry", "read_run"),
    "aread_run": ("taskmark.runs._entry", "aread_run"),
    "RunRecord": ("taskmark.runs.record", "RunRecord"),
}


def __getattr__(name: str) -> Any:  # noqa: ANN401 - whatever the name is
    if name not in _WHERE:
        raise AttributeError(f"module 'taskmark' has no attribute {name!r}")
    import importlib

    module, attribute = _WHERE[name]
    return getattr(importlib.import_module(module), attribute)
