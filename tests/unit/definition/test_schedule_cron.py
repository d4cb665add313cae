"""Cron expressions of `schedule:`, from the user's side: `taskmark validate` refuses what a
deployment would refuse, at the cron value's line and column, and warns of a cron that never
fires; and it agrees with Prefect's own check of a CronSchedule."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from taskmark.cli import app
from taskmark.definition import load_definition
from taskmark.definition._cron import check_cron

runner = CliRunner()

SHAPE = "each field is *, a number, a range such as 1-5, a list such as 1,15 or a step such as */15"

DEFINITION = """# Scheduled

```yaml
name: scheduled
requirements:
  topic: string
schedule: {{cron: "{cron}", parameters: {{topic: x}}}}
```

## Phase: A

### Steps
- agent: writer - Write about {{{{ topic }}}}

### Agents

```yaml
writer:
  systemPrompt: You write.
```
"""

CRON_COLUMN = DEFINITION.format(cron="CRON").splitlines()[6].index('"CRON"') + 1
"""The 1-based column of the cron value: its opening quote."""


def _write(folder: Path, cron: str) -> Path:
    path = folder / "scheduled.md"
    path.write_text(DEFINITION.format(cron=cron))
    return path


def _validate(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str], str]:
    monkeypatch.chdir(path.parent)
    result = runner.invoke(app, ["validate", path.name])
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr.splitlines(), result.stdout


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        (
            "99 99 99 99 99",
            "invalid cron expression '99 99 99 99 99': bad minute '99' (expected 0-59); bad hour '99' "
            "(expected 0-23); bad day of month '99' (expected 1-31 or L); bad month '99' (expected 1-12 or "
            f"JAN-DEC); bad weekday '99' (expected 0-7 or SUN-SAT, 0 and 7 being Sunday); {SHAPE}",
        ),
        ("60 * * * *", f"invalid cron expression '60 * * * *': bad minute '60' (expected 0-59); {SHAPE}"),
        ("*/0 * * * *", f"invalid cron expression '*/0 * * * *': bad minute '*/0' (expected 0-59); {SHAPE}"),
        (
            "0 8 * * 1-5 2026",
            "expected a cron expression of 5 fields (minute hour day month weekday), "
            "such as '0 8 * * 1-5'; found '0 8 * * 1-5 2026'",
        ),
        (
            "@reboot",
            "'@reboot' means at system start, which a deployment's schedule has not; expected five fields "
            "such as '0 8 * * 1-5', or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",
        ),
        (
            "@dayly",
            "unknown schedule '@dayly'; expected one of @yearly, @annually, @monthly, @weekly, @daily, "
            "@midnight, @hourly; did you mean '@daily'?",
        ),
    ],
    ids=["out-of-range", "minute-60", "step-0", "six-fields", "reboot", "misspelt-nickname"],
)
def test_a_cron_a_deployment_would_refuse_is_an_error_at_the_cron_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cron: str, message: str
) -> None:
    code, errors, _ = _validate(_write(tmp_path, cron), monkeypatch)
    assert code == 1
    assert errors == [f"scheduled.md:7:{CRON_COLUMN}: error: schedule.cron: {message}", "1 of 1 definitions invalid"]


def test_a_cron_that_never_fires_is_a_warning_and_the_file_stays_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, warnings, out = _validate(_write(tmp_path, "* * 31 2 *"), monkeypatch)
    assert code == 0
    assert warnings == [
        f"scheduled.md:7:{CRON_COLUMN}: warning: schedule.cron: '* * 31 2 *' never fires: no month it names has day 31"
    ]
    assert "ok: scheduled.md (1 phases)" in out


@pytest.mark.parametrize(
    "cron",
    ["0 8 * * 1-5", "@daily", "@HOURLY", "0 0 ? * MON", "0 0 L * *", "0 22-2 * * *", "0 0 31 2 MON", "0 0 29 2 *"],
)
def test_crons_prefect_takes_validate_without_diagnostics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cron: str
) -> None:
    # `0 0 31 2 MON` fires on Mondays of February: with both days restricted, either matches.
    code, diagnostics, _ = _validate(_write(tmp_path, cron), monkeypatch)
    assert (code, diagnostics) == (0, [])
    monkeypatch.chdir(tmp_path)
    schedule = load_definition("scheduled.md").metadata.schedule
    assert schedule is not None and schedule.cron == cron


CORPUS = [
    *("0 8 * * 1-5", "*/15 * * * *", "0 0 1 1 *", "5,35 9-17 * * MON-FRI", "0 12 1-7 * SUN"),
    *("0 0 L * *", "0 0 * * L5", "0 0 * * 5L", "0 0 * * MON#2", "0 0 * * 1#1,2#2", "0 0 * * SUN#1,MON"),
    *("0 0 LW * *", "0 0 15W * *", "0 0 2-L * *", "0 22-2 * * *", "0 0 * DEC-FEB *", "0 0 * * FRI-MON", "0 0 * * 7-1"),
    *("0 0 ? * *", "? * * * *", "0 0 * * ?", "0 0 31 2 *", "0 0 30 2 1"),
    *("@daily", "@weekly", "@Monthly", "@yearly", "@annually", "@midnight", "@hourly", "@reboot", "@every"),
    *("60 * * * *", "0 24 * * *", "0 0 0 * *", "0 0 32 * *", "0 0 * 13 *", "0 0 * * 8", "*/0 * * * *"),
    *("1-5/0 * * * *", "H * * * *", "R * * * *", "a * * * *", "-1 * * * *", "1- * * * *", "1,,2 * * * *"),
    *("0 8 * *", "0 8 * * 1-5 0", "", "every morning", "0 0 * jan *", "*/60 * * * *", "5/15 * * * *"),
]


@pytest.mark.parametrize("cron", CORPUS, ids=lambda c: c or "empty")
def test_validate_takes_exactly_the_crons_prefect_takes(cron: str) -> None:
    """A contract with Prefect's own check (its copy of croniter), on the newest and lowest Prefect."""
    from prefect._internal.schemas.validators import validate_cron_string

    try:
        validate_cron_string(cron)
        prefect_takes = True
    except ValueError:
        prefect_takes = False
    if cron.split() and len(cron.split()) != 5 and not cron.startswith("@"):
        prefect_takes = False  # taskmark takes five fields only; croniter also reads seconds and years
    try:
        check_cron(cron)
        taskmark_takes = True
    except ValueError:
        taskmark_takes = False
    assert taskmark_takes == prefect_takes


def test_a_cron_given_at_deploy_time_is_checked_by_prefect_with_its_own_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskmark.deploy import DeployError, schedules_of

    monkeypatch.chdir(tmp_path)
    definition = load_definition(_write(tmp_path, "0 8 * * 1-5").name)
    with pytest.raises(DeployError, match=r'^invalid schedule: Invalid cron string: "61 6 \* \* \*"$'):
        schedules_of(definition, cron="61 6 * * *")
    assert [s.cron for s in schedules_of(definition, cron="@daily")] == ["@daily"]
