"""Running a definition in this process and reporting what happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import Flow, State
from prefect.client.schemas.objects import FlowRun
from pydantic import BaseModel, Field

from taskmark.blocks import ProviderOverrides, UsageTotals
from taskmark.definition import Definition, load_definition
from taskmark.errors import TaskmarkError
from taskmark.flows._compile import compile
from taskmark.tasks import Runtime
from taskmark.tasks._runtime import CURRENT_RUNTIME

__all__ = [
    "DEFINITION_KEY",
    "RUN_TAG",
    "MOMENTS",
    "PhaseSummary",
    "RetryError",
    "RunResult",
    "aretry",
    "arun",
    "on",
    "retry_target",
    "run",
]

CANCEL_POLL_S = 2.0
"""Seconds between a local run's checks of whether it was asked to cancel."""

RUN_TAG = "taskmark"
"""Every run of a definition carries this tag (`taskmark runs` lists those)."""


DEFINITION_KEY = "taskmark_definition"
"""The key, in a flow run's context, of the absolute path of the definition it ran."""


class RetryError(TaskmarkError):
    """A run that cannot be retried, and why."""


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
    on_created: Callable[[str], None] | None = None,
) -> RunResult:
    """Run a definition as a Prefect flow in this process and wait for it.

    Args:
        definition: A definition, or the path of one.
        params: The inputs.
        overrides: Model, API base and key overrides (the CLI's flags).
        no_cache: Call every agent afresh, even where the definition's `cache:` holds an answer.
        hooks: Callbacks by moment: ``phase:start``, ``phase:complete``, ``phase:failed``,
            ``execution:complete``.
        on_created: Told the flow run's id as soon as it exists (to record it, so that the
            run can be retried if this process dies).

    Raises:
        DefinitionError: The file is not a valid definition.
        prefect.exceptions.ParameterTypeError: An input has the wrong type or is missing.
    """
    if not isinstance(definition, Definition):
        definition = load_definition(definition)
    compiled = compile(definition)
    params = compiled.validate_parameters(params or {})  # a bad input fails here, before any run
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        # The run records where its definition lives, so that `taskmark retry` can find it.
        created = await client.create_flow_run(
            compiled,
            parameters=params,
            context={DEFINITION_KEY: str(Path(definition.location.path).resolve())},
            tags=[RUN_TAG],
        )
    if on_created is not None:
        on_created(str(created.id))
    return await _execute(definition, compiled, created, params, overrides=overrides, no_cache=no_cache, hooks=hooks)


async def retry_target(flow_run_id: str, *, orphaned: bool = False) -> tuple[FlowRun, str | None]:
    """The finished flow run ``flow_run_id`` and the path of its definition (None for a
    deployment's run, which its work pool runs again). ``orphaned``: the caller knows the
    process that ran it is gone, so a run still marked running may be taken over.

    Raises:
        RetryError: The run is unknown, not finished, or not started by taskmark.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            flow_run = await client.read_flow_run(UUID(flow_run_id))
        except (ValueError, ObjectNotFound):
            raise RetryError(f"no flow run {flow_run_id!r} on {client.api_url}") from None
    if flow_run.state is None or not (flow_run.state.is_final() or orphaned):
        state = flow_run.state.type.value if flow_run.state else "unknown"
        raise RetryError(f"flow run {flow_run_id} is {state}; only a finished run can be retried")
    path = (flow_run.context or {}).get(DEFINITION_KEY)
    if flow_run.deployment_id is None and not path:
        raise RetryError(f"flow run {flow_run_id} was not started by taskmark; its definition is not on record")
    return flow_run, None if flow_run.deployment_id else str(path)


async def aretry(
    flow_run_id: str,
    *,
    overrides: ProviderOverrides | None = None,
    no_cache: bool = False,
    hooks: dict[str, list[Callable[[dict[str, Any]], Any]]] | None = None,
    orphaned: bool = False,
) -> RunResult | None:
    """Run a finished flow run again under the same id, from its definition file as it is now.

    Every LLM call whose request is unchanged is answered from the first attempt's stored
    results; only the rest is called. A deployment's run is handed back to its work pool
    (None is returned: a worker runs it). ``orphaned`` as in :func:`retry_target`.

    Raises:
        RetryError: The run is unknown, still running, or its definition is not on record.
        DefinitionError: Its definition file is no longer valid.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    flow_run, path = await retry_target(flow_run_id, orphaned=orphaned)
    definition = None if path is None else load_definition(path)
    async with get_client() as client:
        await client.set_flow_run_state(flow_run.id, Scheduled(message="Retried by taskmark"), force=True)
        flow_run = await client.read_flow_run(flow_run.id)
    if definition is None:
        return None
    compiled = compile(definition)
    params = compiled.validate_parameters(dict(flow_run.parameters))
    return await _execute(definition, compiled, flow_run, params, overrides=overrides, no_cache=no_cache, hooks=hooks)


async def _execute(
    definition: Definition,
    compiled: Flow[..., Any],
    flow_run: FlowRun,
    params: dict[str, Any],
    *,
    overrides: ProviderOverrides | None,
    no_cache: bool,
    hooks: dict[str, list[Callable[[dict[str, Any]], Any]]] | None,
) -> RunResult:
    from prefect.flow_engine import run_flow_async

    merged = {m: [*_HOOKS.get(m, []), *(hooks or {}).get(m, [])] for m in MOMENTS}
    runtime = Runtime(definition, overrides=overrides, no_cache=no_cache, hooks=merged)
    token = CURRENT_RUNTIME.set(runtime)
    started = time.perf_counter()
    running = asyncio.ensure_future(run_flow_async(compiled, flow_run=flow_run, parameters=params, return_type="state"))
    watcher = asyncio.ensure_future(_cancel_when_asked(flow_run.id, running))
    try:
        state = cast("State[Any]", await running)
    except asyncio.CancelledError:
        if not watcher.done() or watcher.cancelled() or not watcher.result():
            raise  # cancelled by our caller, not by `taskmark cancel`
        state = await _mark_cancelled(flow_run.id)
    finally:
        watcher.cancel()
        CURRENT_RUNTIME.reset(token)
    return RunResult(
        flow_run_id=runtime.flow_run_id,
        state=state.type.value,
        message=state.message,
        duration_s=time.perf_counter() - started,
        phases={
            p.name: PhaseSummary(
                state=r.state,
                duration_s=r.duration_s,
                outputs=r.outputs,
                error=r.error,
                executed_branches=r.executed_branches,
            )
            for p in definition.run_order()
            if (r := runtime.records.get(p.name)) is not None
        },
        usage=runtime.ledger.total(),
        models=sorted(runtime.models),
    )


async def _cancel_when_asked(flow_run_id: UUID, running: asyncio.Future[Any]) -> bool:
    """Cancel ``running`` when the flow run is set Cancelling (`taskmark cancel`, the UI).

    A deployment's run is cancelled by its worker; a run in this process has no worker, so
    it watches its own flow run. Returns whether it cancelled.
    """
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        while not running.done():
            await asyncio.sleep(CANCEL_POLL_S)
            current = await client.read_flow_run(flow_run_id)
            if current.state is not None and current.state.is_cancelling():
                running.cancel()
                return True
    return False


async def _mark_cancelled(flow_run_id: UUID) -> State[Any]:
    """Set the run and its unfinished phases Cancelled; the run's final state."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.states import Cancelled

    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
        for child in children:
            if child.state is None or not child.state.is_final():
                await client.set_flow_run_state(child.id, Cancelled(message="The run was cancelled"), force=True)
        state: State[Any] = Cancelled(message="Cancelled on request; calls already sent were abandoned")
        await client.set_flow_run_state(flow_run_id, state, force=True)
    return state


def run(path: str | Path, **params: Any) -> RunResult:  # noqa: ANN401
    """Run the definition at ``path`` with ``params`` and wait for it (see :func:`arun`).

    Example:
        >>> result = run("definitions/daily-market-analysis.md", question="What moved BTC?")
        >>> result.state
        'COMPLETED'
    """
    return asyncio.run(arun(path, params))
