"""Running a definition in this process and reporting what happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from prefect import State
from pydantic import BaseModel, Field

from taskmark.blocks import ProviderOverrides, UsageTotals
from taskmark.definition import Definition, load_definition
from taskmark.flows._compile import compile
from taskmark.tasks import Runtime
from taskmark.tasks._runtime import CURRENT_RUNTIME

__all__ = ["MOMENTS", "PhaseSummary", "RunResult", "arun", "on", "run"]

MOMENTS = ("phase:start", "phase:complete", "phase:failed", "execution:complete")
"""The moments hooks can follow; each is also a Prefect event (`taskmark.phase.completed`, ...)."""

_HOOKS: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}


def on(moment: str, hook: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """Call ``hook(payload)`` at ``moment`` of every run in this process.

    Raises:
        ValueError: For an unknown moment.

    Example:
        >>> on("phase:complete", lambda p: print(p["phase"], p["duration_s"]))
    """
    if moment not in MOMENTS:
        raise ValueError(f"unknown moment {moment!r}; expected one of {', '.join(MOMENTS)}")
    _HOOKS.setdefault(moment, []).append(hook)
    return hook


class PhaseSummary(BaseModel):
    """One phase of a finished run."""

    state: str = Field(description="COMPLETED, FAILED, NOT_RUN or TIMED_OUT.")
    duration_s: float = Field(description="Wall time.")
    outputs: Any = Field(default=None, description="The phase's outputs.")
    error: str | None = Field(default=None, description="Why it did not complete.")
    executed_branches: list[str] | None = Field(default=None, description="Branches a route step picked.")


class RunResult(BaseModel):
    """What `taskmark run --json` prints."""

    flow_run_id: str | None = Field(description="The Prefect flow run.")
    state: str = Field(description="COMPLETED, FAILED, ...")
    message: str | None = Field(default=None, description="The final state's message.")
    duration_s: float = Field(description="Wall time of the run.")
    phases: dict[str, PhaseSummary] = Field(description="Each phase, in run order.")
    usage: UsageTotals = Field(description="LLM usage: calls, tokens, cost.")
    models: list[str] = Field(description="The models that answered.")


async def arun(
    definition: Definition | str | Path,
    params: dict[str, Any] | None = None,
    *,
    overrides: ProviderOverrides | None = None,
    no_cache: bool = False,
    hooks: dict[str, list[Callable[[dict[str, Any]], Any]]] | None = None,
) -> RunResult:
    """Run a definition as a Prefect flow in this process and wait for it.

    Args:
        definition: A definition, or the path of one.
        params: The inputs.
        overrides: Model, API base and key overrides (the CLI's flags).
        no_cache: Ignore the definition's response cache.
        hooks: Callbacks by moment: ``phase:start``, ``phase:complete``, ``phase:failed``,
            ``execution:complete``.

    Raises:
        DefinitionError: The file is not a valid definition.
        prefect.exceptions.ParameterTypeError: An input has the wrong type or is missing.
    """
    if not isinstance(definition, Definition):
        definition = load_definition(definition)
    compiled = compile(definition)
    params = compiled.validate_parameters(params or {})  # a bad input fails here, before any run
    merged = {m: [*_HOOKS.get(m, []), *(hooks or {}).get(m, [])] for m in MOMENTS}
    runtime = Runtime(definition, overrides=overrides, no_cache=no_cache, hooks=merged)
    token = CURRENT_RUNTIME.set(runtime)
    started = time.perf_counter()
    try:
        state: State[Any] = await cast("Awaitable[State[Any]]", compiled(**params, return_state=True))
    finally:
        CURRENT_RUNTIME.reset(token)
    return RunResult(
        flow_run_id=runtime.flow_run_id,
        state=state.type.value,
        message=state.message,
        duration_s=time.perf_counter() - started,
        phases={
            p.name: PhaseSummary(state=r.state, duration_s=r.duration_s, outputs=r.outputs, error=r.error, executed_branches=r.executed_branches)
            for p in definition.run_order()
            if (r := runtime.records.get(p.name)) is not None
        },
        usage=runtime.ledger.total(),
        models=sorted(runtime.models),
    )


def run(path: str | Path, **params: Any) -> RunResult:  # noqa: ANN401
    """Run the definition at ``path`` with ``params`` and wait for it (see :func:`arun`).

    Example:
        >>> result = run("definitions/daily-market-analysis.md", question="What moved BTC?")
        >>> result.state
        'COMPLETED'
    """
    return asyncio.run(arun(path, params))
