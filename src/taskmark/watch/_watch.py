"""The watcher: seeds dropped in ``pending/`` are checked, claimed, run and filed.

One asyncio loop does everything. File events come from watchfiles (inotify on Linux);
each batch of events triggers a listing of ``pending/``, so a missed or merged event costs
nothing. Checking, deduplicating and claiming are synchronous steps with no ``await``
between them, so two seeds can never claim the same run. Runs go concurrently up to
``max_concurrent``; seeds wait in ``pending/`` for a slot, in the order they arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from watchfiles import Change, awatch

from taskmark.watch._folder import CLAIM_FILE, SEED_FILE, SUMMARY_FILE, Claim, WatchFolder, now
from taskmark.watch._runner import Outcome, error_outcome, run_locally, run_through_deployment
from taskmark.watch._seed import SEED_SUFFIX, Seed, SeedCheck, deployment_name, read_seed

__all__ = ["DEFAULT_MAX_CONCURRENT", "WatchEvent", "Watcher", "watch"]

DEFAULT_MAX_CONCURRENT = 2
"""Runs at once unless told otherwise: LLM providers rate-limit, and the local server is SQLite."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class WatchEvent:
    """Something the watcher did, for a CLI or a log to show."""

    kind: str
    """``resumed``, ``claimed``, ``finished``, ``rejected``, ``duplicate`` or ``error``."""
    seed: str
    """The seed's file name as dropped."""
    run_id: str | None = None
    """The run's folder name under ``current/`` or ``complete/``."""
    state: str | None = None
    """For ``finished``: the final state (``COMPLETED``, ``FAILED``, ...)."""
    message: str | None = None
    """Why (rejections, errors) or the final state's message."""
    path: Path | None = None
    """Where the seed is now."""


Reporter = Callable[[WatchEvent], None]


class Watcher:
    """Watches one folder; see :func:`watch`."""

    def __init__(
        self,
        root: Path,
        *,
        deployment: str | None = None,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        report: Reporter | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1; found {max_concurrent}")
        self.folder = WatchFolder(root)
        self.deployment = deployment
        self.max_concurrent = max_concurrent
        self.report: Reporter = report or (lambda _event: None)
        self.ready = asyncio.Event()
        """Set once the folder is watched and what was there at start is queued or resumed."""
        self._queue: asyncio.Queue[Path] = asyncio.Queue()
        self._queued: set[Path] = set()
        self._runs: dict[str, list[str]] = {}  # key -> run ids
        self._jobs: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrent)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Watch until ``stop`` is set (or this coroutine is cancelled).

        On stopping, running runs are cancelled and stay in ``current/``; the next watcher
        resumes them. Queued seeds stay in ``pending/``.

        Raises:
            FolderBusyError: Another watcher holds the folder.
        """
        stop = stop or asyncio.Event()
        self.folder.ensure()
        with self.folder.lock():
            for run_dir in self.folder.unlogged():
                self._log(run_dir)
            resumable = self.folder.unfinished()  # first: it tidies half-made claims away
            for run_dir, claim in self.folder.claims():
                self._runs.setdefault(claim.key, []).append(run_dir.name)
            dispatcher = asyncio.create_task(self._dispatch())
            try:
                for run_dir in resumable:
                    self._start(self._resume(run_dir))
                await self._watch(stop)
            finally:
                dispatcher.cancel()
                for job in self._jobs:
                    job.cancel()
                await asyncio.gather(dispatcher, *self._jobs, return_exceptions=True)

    # -- arrivals ----------------------------------------------------------------------------

    async def _watch(self, stop: asyncio.Event) -> None:
        stream = awatch(self.folder.pending, stop_event=stop, watch_filter=_seed_change, recursive=False)
        batch = asyncio.ensure_future(_next(stream))
        # awatch registers its inotify watch before its first await: from here on no drop
        # is missed, so the listing below sees every seed that came before.
        await asyncio.sleep(0)
        self._scan()
        self.ready.set()
        try:
            while await batch:
                self._scan()
                batch = asyncio.ensure_future(_next(stream))
        finally:
            batch.cancel()
            with contextlib.suppress(BaseException):
                await batch
            await stream.aclose()

    def _scan(self) -> None:
        """Check each new seed in ``pending/``: reject it at once, or queue it for a slot."""
        for path in self.folder.pending_seeds():
            if path in self._queued:
                continue
            check = self._check(path)
            if check is None:
                continue
            self._queued.add(path)
            self._queue.put_nowait(path)

    def _check(self, path: Path) -> SeedCheck | None:
        """The seed at ``path`` if it may run now; else it is rejected (or gone) and None."""
        target = self.folder.rejected_path(path)
        check = read_seed(path, base=self.folder.root, shown_as=str(target), deployment=self.deployment)
        if not path.exists():
            return None
        if check.seed is None:
            self._reject(path, target, check.message(), "rejected")
            return None
        previous = self._runs.get(check.seed.key)
        if previous and not check.seed.rerun:
            where = self._where(previous[-1])
            what = f"a run with id '{check.seed.id}'" if check.seed.id else "this seed"
            message = f"{target}:1:1: error: {what} has run already as '{previous[-1]}' ({where}); add \"rerun\": true to run it again\n"
            self._reject(path, target, message, "duplicate")
            return None
        return check

    def _reject(self, path: Path, target: Path, message: str, kind: str) -> None:
        with contextlib.suppress(FileNotFoundError):  # taken away meanwhile: nothing to file
            moved = self.folder.reject(path, message, target)
            self.report(WatchEvent(kind, path.name, message=message.strip(), path=moved))

    def _where(self, run_id: str) -> str:
        summary = self.folder.complete / run_id / SUMMARY_FILE
        if summary.is_file():
            with contextlib.suppress(OSError, ValueError):
                return f"complete/{run_id}, {str(json.loads(summary.read_text())['state']).lower()}"
            return f"complete/{run_id}"
        return f"current/{run_id}, running"

    # -- claims ------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Give each queued seed a slot, in order, and claim and run it."""
        while True:
            path = await self._queue.get()
            await self._slots.acquire()
            try:
                claimed = self._claim(path)
            except BaseException:
                self._slots.release()
                raise
            finally:
                self._queued.discard(path)
            if claimed is None:
                self._slots.release()
            else:
                self._start(self._execute(*claimed), holds_slot=True)

    def _claim(self, path: Path) -> tuple[Path, Claim, Seed] | None:
        """Check the seed again (it may have changed while it waited) and move it to ``current/``."""
        check = self._check(path)
        if check is None or check.seed is None:
            return None
        seed = check.seed
        claim = Claim(
            id=self._new_id(path, seed),
            key=seed.key,
            seed=path.name,
            definition=str(seed.definition_path),
            params=seed.params,
            claimed_at=now(),
            deployment=deployment_name(self.deployment, seed.definition) if self.deployment else None,
        )
        try:
            run_dir = self.folder.claim(path, claim)
        except FileNotFoundError:  # the seed was taken away meanwhile
            self.folder.unfinished()
            return None
        self._runs.setdefault(seed.key, []).append(claim.id)
        self.report(WatchEvent("claimed", path.name, run_id=claim.id, path=run_dir))
        return run_dir, claim, seed

    def _new_id(self, path: Path, seed: Seed) -> str:
        """``ID`` from the seed, else ``NAME-HASH``; ``-2``, ``-3``... when taken (reruns)."""
        base = seed.id or f"{_UNSAFE.sub('_', path.name.removesuffix(SEED_SUFFIX))}-{seed.key.partition(':')[2][:8]}"
        taken = self.folder.taken_ids()
        run_id, number = base, 2
        while run_id in taken:
            run_id, number = f"{base}-{number}", number + 1
        return run_id

    async def _resume(self, run_dir: Path) -> None:
        """Take up a run a previous watcher left in ``current/``, the way it was claimed."""
        if (run_dir / SUMMARY_FILE).is_file():  # it had finished; only the move was left
            self._finished(self.folder.finish(run_dir, {}))
            return
        try:
            claim: Claim | None = Claim.read(run_dir / CLAIM_FILE)
        except (OSError, ValueError, TypeError):
            claim = None
        deployment = claim.deployment if claim is not None else self.deployment
        check = read_seed(run_dir / SEED_FILE, base=self.folder.root, deployment=deployment)
        if claim is None:  # run.json lost (edited by hand): claim again from the seed
            seed = check.seed
            claim = Claim(
                id=run_dir.name,
                key=seed.key if seed else "unknown",
                seed=SEED_FILE,
                definition=str(seed.definition_path) if seed else "",
                params=seed.params if seed else {},
                claimed_at=now(),
                deployment=deployment_name(deployment, seed.definition) if seed and deployment else None,
            )
            self.folder.record(run_dir, claim)
        self.report(WatchEvent("resumed", claim.seed, run_id=claim.id, path=run_dir))
        async with self._slots:
            if check.seed is None and claim.flow_run_id is None:
                self._finish(run_dir, claim, Outcome("ERROR", "the seed is no longer valid:\n" + check.message(), 0.0))
                return
            await self._execute(run_dir, claim, check.seed)

    # -- runs --------------------------------------------------------------------------------

    def _start(self, job: Coroutine[Any, Any, None], *, holds_slot: bool = False) -> None:
        task = asyncio.create_task(self._guarded(job, holds_slot))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _guarded(self, job: Coroutine[Any, Any, None], holds_slot: bool) -> None:
        try:
            await job
        except Exception as exc:  # noqa: BLE001 - a bug or a disk problem: say so, keep watching
            self.report(WatchEvent("error", "", message=f"{type(exc).__name__}: {exc}"))
        finally:
            if holds_slot:
                self._slots.release()

    async def _execute(self, run_dir: Path, claim: Claim, seed: Seed | None) -> None:
        """Run a claimed seed and file it in ``complete/``. Cancelling leaves it in ``current/``."""
        started = time.perf_counter()
        flow_run_id = claim.flow_run_id

        def created(run_id: str) -> None:
            nonlocal flow_run_id
            flow_run_id = run_id
            self.folder.record(run_dir, replace(claim, flow_run_id=run_id))

        try:
            if claim.deployment is not None:
                outcome = await run_through_deployment(
                    claim.deployment,
                    claim.params,
                    run_name=claim.id,
                    idempotency_key=f"taskmark-watch:{self.folder.root.resolve()}:{claim.id}",
                    flow_run_id=claim.flow_run_id,
                    created=created,
                )
            else:
                seed = replace(seed, params=claim.params) if seed is not None else None
                outcome = await run_locally(seed, flow_run_id=claim.flow_run_id, created=created)
        except Exception as exc:  # any failure is this run's outcome, not the watcher's
            if (task := asyncio.current_task()) is not None and task.cancelling():
                # The watcher is stopping and the run could not record its end in time: it stays
                # in current/ for the next watcher to resume, as any stopped run does.
                raise asyncio.CancelledError from exc
            outcome = error_outcome(exc, started, flow_run_id)
        self._finish(run_dir, claim, outcome)

    def _finish(self, run_dir: Path, claim: Claim, outcome: Outcome) -> None:
        summary = outcome.summary(
            id=claim.id, seed=claim.seed, definition=claim.definition, deployment=claim.deployment, finished_at=now()
        )
        files = {**outcome.files, SUMMARY_FILE: json.dumps(summary, indent=2, default=str) + "\n"}
        self._finished(self.folder.finish(run_dir, files))

    def _finished(self, done: Path) -> None:
        line = self._log(done)
        message = line["message"]
        self.report(
            WatchEvent(
                "finished",
                str(line["seed"]),
                run_id=done.name,
                state=str(line["state"]),
                message=None if message is None else str(message),
                path=done,
            )
        )

    def _log(self, done: Path) -> dict[str, Any]:
        """Append the line of the finished run in ``done`` to ``runs.jsonl``."""
        claim = Claim.read(done / CLAIM_FILE)
        summary = json.loads((done / SUMMARY_FILE).read_text(encoding="utf-8"))
        line = {
            "id": claim.id,
            "state": summary.get("state"),
            "outcome": summary.get("outcome"),
            "message": summary.get("message"),
            "flow_run_id": summary.get("flow_run_id"),
            "seed": claim.seed,
            "definition": claim.definition,
            "params": claim.params,
            "key": claim.key,
            "deployment": claim.deployment,
            "claimed_at": claim.claimed_at,
            "finished_at": summary.get("finished_at"),
            "duration_s": summary.get("duration_s"),
            "usage": summary.get("usage"),
            "folder": f"complete/{claim.id}",
        }
        self.folder.append_run(line)
        return line


async def watch(
    root: str | Path,
    *,
    deployment: str | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    stop: asyncio.Event | None = None,
    report: Reporter | None = None,
) -> None:
    """Watch the folder ``root``: run each seed dropped in ``root/pending/``, once.

    Args:
        root: The watch folder; ``pending/``, ``current/``, ``complete/`` and ``rejected/``
            are created in it.
        deployment: Run through this Prefect deployment (``NAME`` for
            ``DEFINITION-NAME/NAME``, or ``FLOW/NAME``) instead of in this process.
        max_concurrent: Runs at once.
        stop: Set it to stop watching; running runs are cancelled and resumed by the next
            watcher.
        report: Called with each :class:`WatchEvent`.

    Raises:
        FolderBusyError: Another watcher holds the folder.

    Example:
        >>> asyncio.run(watch("inbox", max_concurrent=4, report=print))
    """
    await Watcher(Path(root), deployment=deployment, max_concurrent=max_concurrent, report=report).run(stop)


def _seed_change(change: Change, path: str) -> bool:
    return change != Change.deleted and WatchFolder.is_seed(Path(path))


async def _next(stream: AsyncGenerator[set[tuple[Change, str]], None]) -> bool:
    """Wait for the next batch of changes; False when the stream has stopped."""
    try:
        await stream.__anext__()
    except StopAsyncIteration:
        return False
    return True
