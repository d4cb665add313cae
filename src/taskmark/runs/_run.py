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

from taskmark.blocks import ProviderOverrides
from taskmark.definition import Definition, load_definition
from taskmark.errors import ApiUnreachableError, TaskmarkError
from taskmark.flows._compile import RUN_TAG, compile
from taskmark.runs.record import Totals
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

API_SILENCE_S = 20.0
"""Seconds a run goes on while the Prefect API refuses connections before it gives up on it.

A server stalled by SQLite locks still accepts connections; a server that is gone does not,
and Prefect's client would retry each request for about a minute and each event for ~7 s, so a
run whose server died would hang for minutes."""

STOP_GRACE_S = 10.0
"""Seconds a stopped run has to record how it ended (its phases' and its own Cancelled state)."""


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

    state: str = Field(description="COMPLETED, ACCEPTED_WITH_ERRORS, FAILED, NOT_RUN or TIMED_OUT.")
    duration_s: float = Field(description="Wall time.")
    outputs: Any = Field(default=None, description="The phase's outputs.")
    error: str | None = Field(default=None, description="Why it did not complete.")
    executed_branches: list[str] | None = Field(default=None, description="Branches a route step picked.")
    failed_checks: dict[str, list[str]] = Field(
        default_factory=dict, description="Per answer, the checks still failed when accepted with errors."
    )


class RunResult(BaseModel):
    """What `taskmark run --json` prints."""

    flow_run_id: str | None = Field(description="The Prefect flow run.")
    state: str = Field(description="Prefect's state type: COMPLETED, FAILED, CANCELLED, ...")
    outcome: str = Field(
        description="How the run ended, as its record says: completed, accepted_with_errors, failed, timed_out, "
        "cancelled or crashed."
    )
    message: str | None = Field(default=None, description="The final state's message.")
    duration_s: float = Field(description="Wall time of the run.")
    phases: dict[str, PhaseSummary] = Field(description="Each phase, in run order.")
    usage: Totals = Field(description="What this attempt paid for: calls, tokens, cost (its record's sums).")
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
            tags=[RUN_TAG, definition.name],
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
    """Run ``compiled`` as ``flow_run`` here and wait for it.

    Cancelling the task that awaits this (Ctrl-C in the CLI, ``task.cancel(why)``) stops the run:
    it ends Cancelled, with ``why`` as its message, and CancelledError is raised again.

    Raises:
        ApiUnreachableError: The Prefect API went away (refused connections for
            ``API_SILENCE_S``), or could not record the end of a stopped run.
    """
    import httpx
    from prefect.flow_engine import run_flow_async

    merged = {m: [*_HOOKS.get(m, []), *(hooks or {}).get(m, [])] for m in MOMENTS}
    runtime = Runtime.of(definition, overrides=overrides, no_cache=no_cache, hooks=merged)
    token = CURRENT_RUNTIME.set(runtime)
    started = time.perf_counter()
    running = asyncio.ensure_future(run_flow_async(compiled, flow_run=flow_run, parameters=params, return_type="state"))
    watcher = asyncio.ensure_future(_watch(flow_run.id, running))
    try:
        done, _ = await asyncio.wait({running, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if watcher in done and (lost := watcher.result()) is not None:
            running.cancel()  # not waited for: its engine would retry the lost API for minutes
            raise lost
        if watcher in done:  # asked to cancel: the watcher has cancelled the flow
            await asyncio.wait({running})  # the engine records the end of what was running
            state = await _mark_cancelled(flow_run.id, "Cancelled on request; calls already sent were abandoned")
        else:
            state = cast("State[Any]", running.result())
    except asyncio.CancelledError as stop:
        # Our caller stopped waiting (the CLI on SIGINT/SIGTERM, or a cancelled task): the run
        # is over, and says so, rather than being left Running or Crashed.
        why = str(stop.args[0]) if stop.args else "its caller stopped waiting"
        await _wind_down(running, flow_run.id, f"Stopped: {why}; calls already sent were abandoned")
        raise
    except httpx.TransportError as error:  # the flow's own calls to the API gave up
        raise ApiUnreachableError.from_error(_api_url(), error) from None
    finally:
        watcher.cancel()
        CURRENT_RUNTIME.reset(token)
    return RunResult(
        flow_run_id=runtime.flow_run_id,
        state=state.type.value,
        outcome=_outcome(runtime, state),
        message=state.message,
        duration_s=time.perf_counter() - started,
        phases=_phases(runtime),
        usage=runtime.recorder.totals() if runtime.recorder is not None else Totals(),
        models=sorted(runtime.models),
    )


def _phases(runtime: Runtime) -> dict[str, PhaseSummary]:
    """Each phase that started or was decided on, in run order, as the run's record says."""
    if runtime.recorder is None:  # the flow stopped before its phases were scheduled
        return {}
    return {
        p.name: PhaseSummary(
            state=p.state.upper(),
            failed_checks=p.failed_checks,
            duration_s=p.duration_s or 0.0,
            outputs=p.outputs,
            error=p.error,
            executed_branches=p.executed_branches,
        )
        for p in runtime.recorder.record().phases
        if p.state != "pending"
    }


def _outcome(runtime: Runtime, state: State[Any]) -> str:
    """The record's outcome when the run wrote it; else (stopped, crashed) Prefect's state."""
    if runtime.recorder is not None and runtime.recorder.run.outcome != "running":
        return runtime.recorder.run.outcome
    return {"COMPLETED": "completed", "CANCELLED": "cancelled", "CRASHED": "crashed"}.get(state.type.value, "failed")


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "Prefect's ephemeral server")


async def _watch(flow_run_id: UUID, running: asyncio.Future[Any]) -> ApiUnreachableError | None:
    """Follow the flow run from the Prefect API while it runs in this process.

    A deployment's run is cancelled by its worker; a run in this process has no worker, so it
    watches its own flow run: once it is set Cancelling (`taskmark cancel`, the UI), ``running``
    is cancelled and None returned. When the API has refused connections for ``API_SILENCE_S``,
    the error is returned instead (the caller gives up on the run). Otherwise it watches until
    it is cancelled.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    loop = asyncio.get_running_loop()
    heard = loop.time()
    async with get_client() as client, httpx.AsyncClient(timeout=API_SILENCE_S / 2) as probe:
        url = str(client.api_url).rstrip("/")
        while True:  # until cancelled, once the run is over
            await asyncio.sleep(CANCEL_POLL_S)
            try:
                # Prefect's client would retry a refused connection for a minute before saying
                # anything. A connection accepted but slow to answer is a busy server (SQLite
                # stalls of many seconds happen on a loaded machine): it is there.
                await probe.get(f"{url}/health")
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                if loop.time() - heard >= API_SILENCE_S:
                    return ApiUnreachableError.from_error(url, error)
                continue
            except httpx.TransportError:
                pass
            heard = loop.time()
            try:
                current = await asyncio.wait_for(client.read_flow_run(flow_run_id), API_SILENCE_S)
            except (httpx.HTTPError, PrefectHTTPStatusError, asyncio.TimeoutError):  # 3.10: not TimeoutError
                continue  # asked again at the next poll
            if current.state is not None and current.state.is_cancelling():
                running.cancel()
                return None


async def _wind_down(running: asyncio.Future[Any], flow_run_id: UUID, message: str) -> None:
    """Cancel ``running`` and record the run Cancelled with ``message``, within ``STOP_GRACE_S``.

    Raises:
        ApiUnreachableError: The end could not be recorded in time.
    """
    import httpx

    async def stop() -> None:
        running.cancel()
        await asyncio.wait({running})  # the engine records the end of what was running
        await _mark_cancelled(flow_run_id, message)

    # A task of its own: this one is being cancelled, and its next await must not be.
    stopping = asyncio.ensure_future(stop())
    done, _ = await asyncio.wait({stopping}, timeout=STOP_GRACE_S)
    if not done:
        stopping.cancel()
        raise ApiUnreachableError(_api_url(), f"the run's end was not recorded within {STOP_GRACE_S:g} s")
    try:
        stopping.result()
    except httpx.TransportError as error:
        raise ApiUnreachableError.from_error(_api_url(), error) from None


async def _mark_cancelled(flow_run_id: UUID, message: str) -> State[Any]:
    """Set the run and its phases that did not end on their own Cancelled; the run's final state.

    The phase scheduler ends the phases it was running Cancelled; one that ended Crashed
    (Prefect's engine, told of no cancellation) is Cancelled too: one stop reads the same
    everywhere.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.states import Cancelled

    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
        for child in children:
            ended = child.state
            if ended is None or not ended.is_final() or ended.is_crashed():
                await client.set_flow_run_state(child.id, Cancelled(message="The run was cancelled"), force=True)
        final: State[Any] = Cancelled(message=message)
        await client.set_flow_run_state(flow_run_id, final, force=True)
    return final


def run(path: str | Path, **params: Any) -> RunResult:  # noqa: ANN401
    """Run the definition at ``path`` with ``params`` and wait for it (see :func:`arun`).

    Example:
        >>> result = run("definitions/daily-market-analysis.md", question="What moved BTC?")
        >>> result.state
        'COMPLETED'
    """
    return asyncio.run(arun(path, params))
