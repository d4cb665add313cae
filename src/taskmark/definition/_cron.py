"""Cron expressions of schedules: checked as Prefect's deployments will read them.

Prefect checks a ``CronSchedule`` with its own copy of croniter, and only when a deployment is
made. This module checks the same dialect at validate time, with cronsim (already installed
with Prefect, which needs it through pydocket) doing the parsing, so that a cron Prefect
would refuse is a located error and a cron that can never fire is a warning. The few
croniter spellings cronsim lacks (``?``, nicknames, ranges that wrap, ``L5``, ``2-L``) are
rewritten first; the few it has and croniter lacks are refused. A contract test compares the
two on a corpus.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from cronsim import CronSim, CronSimError

from taskmark.definition._source import did_you_mean

__all__ = ["NICKNAMES", "check_cron", "never_fires"]

NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
"""The ``@`` forms Prefect's croniter takes (any case); each fires at least once a year."""

_FIELDS = (
    ("minute", "0-59", 0, 59),
    ("hour", "0-23", 0, 23),
    ("day of month", "1-31 or L", 1, 31),
    ("month", "1-12 or JAN-DEC", 1, 12),
    ("weekday", "0-7 or SUN-SAT, 0 and 7 being Sunday", 0, 6),
)
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_NAMES = {
    3: {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
    4: {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())},
}
_SHAPE = "each field is *, a number, a range such as 1-5, a list such as 1,15 or a step such as */15"
_START = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _number(position: int, text: str) -> int | None:
    if text.isdigit():
        return int(text)
    return _NAMES.get(position, {}).get(text)


def _term(position: int, term: str) -> str | None:
    """One term of a field in cronsim's spelling, or None when croniter would refuse it."""
    if position == 4 and re.fullmatch(r"\d+L", term):
        return None  # croniter reads the last weekday of the month as L5, not 5L
    if position == 4 and re.fullmatch(r"L\d", term):
        return term[1:] + "L"
    if position == 2 and term == "LW":
        return None
    if position == 2 and term.endswith("-L"):
        term = term[:-1] + "31"  # up to the month's last day
    # croniter reads a range that ends before it starts as one that wraps round: 22-2 is 22-23,0-2.
    match = re.fullmatch(r"([0-9A-Z]+)-([0-9A-Z]+)", term)
    if match:
        low, high = _number(position, match[1]), _number(position, match[2])
        _, _, first, last = _FIELDS[position]
        if position == 4 and low == 7:
            return "7" if high == 7 else f"0-{match[2]}"  # Sunday is 7 and 0
        if low is not None and high is not None and high < low and first <= high and low <= last:
            return f"{match[1]}-{last},{first}-{match[2]}"
    return term


def _fields(expression: str) -> list[str | None]:
    fields = expression.upper().split()
    converted: list[str | None] = []
    for position, field in enumerate(fields):
        if field == "?" and position in (2, 4):
            converted.append("*")
            continue
        terms = field.split(",")
        if position == 4 and len(terms) > 1 and any("#" in t for t in terms) and not all("#" in t for t in terms):
            converted.append(None)  # croniter refuses to mix `#` terms with others
            continue
        parts = [_term(position, t) for t in terms]
        converted.append(None if None in parts else ",".join(p for p in parts if p is not None))
    return converted


def _parses(expression: str) -> CronSim | None:
    try:
        return CronSim(expression, _START)
    except CronSimError:
        return None


def check_cron(value: str) -> str:
    """``value`` when it is a cron expression Prefect's deployments take; else ValueError saying why.

    Args:
        value: Five fields (minute hour day month weekday), or a nickname such as ``@daily``.

    Raises:
        ValueError: With the fields that are wrong and what each takes.

    Example:
        >>> check_cron("0 8 * * 1-5")
        '0 8 * * 1-5'
    """
    if value.startswith("@"):
        if value.lower() in NICKNAMES:
            return value
        if value.lower() == "@reboot":
            raise ValueError(
                "'@reboot' means at system start, which a deployment's schedule has not; "
                f"expected five fields such as '0 8 * * 1-5', or one of {', '.join(NICKNAMES)}"
            )
        raise ValueError(
            f"unknown schedule {value!r}; expected one of {', '.join(NICKNAMES)}"
            + did_you_mean(value.lower(), NICKNAMES)
        )
    fields = _fields(value)
    if len(fields) != 5:
        raise ValueError(
            f"expected a cron expression of 5 fields (minute hour day month weekday), "
            f"such as '0 8 * * 1-5'; found {value!r}"
        )
    written = value.split()
    bad = []
    for position, (name, allowed, _, _) in enumerate(_FIELDS):
        # Each field alone, the others `*`: cronsim reports one field at a time, and a day of
        # month alone is never impossible (that is a warning, not an error).
        alone = ["0", "0", "*", "*", "*"]
        alone[position] = fields[position] or "!"
        if _parses(" ".join(alone)) is None:
            bad.append(f"bad {name} {written[position]!r} (expected {allowed})")
    if bad:
        raise ValueError(f"invalid cron expression {value!r}: " + "; ".join(bad) + f"; {_SHAPE}")
    return value


def never_fires(value: str) -> str | None:
    """Why a valid cron expression never fires (a day no month of it has), or None.

    When both the day of month and the weekday are restricted a day matches either (as cron
    and Prefect read them), so only a day of month with weekday ``*`` can be impossible.

    Example:
        >>> never_fires("0 0 31 2 *")
        "'0 0 31 2 *' never fires: no month it names has day 31"
    """
    fields = _fields(value)
    if value.startswith("@") or len(fields) != 5:
        return None
    _, _, day, month, weekday = fields
    if weekday != "*" or day is None or month is None:
        return None
    days = _parses(f"0 0 {day} * *")
    months = _parses(f"0 0 * {month} *")
    if days is None or months is None:
        return None
    numbered = [d for d in days.days if isinstance(d, int) and d > 0]
    if len(numbered) != len(days.days):
        return None  # L: every month has a last day
    longest = max(_DAYS_IN_MONTH[m] for m in months.months)
    if min(numbered) <= longest:
        return None
    shown = ", ".join(str(d) for d in sorted(numbered)[:3]) + (", ..." if len(numbered) > 3 else "")
    return f"{value!r} never fires: no month it names has day {shown}"
