"""Summing usage by phase and stage."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from taskmark.blocks import CallLabels, Completion, Usage, UsageLedger


def _completion(prompt: int, completion: int, cost: float | None, model: str = "m") -> Completion:
    return Completion(
        text="x",
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        cost_usd=cost,
        model=model,
    )


def test_sums_by_stage_phase_and_total() -> None:
    ledger = UsageLedger()
    a_inf = CallLabels(phase="A", stage="inference")
    a_crit = CallLabels(phase="A", stage="critique")
    b_inf = CallLabels(phase="B", stage="inference")
    ledger.add(_completion(10, 5, 0.001), a_inf)
    ledger.add(_completion(20, 5, 0.002), a_inf)
    ledger.add(_completion(1, 1, None, model="other"), a_crit)
    ledger.add(_completion(100, 50, 0.01), b_inf)
    ledger.add_failure(b_inf)

    stages = ledger.by_stage()
    assert list(stages) == [("A", "inference"), ("A", "critique"), ("B", "inference")]
    assert stages[("A", "inference")].calls == 2
    assert stages[("A", "inference")].total_tokens == 40
    assert stages[("A", "inference")].cost_usd == pytest.approx(0.003)
    assert stages[("A", "critique")].unpriced_calls == 1
    assert stages[("B", "inference")].failed_calls == 1

    phases = ledger.by_phase()
    assert phases["A"].calls == 3 and phases["A"].prompt_tokens == 31
    total = ledger.total()
    assert (total.calls, total.failed_calls, total.total_tokens) == (4, 1, 192)
    assert total.cost_usd == pytest.approx(0.013)
    assert ledger.models() == {"m": 3, "other": 1}
    assert ledger.table()[-1]["phase"] == "total"


def test_concurrent_adds_are_all_counted() -> None:
    ledger = UsageLedger()
    labels = CallLabels(phase="P", stage="inference")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _i: ledger.add(_completion(1, 1, 0.5), labels), range(400)))
    assert ledger.total().calls == 400
    assert ledger.total().cost_usd == pytest.approx(200.0)


def test_a_ledger_survives_pickling() -> None:
    ledger = UsageLedger()
    ledger.add(_completion(1, 2, 0.1), CallLabels(phase="P", stage="s"))
    copy = pickle.loads(pickle.dumps(ledger))
    assert copy.total() == ledger.total()
    copy.add(_completion(1, 1, 0.1))
    assert copy.total().calls == 2


def test_no_events_without_a_prefect_api() -> None:
    # A plain script must not start Prefect's ephemeral server just to emit an event.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from taskmark.blocks._usage import should_emit

    # (Earlier tests in the session may have started Prefect's harness: unset its URL.)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert should_emit() is False
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert should_emit() is True
