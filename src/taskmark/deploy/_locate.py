"""Where a deployment finds its definition: by name, along a search path of folders.

A deployment's entrypoint names a definition (``taskmark.deploy.entrypoints.daily_market_analysis``),
not a file. When a run starts, the definition of that name is looked up in the folders of
``TASKMARK_DEFINITIONS_PATH`` (``os.pathsep``-separated), or, when it is unset, in the run's
working directory and its ``definitions/`` folder. The first folder holding it wins, as on
``PATH``. In a folder, ``NAME.md`` is tried first, then every other ``*.md`` file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from taskmark.definition import Definition, validate_file
from taskmark.errors import DefinitionError, TaskmarkError

__all__ = [
    "DEFINITIONS_PATH_ENV",
    "ENTRYPOINT_MODULE",
    "DefinitionNotFoundError",
    "definitions_path",
    "entrypoint_of",
    "find_definition",
    "name_of_attribute",
    "searching",
]

DEFINITIONS_PATH_ENV = "TASKMARK_DEFINITIONS_PATH"
"""The environment variable listing the folders a run looks in for its definition."""

ENTRYPOINT_MODULE = "taskmark.deploy.entrypoints"
"""The module whose attributes are the flows of definitions, one per definition name."""

_DEFAULT_FOLDERS = (".", "definitions")


class DefinitionNotFoundError(TaskmarkError, LookupError):
    """No definition of the wanted name is on the search path."""


def entrypoint_of(definition: Definition) -> str:
    """The Prefect entrypoint of a definition: a module path, importable wherever taskmark is.

    Example:
        >>> entrypoint_of(load_definition("definitions/daily-market-analysis.md"))
        'taskmark.deploy.entrypoints.daily_market_analysis'
    """
    return f"{ENTRYPOINT_MODULE}.{definition.name.replace('-', '_')}"


def name_of_attribute(attribute: str) -> str:
    """The definition name an entrypoint attribute stands for (``daily_market_analysis`` →
    ``daily-market-analysis``); slugs have no underscores, so the mapping is one to one."""
    return attribute.replace("_", "-")


def definitions_path() -> list[Path]:
    """The folders searched for definitions, from ``TASKMARK_DEFINITIONS_PATH`` or the default."""
    raw = os.environ.get(DEFINITIONS_PATH_ENV, "")
    folders = [part for part in raw.split(os.pathsep) if part] or list(_DEFAULT_FOLDERS)
    return [Path(folder) for folder in folders]


@contextlib.contextmanager
def searching(folders: Sequence[str | Path]) -> Iterator[None]:
    """Set ``TASKMARK_DEFINITIONS_PATH`` to ``folders`` for the duration of the block.

    Used when deploying: the flow is loaded through its entrypoint from the folder its runs
    will search, so what is deployed is what a run will find.
    """
    previous = os.environ.get(DEFINITIONS_PATH_ENV)
    os.environ[DEFINITIONS_PATH_ENV] = os.pathsep.join(str(f) for f in folders)
    try:
        yield
    finally:
        if previous is None:
            del os.environ[DEFINITIONS_PATH_ENV]
        else:
            os.environ[DEFINITIONS_PATH_ENV] = previous


def find_definition(name: str, folders: Sequence[Path] | None = None) -> Definition:
    """The definition called ``name``, read now from the first folder that holds it.

    Args:
        name: The definition's ``name`` (its slug).
        folders: Where to look; by default :func:`definitions_path`.

    Returns:
        The definition, freshly read and validated.

    Raises:
        DefinitionError: ``NAME.md`` exists but is not valid (its located errors).
        DefinitionNotFoundError: No folder holds a valid definition of that name.
    """
    folders = definitions_path() if folders is None else folders
    unreadable: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        exact = folder / f"{name}.md"
        candidates = [exact] + sorted(p for p in folder.glob("*.md") if p != exact)
        for candidate in candidates:
            if not candidate.is_file():
                continue
            report = validate_file(candidate)
            if report.definition is None:
                if candidate == exact:
                    raise DefinitionError(report.diagnostics)
                unreadable.append(str(candidate))
                continue
            if report.definition.name == name:
                return report.definition
    searched = ", ".join(str(f.resolve()) for f in folders)
    detail = f" ({len(unreadable)} invalid files skipped: {', '.join(unreadable)})" if unreadable else ""
    raise DefinitionNotFoundError(
        f"no definition named '{name}' in {searched}{detail}; set {DEFINITIONS_PATH_ENV} to the folder that holds it"
    )
