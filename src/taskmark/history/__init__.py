"""History and trace: runs read back from the Prefect API, and a run as a tree.

``read_runs`` lists runs (definition, state, start, duration, calls, cost), newest first;
``read_trace`` reads one run as phases → stages → LLM calls with states, durations, tokens,
cost, attempts and errors. Both read only what Prefect recorded (flow runs and their phase
subflow runs, task runs, `taskmark.llm.*` events, artifacts), so they work the same for a run
of this process, of another one, or of a worker elsewhere, and after a crash.
"""

from __future__ import annotations

from taskmark.history._build import RunRecords, build_trace
from taskmark.history._bundles import with_bundles
from taskmark.history._model import AttemptTrace, CallTrace, PhaseTrace, RunSummary, RunTrace, StageTrace, TraceTotals
from taskmark.history._read import SETTLE_S, RunNotFound, read_trace
from taskmark.history._runs import STATES, read_runs

__all__ = [
    "SETTLE_S",
    "STATES",
    "AttemptTrace",
    "CallTrace",
    "PhaseTrace",
    "RunNotFound",
    "RunRecords",
    "RunSummary",
    "RunTrace",
    "StageTrace",
    "TraceTotals",
    "build_trace",
    "read_runs",
    "read_trace",
    "with_bundles",
]
