"""A definition into a Prefect flow: typed parameters, phases as concurrent subflows."""

from __future__ import annotations

from typing import Any

from prefect import Flow, State, flow, tags
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from taskmark.definition import Definition
from taskmark.flows._artifacts import write_artifacts
from taskmark.flows._schedule import run_phases
from taskmark.tasks import PhaseOutcome, Runtime
from taskmark.tasks._runtime import CURRENT_RUNTIME

__all__ = ["RUN_TAG", "TIMEOUT_GRACE_S", "compile"]

RUN_TAG = "taskmark"
"""Every run of a definition carries this tag and the definition's name (`taskmark runs`
lists the runs with it); so do its phases' subflow runs and their task runs."""

TIMEOUT_GRACE_S = 30.0
"""Prefect's own flow timeout comes this long after maxExecutionTime: taskmark's timeout
fires first and keeps the finished phases' outputs; Prefect's is the backstop."""


def _final_state(outcomes: dict[str, PhaseOutcome]) -> State[Any]:
    """The run's state from how its phases ended."""
    bad = [o for o in outcomes.values() if o.state in ("FAILED", "TIMED_OUT")]
    if not bad:
        return Completed(message=f"{len(outcomes)} phases completed")
    timed_out = [o for o in bad if o.state == "TIMED_OUT"]
    if timed_out:
        return Failed(name="TimedOut", message="; ".join(o.error or o.name for o in timed_out))
    return Failed(message="; ".join(o.error or o.name for o in bad))


def compile(definition: Definition) -> Flow[..., Any]:  # noqa: A001 - the product's verb
    """The Prefect flow of a definition.

    The flow's name is the definition's ``name``; its parameters are the requirements
    (typed, with defaults and descriptions, validated before anything runs); each phase
    runs as a subflow (flow `DEFINITION: PHASE`) as soon as its dependencies complete.

    Example:
        >>> my_flow = compile(load_definition("definitions/daily-market-analysis.md"))
        >>> my_flow.name
        'daily-market-analysis'
    """
    signature, doc = definition.metadata.inputs.signature(definition.metadata.description or definition.title)
    max_time = definition.metadata.max_execution_time

    async def body(*args: Any, **kwargs: Any) -> State[Any]:  # noqa: ANN401
        inputs = dict(signature.bind(*args, **kwargs).arguments)
        for name, parameter in signature.parameters.items():
            inputs.setdefault(name, parameter.default)
        runtime = CURRENT_RUNTIME.get(None)
        if runtime is None or runtime.definition is not definition:
            runtime = Runtime.of(definition)
        runtime.flow_run_id = flow_run.get_id()
        token = CURRENT_RUNTIME.set(runtime)
        try:
            # The artifacts are written while the phases' last states are.
            with tags(RUN_TAG, definition.name):  # its subflow runs and task runs carry them
                outcomes = await run_phases(
                    definition,
                    inputs,
                    runtime,
                    timeout_s=max_time,
                    then=lambda record: write_artifacts(definition, record),
                )
        finally:
            CURRENT_RUNTIME.reset(token)
        final = _final_state(outcomes)
        runtime.events.emit("execution:complete", state=final.type.value)
        return final

    body.__name__ = body.__qualname__ = definition.name.replace("-", "_")
    body.__signature__ = signature  # type: ignore[attr-defined]
    body.__doc__ = doc
    return flow(
        name=definition.name,
        description=definition.metadata.description or definition.title,
        version=definition.metadata.version,
        timeout_seconds=max_time + TIMEOUT_GRACE_S if max_time else None,
        validate_parameters=True,
        persist_result=False,
    )(body)
