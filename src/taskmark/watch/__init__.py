"""The watch folder: seed files dropped in a folder become runs, each run once.

``taskmark watch DIR`` (or :func:`watch`) checks each ``DIR/pending/*-seed.json``, moves a
bad one to ``DIR/rejected/`` with a located ``.error``, runs a good one from
``DIR/current/ID/`` (in the watcher's process, or through a Prefect deployment), files it
in ``DIR/complete/ID/`` with its outputs and summary, and appends a line to
``DIR/runs.jsonl``. See ``docs/watching.md``.

Seed checking (:func:`check_seed`, :func:`read_seed`) imports neither Prefect nor litellm.
"""

from __future__ import annotations

from taskmark.watch._folder import Claim, FolderBusyError, WatchFolder
from taskmark.watch._seed import (
    SEED_KEYS,
    SEED_SUFFIX,
    Seed,
    SeedCheck,
    check_seed,
    deployment_name,
    read_seed,
    seed_key,
)
from taskmark.watch._watch import DEFAULT_MAX_CONCURRENT, Watcher, WatchEvent, watch

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "SEED_KEYS",
    "SEED_SUFFIX",
    "Claim",
    "FolderBusyError",
    "Seed",
    "SeedCheck",
    "WatchEvent",
    "WatchFolder",
    "Watcher",
    "check_seed",
    "deployment_name",
    "read_seed",
    "seed_key",
    "watch",
]
