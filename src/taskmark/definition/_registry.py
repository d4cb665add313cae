"""Step kinds beyond the built-in ones, known by name so that validation needs no import.

A package adds a kind through the ``taskmark.step_strategies`` entry point (read from package
metadata, nothing imported) or, in-process, with :func:`register_step_kind` (the compiler's
strategy decorator calls it).
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

__all__ = ["BUILTIN_STEP_KINDS", "ENTRY_POINT_GROUP", "known_step_kinds", "register_step_kind"]

BUILTIN_STEP_KINDS = ("agent", "validation", "aggregate", "route")
ENTRY_POINT_GROUP = "taskmark.step_strategies"

_registered: set[str] = set()


def register_step_kind(name: str) -> None:
    """Make ``name:`` a known step kind in this process.

    Raises:
        ValueError: When ``name`` is not a lowercase word or is a built-in kind.
    """
    if not name or not name[0].islower() or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"a step kind is a lowercase word; got {name!r}")
    if name in BUILTIN_STEP_KINDS:
        raise ValueError(f"'{name}' is a built-in step kind")
    _registered.add(name)


@functools.lru_cache(maxsize=1)
def _entry_point_kinds() -> frozenset[str]:
    return frozenset(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def known_step_kinds() -> frozenset[str]:
    """Custom kinds: registered in this process or declared by installed packages."""
    return frozenset(_registered) | _entry_point_kinds()
