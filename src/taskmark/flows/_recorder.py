"""Writing a run's record (taskmark.runs.record) as it happens: owned by the phase scheduler.

Each part of the record is one JSON artifact (type ``taskmark-record``) of the run's flow
run: the run's header (definition, inputs, outcome) and one per phase attempt, updated as
its calls and stages end. Writes run in the background, at most one in flight per part. The
header is written at once, when the run starts, and a phase's start and end too (changes made while a write is in flight go out
with the next one); a call's or a stage's end waits up to ``SETTLE_S`` for company, so a
crash loses at most the last second of a running phase, whose answers Prefect's result cache
still holds for a retry. (Writing every stage's end at once made the wide fan-out 18% slower.)
:meth:`Recorder.durable` waits until the header and given phases' ends are written: the
scheduler starts a phase only then, so a crash never loses a finished phase a later one built
on, and a reader never finds a phase's part without the header it needs to read it.
:meth:`Recorder.close` writes the outcome and waits for every write: the run's final state
is set after it, so a finished run's record is complete when `taskmark run` returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate

from taskmark.definition import STAGES, Definition
from taskmark.runs.record import (
    RECORD_ARTIFACT_TYPE,
    CallRecord,
    DefinitionRef,
    Outcome,
    PhaseRecord,
    PhaseState,
    RunRecord,
    StageRecord,
    Totals,
)

if TYPE_CHECKING:
    from taskmark.tasks import PhaseOutcome

__all__ = ["Recorder", "now"]

_log = logging.getLogger("taskmark.flows")

SETTLE_S = 1.0
"""Seconds a call's or a stage's end may wait, to go out with the next ones: a burst of them
costs one write, not one each (each write competes with the run's own for the server, SQLite's one
writer above all)."""

_LIFECYCLE = ("approval", "review", *STAGES)
"""Where a stage goes in a phase's record: the waits for a person, then the lifecycle."""


def now() -> datetime:
    return datetime.now(timezone.utc)


def definition_ref(definition: Definition) -> DefinitionRef:
    """Name, version and content hash of the definition file as it runs."""
    path = Path(definition.location.path)
    try:
        digest: str | None = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        digest = None
    return DefinitionRef(
        name=definition.name,
        version=definition.metadata.version,
        content_sha256=digest,
        path=str(path.resolve()) if digest else None,
    )


class _Part:
    """One artifact of the record: created on its first write, then updated.

    A change is written within ``SETTLE_S`` (changes in that time go out as one write) or,
    when ``now``, as soon as the write in flight ends. The snapshot is taken when the write
    starts, so a burst of changes costs one serialisation and one request.
    """

    def __init__(self, recorder: Recorder, description: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.recorder, self.description, self.snapshot = recorder, description, snapshot
        self.id: uuid.UUID | None = None
        self.dirty = False
        self.writing: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def changed(self, *, now: bool = False) -> None:
        self.dirty = True
        if now:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self._start()
        elif self.timer is None and (self.writing is None or self.writing.done()):
            self.timer = asyncio.get_running_loop().call_later(SETTLE_S, self._start)

    def _start(self) -> None:
        self.timer = None
        if self.writing is None or self.writing.done():
            self.writing = asyncio.ensure_future(self._drain())
            self.recorder.writes.add(self.writing)
            self.writing.add_done_callback(self.recorder.writes.discard)

    async def _drain(self) -> None:
        client = self.recorder.client
        while self.dirty:
            self.dirty = False
            data = self.snapshot()
            try:
                if self.id is None:
                    created = await client.create_artifact(
                        ArtifactCreate(
                            type=RECORD_ARTIFACT_TYPE,
                            description=self.description,
                            data=data,
                            flow_run_id=self.recorder.run_id,
                        )
                    )
                    self.id = created.id
                else:
                    await client.update_artifact(self.id, ArtifactUpdate(data=data))
            except Exception:  # noqa: BLE001 - a record that could not be written must not fail the run
                _log.warning("could not write the run record (%s)", self.description, exc_info=True)


_PHASE_END_FIELDS = ("outputs", "flags", "error", "failed_checks", "approval", "executed_branches")
"""What a phase's outcome and its record share."""


class Recorder:
    """The record of one attempt of one run, written as it happens."""

    def __init__(
        self, client: PrefectClient, run_id: uuid.UUID, definition: Definition, inputs: dict[str, Any], attempt: int
    ) -> None:
        self.client, self.run_id, self.attempt = client, run_id, attempt
        self.writes: set[asyncio.Task[None]] = set()
        self.order = [p.name for p in definition.run_order()]
        self.run = RunRecord(
            run_id=str(run_id),
            definition=definition_ref(definition),
            inputs=inputs,
            outcome="running",
            attempts=attempt,
            started=now(),
        )
        self.header = _Part(self, f"taskmark run record: {definition.name} (attempt {attempt})", self._header)
        self.phases: dict[str, PhaseRecord] = {}
        self.parts: dict[str, _Part] = {}
        self.header.changed(now=True)  # before any phase's part: a reader needs it to read them

    def _header(self) -> dict[str, Any]:
        data = self.run.model_dump(mode="json", exclude={"phases", "earlier", "totals", "duration_s"})
        return {"part": "run", "attempt": self.attempt, "phase_order": self.order, **data}

    def _snapshot(self, name: str) -> Callable[[], dict[str, Any]]:
        return lambda: {"part": "phase", **self.phases[name].model_dump(mode="json", exclude={"duration_s"})}

    def phase_started(self, name: str) -> None:
        self._phase(name, "running", started=now())
        self.parts[name].changed(now=True)

    def _phase(self, name: str, state: PhaseState, **fields: Any) -> PhaseRecord:  # noqa: ANN401
        if name not in self.phases:
            self.phases[name] = PhaseRecord(name=name, state=state, run_attempt=self.attempt, **fields)
            self.parts[name] = _Part(
                self, f"taskmark run record: phase {name!r} (attempt {self.attempt})", self._snapshot(name)
            )
        return self.phases[name]

    def _stage(self, phase: str, name: str) -> StageRecord:
        """The stage ``name`` of ``phase``, added (in lifecycle order) when new."""
        record = self._phase(phase, "running")
        stage = next((s for s in record.stages if s.name == name), None)
        if stage is None:
            stage = StageRecord(name=name, state="running", started=now())
            record.stages.append(stage)
            record.stages.sort(key=lambda s: _LIFECYCLE.index(s.name) if s.name in _LIFECYCLE else len(_LIFECYCLE))
        return stage

    def call_ended(self, phase: str, stage: str, call: CallRecord) -> None:
        """A call of ``stage`` ended (a call made for context summaries counts in inference)."""
        self._stage(phase, stage if stage in _LIFECYCLE else "inference").calls.append(
            call.model_copy(update={"run_attempt": self.attempt})
        )
        self.parts[phase].changed()

    def stage_ended(
        self,
        phase: str,
        name: str,
        state: str,
        *,
        duration_s: float,
        data: Any = None,  # noqa: ANN401
        flags: dict[str, Any] | None = None,
        logs: list[str] | None = None,
        error: str | None = None,
    ) -> None:
        """A stage ended (or was skipped): its outcome joins the calls it made."""
        stage = self._stage(phase, name)
        ended = now()
        update = {
            "state": state,
            "data": data,
            "flags": flags or {},
            "logs": logs or [],
            "error": error,
            "ended": ended,
            "started": ended - timedelta(seconds=duration_s),
        }
        record = self.phases[phase]
        record.stages[record.stages.index(stage)] = stage.model_copy(update=update)
        self.parts[phase].changed()

    def phase_ended(self, outcome: PhaseOutcome) -> None:
        """A phase ended, ran not, or was stopped: ``outcome`` as the record names it
        (COMPLETED → completed, ACCEPTED_WITH_ERRORS → accepted_with_errors, ...)."""
        state = cast("PhaseState", outcome.outcome.lower())
        fields = {f: getattr(outcome, f) for f in _PHASE_END_FIELDS}
        self.phases[outcome.name] = self._phase(outcome.name, state).model_copy(
            update={"state": state, "ended": now(), **fields}
        )
        self.parts[outcome.name].changed(now=True)

    async def durable(self, names: list[str]) -> None:
        """Wait until the run's header and the ends of the phases ``names`` are written (or
        could not be): a phase starts only once a reader of its part can read the record."""
        writing = [w for part in (self.header, *(self.parts[n] for n in names)) if (w := part.writing) is not None]
        if writing:
            await asyncio.wait(writing)

    def totals(self, phase: str | None = None) -> Totals:
        """Sums over this attempt's calls: of ``phase``, or of the whole run (what the attempt
        paid for; the record's own totals add earlier attempts)."""
        if phase is None:
            return Totals.of([c for p in self.phases.values() for c in p.calls()])
        return Totals.of(self.phases[phase].calls() if phase in self.phases else [])

    def record(self) -> RunRecord:
        """The run's record as it stands: every phase, in run order (those not started: pending)."""
        phases = [
            self.phases.get(n) or PhaseRecord(name=n, state="pending", run_attempt=self.attempt) for n in self.order
        ]
        return self.run.model_copy(update={"phases": phases})

    def outcome(self) -> tuple[Outcome, str | None]:
        """How the run ended, from its phases, and why when it did not complete."""
        state: Outcome
        for state in ("timed_out", "failed"):
            bad = [p for p in self.phases.values() if p.state == state]
            if bad:
                return state, "; ".join(p.error or p.name for p in bad)
        if any(p.state == "accepted_with_errors" for p in self.phases.values()):
            return "accepted_with_errors", None
        return "completed", None

    async def close(self) -> None:
        """Write the run's outcome, then wait for every write."""
        outcome, error = self.outcome()
        self.run = self.run.model_copy(update={"outcome": outcome, "error": error, "ended": now()})
        self.header.dirty = True
        await self.flush()

    async def flush(self) -> None:
        """Write every change now, and wait for the writes (a stopped run keeps what it paid for)."""
        for part in [self.header, *self.parts.values()]:
            if part.dirty:
                part.changed(now=True)
        while pending := {w for w in self.writes if not w.done()}:
            await asyncio.wait(pending)
