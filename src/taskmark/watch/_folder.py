"""The watch folder on disk: where a seed is at each moment, and moving it on safely.

::

    DIR/
      pending/NAME-seed.json      dropped here; waiting for a check and a free slot
      current/ID/                 claimed: run.json (the claim), seed.json; running
      complete/ID/                finished (completed, failed, ...): run.json, seed.json,
                                  summary.json and the outputs
      rejected/NAME-seed.json     not run; NAME-seed.json.error says why
      runs.jsonl                  one JSON line per finished run
      .taskmark-watch.lock        held by the one watcher of this folder

Every move is a ``rename`` within one file system, so a seed is always in exactly one
place; files are written to a temporary name and renamed, so a reader never sees half of
one. The order of steps is chosen so that a crash at any point leaves a state the next
watcher finishes (see :meth:`WatchFolder.unfinished` and :meth:`WatchFolder.unlogged`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from taskmark._files import locked, write_whole
from taskmark.errors import TaskmarkError
from taskmark.watch._seed import SEED_SUFFIX

__all__ = ["CLAIM_FILE", "SEED_FILE", "SUMMARY_FILE", "Claim", "FolderBusyError", "WatchFolder", "now"]

CLAIM_FILE = "run.json"
"""In ``current/ID`` and ``complete/ID``: the claim (id, key, seed, params, how it runs)."""
SEED_FILE = "seed.json"
"""In ``current/ID`` and ``complete/ID``: the seed as it was dropped."""
SUMMARY_FILE = "summary.json"
"""In ``complete/ID``: the run's end (state, message, usage, phases); written last."""
RUNS_LOG = "runs.jsonl"
LOCK_FILE = ".taskmark-watch.lock"


class FolderBusyError(TaskmarkError):
    """Another watcher already watches this folder."""


def now() -> str:
    """The time, ISO 8601 in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Claim:
    """What ``current/ID/run.json`` records when a seed is claimed."""

    id: str
    """The run's folder name under ``current/`` and ``complete/``."""
    key: str
    """The seed's identity (see :func:`taskmark.watch.seed_key`)."""
    seed: str
    """The seed's file name as dropped in ``pending/``."""
    definition: str
    """The definition file, resolved."""
    params: dict[str, Any]
    """The inputs, defaults filled in."""
    claimed_at: str
    """When the seed moved to ``current/``."""
    deployment: str | None = None
    """``FLOW/DEPLOYMENT`` when run through a deployment, else None (run in the watcher)."""
    flow_run_id: str | None = None
    """The deployment's flow run, once created (a restarted watcher waits for it)."""

    @classmethod
    def read(cls, path: Path) -> Claim:
        """The claim in the file ``path``.

        Raises:
            OSError, ValueError, TypeError: The file is missing or not a claim.
        """
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class WatchFolder:
    """The folders and files of one watch folder, and the moves between them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pending = root / "pending"
        self.current = root / "current"
        self.complete = root / "complete"
        self.rejected = root / "rejected"
        self.runs_log = root / RUNS_LOG

    def ensure(self) -> None:
        """Create the folders that are missing."""
        for folder in (self.pending, self.current, self.complete, self.rejected):
            folder.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this process: one watcher per folder.

        Raises:
            FolderBusyError: Another process holds it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / LOCK_FILE
        with contextlib.ExitStack() as held:
            try:
                handle = held.enter_context(locked(path, wait=False))
            except BlockingIOError:
                holder = path.read_text().strip() or "another process"
                raise FolderBusyError(f"{self.root} is already watched by {holder}") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
            yield

    # -- pending ---------------------------------------------------------------------------

    @staticmethod
    def is_seed(path: Path) -> bool:
        """Whether ``path`` is named like a seed (``*-seed.json``, not hidden)."""
        return path.name.endswith(SEED_SUFFIX) and not path.name.startswith(".")

    def pending_seeds(self) -> list[Path]:
        """The seeds in ``pending/``, oldest first."""
        seeds = []
        for path in self.pending.iterdir():
            with contextlib.suppress(OSError):
                if self.is_seed(path) and path.is_file():
                    seeds.append((path.stat().st_mtime_ns, path.name, path))
        return [path for *_, path in sorted(seeds)]

    def reject(self, seed: Path, message: str, target: Path | None = None) -> Path:
        """Move a seed to ``rejected/`` with ``NAME.error`` beside it holding ``message``.

        The error file is written first: a crash in between leaves the seed in
        ``pending/``, checked again on the next start.

        Args:
            seed: The seed file.
            message: Why; the ``.error`` file's text.
            target: Where to put it (default: :meth:`rejected_path`).

        Returns:
            Where the seed is now.

        Raises:
            FileNotFoundError: The seed is gone.
        """
        target = target or self.rejected_path(seed)
        if not seed.exists():
            raise FileNotFoundError(seed)
        write_whole(target.with_name(target.name + ".error"), message)
        os.replace(seed, target)
        return target

    def rejected_path(self, seed: Path) -> Path:
        """Where :meth:`reject` would put ``seed`` now (for messages that name it)."""
        return self.free_name(self.rejected, seed.name)

    @staticmethod
    def free_name(folder: Path, name: str) -> Path:
        """``folder/name``, or ``folder/BASE.N-seed.json`` with the first free ``N`` from 2."""
        target = folder / name
        base = name.removesuffix(SEED_SUFFIX)
        number = 2
        while target.exists() or target.with_name(target.name + ".error").exists():
            target = folder / f"{base}.{number}{SEED_SUFFIX}"
            number += 1
        return target

    # -- current ---------------------------------------------------------------------------

    def claim(self, seed: Path, claim: Claim) -> Path:
        """Move ``seed`` to ``current/ID/seed.json`` with the claim in ``run.json``.

        The claim is written before the seed moves: a crash in between leaves a folder
        without ``seed.json``, which :meth:`unfinished` removes, and the seed in
        ``pending/``.
        """
        run_dir = self.current / claim.id
        run_dir.mkdir()
        self.record(run_dir, claim)
        os.replace(seed, run_dir / SEED_FILE)
        return run_dir

    @staticmethod
    def record(run_dir: Path, claim: Claim) -> None:
        """Write (or rewrite) ``run_dir/run.json``."""
        write_whole(run_dir / CLAIM_FILE, json.dumps(asdict(claim), indent=2) + "\n")

    def unfinished(self) -> list[Path]:
        """The runs in ``current/`` to resume, after tidying what a crash left half done.

        A folder without ``seed.json`` is a claim that never moved its seed: it is removed
        (the seed is still in ``pending/``). Folders holding anything else unexpected are
        left alone.
        """
        runs = []
        for run_dir in sorted(p for p in self.current.iterdir() if p.is_dir()):
            if (run_dir / SEED_FILE).is_file():
                runs.append(run_dir)
            elif all(p.name == CLAIM_FILE or p.name.endswith(".tmp") for p in run_dir.iterdir()):
                shutil.rmtree(run_dir)
        return runs

    def finish(self, run_dir: Path, files: dict[str, str]) -> Path:
        """Write ``files`` into ``run_dir`` (``summary.json`` last) and move it to ``complete/``.

        A folder in ``current/`` with ``summary.json`` has finished: a restarted watcher
        moves it on without running it again.

        Raises:
            FileExistsError: ``complete/ID`` exists (ids are unique, so this is a bug).
        """
        for name, text in sorted(files.items(), key=lambda item: item[0] == SUMMARY_FILE):
            write_whole(run_dir / name, text)
        target = self.complete / run_dir.name
        if target.exists():
            raise FileExistsError(f"{target} exists; not overwriting a finished run")
        os.replace(run_dir, target)
        return target

    # -- what has run ----------------------------------------------------------------------

    def claims(self) -> list[tuple[Path, Claim]]:
        """Every claim in ``current/`` and ``complete/``, with its folder."""
        found = []
        for folder in (self.current, self.complete):
            for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                with contextlib.suppress(OSError, ValueError, TypeError):
                    found.append((run_dir, Claim.read(run_dir / CLAIM_FILE)))
        return found

    def taken_ids(self) -> set[str]:
        """Every run folder name in ``current/`` and ``complete/``."""
        return {p.name for folder in (self.current, self.complete) for p in folder.iterdir()}

    # -- runs.jsonl ------------------------------------------------------------------------

    def append_run(self, line: dict[str, Any]) -> None:
        """Append one JSON line to ``runs.jsonl`` with a single ``O_APPEND`` write.

        One ``write`` of the whole line to a file opened with ``O_APPEND`` is placed at the
        end as one piece: readers and other writers never see lines mixed.
        """
        data = (json.dumps(line, default=str, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.runs_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            while written < len(data):  # a short write (a full disk) would split the line
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)

    def logged_ids(self) -> set[str]:
        """The ids ``runs.jsonl`` has lines for."""
        ids: set[str] = set()
        with contextlib.suppress(FileNotFoundError), self.runs_log.open(encoding="utf-8") as handle:
            for line in handle:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    ids.add(str(json.loads(line)["id"]))
        return ids

    def unlogged(self) -> list[Path]:
        """Finished runs in ``complete/`` with no line in ``runs.jsonl`` (the watcher stopped in between)."""
        logged = self.logged_ids()
        return [
            p
            for p in sorted(self.complete.iterdir())
            if p.is_dir() and p.name not in logged and (p / SUMMARY_FILE).is_file()
        ]
