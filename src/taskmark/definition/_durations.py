"""Time strings such as "90s", "30 seconds", "1.5 hours" or "1h30m", as seconds."""

from __future__ import annotations

import re

__all__ = ["ACCEPTED_FORMS", "parse_duration"]

ACCEPTED_FORMS = '"90s", "30 seconds", "2m", "5 minutes", "1.5 hours", "1h30m"'

_UNITS = {
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)")


def parse_duration(value: object) -> float:
    """Seconds in a time string.

    Args:
        value: A string of one or more NUMBER UNIT parts ("1h30m", "1.5 hours").

    Returns:
        The duration in seconds (> 0).

    Raises:
        ValueError: For anything else; the message lists the accepted forms.

    Example:
        >>> parse_duration("1h30m")
        5400.0
    """
    text = value.strip().lower() if isinstance(value, str) else ""
    total, position = 0.0, 0
    while text and position < len(text):
        match = _PART.match(text, position)
        if not match or match.group(2) not in _UNITS:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    else:
        if text and total > 0:
            return total
    raise ValueError(f"expected a time such as {ACCEPTED_FORMS}; found {value!r}")
