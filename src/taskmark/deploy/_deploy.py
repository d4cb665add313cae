"""Deployments of definition files: to a work pool (``taskmark deploy``) or served (``taskmark serve``).

A deployment is Prefect's own ``RunnerDeployment``, made from the definition's entrypoint
(:mod:`taskmark.deploy.entrypoints`) exactly as ``prefect deploy`` makes one from
``prefect.yaml``: Prefect loads the flow, reads its typed signature into the parameter schema
(the UI's run form), and stores it with the deployment. Each run starts in the file's folder
(a ``set_working_directory`` pull step) and reads the file there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from taskmark.definition import Definition, Schedule, load_definition
from taskmark.deploy._locate import DEFINITIONS_PATH_ENV, entrypoint_of, find_definition, searching
from taskmark.errors import TaskmarkError
from taskmark.flows._compile import RUN_TAG

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Schedule as PrefectSchedule

__all__ = [
    "DEFAULT_POOL",
    "DeployError",
    "Deployed",
    "check_scheduled_inputs",
    "deploy",
    "ensure_pool",
    "schedules_of",
    "serve",
    "to_deployment",
]

DEFAULT_POOL = "taskmark"
"""The work pool ``taskmark deploy`` uses unless told otherwise (the one in ``prefect.yaml``)."""


class _WorkingDirectory:
    """Prefect runner storage that only sets each run's working directory: the definition's folder.

    What ``prefect deploy`` writes as its default pull step. Without a pull step, a worker would
    copy the folder ``taskmark deploy`` ran in into every run's workspace.
    """

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def set_base_path(self, path: Path) -> None:
        return None

    @property
    def pull_interval(self) -> int | None:
        return None

    @property
    def destination(self) -> Path:
        return self._folder

    async def pull_code(self) -> None:
        return None

    def to_pull_step(self) -> dict[str, Any]:
        return {"prefect.deployments.steps.set_working_directory": {"directory": str(self._folder)}}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _WorkingDirectory) and other._folder == self._folder

    def __hash__(self) -> int:
        return hash(self._folder)


class DeployError(TaskmarkError):
    """A deployment could not be made as asked (a clash, a bad schedule)."""


@dataclass(frozen=True)
class Deployed:
    """A deployment that now exists on the server."""

    id: UUID
    """The deployment's id (its UI page is ``/deployments/deployment/ID``)."""
    flow_name: str
    """The flow's name: the definition's name."""
    name: str
    """The deployment's name."""
    pool: str | None
    """The work pool, or None when served."""
    schedule: str | None
    """The schedule in words, e.g. ``cron 0 8 * * 1-5 (America/New_York)``, or None."""

    @property
    def full_name(self) -> str:
        """``FLOW/DEPLOYMENT``, as ``prefect deployment run`` takes it."""
        return f"{self.flow_name}/{self.name}"


def schedules_of(
    definition: Definition, *, cron: str | None = None, timezone: str | None = None
) -> list[PrefectSchedule]:
    """The deployment's schedules: the definition's ``schedule:``, with ``cron``/``timezone`` overriding it.

    Args:
        definition: The definition.
        cron: A cron expression replacing the definition's cron or interval.
        timezone: An IANA time zone replacing the definition's.

    Returns:
        No schedule, or one whose runs get the schedule's ``parameters``.

    Raises:
        DeployError: The cron expression or the time zone is not valid, or a time zone is
            given for a definition without a schedule.
    """
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from prefect.schedules import Cron, Interval

    own = definition.metadata.schedule
    if own is None and cron is None:
        if timezone is not None:
            raise DeployError("--timezone needs a schedule and the definition has none: add --cron")
        return []
    # Not validated here: a --cron is checked below by Prefect's own CronSchedule, whose words the error keeps.
    base = own or Schedule.model_construct(cron=cron)
    zone = timezone or base.timezone
    every = timedelta(seconds=float(base.interval or 0))
    options: dict[str, Any] = {"timezone": zone, "active": base.active, "parameters": dict(base.parameters)}
    try:  # the server's own checks, before anything is sent
        if cron is not None or base.cron is not None:
            CronSchedule(cron=cron or str(base.cron), timezone=zone)
            return [Cron(cron or str(base.cron), **options)]
        IntervalSchedule(interval=every, timezone=zone)
        return [Interval(every, **options)]
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        first = errors()[0] if callable(errors) else {}
        # A validator's own ValueError carries the message; pydantic's wording around it is not ours.
        reason = first.get("ctx", {}).get("error") or first.get("msg") or exc
        raise DeployError(f"invalid schedule: {reason}") from None


def _describe(deployment: RunnerDeployment) -> str | None:
    if not deployment.schedules:
        return None
    schedule: Any = deployment.schedules[0].schedule
    what = f"cron {schedule.cron}" if getattr(schedule, "cron", None) else f"every {schedule.interval}"
    return f"{what} ({schedule.timezone or 'UTC'})"


def to_deployment(
    path: str | Path,
    *,
    name: str | None = None,
    pool: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> RunnerDeployment:
    """A ``RunnerDeployment`` of the definition at ``path``, not yet applied.

    The flow is loaded through the definition's entrypoint from the file's folder, as a run
    will load it: with a work pool, the deployment's pull step makes that folder each run's
    working directory, as ``prefect deploy`` does with the folder it runs in.

    Args:
        path: The definition file.
        name: The deployment's name; by default the definition's name.
        pool: The work pool; None for a deployment served by ``taskmark serve``.
        cron: Overrides the definition's schedule.
        timezone: Overrides the schedule's time zone.
        parameters: Default inputs of the deployment's runs.

    Raises:
        DefinitionError: The file is not a valid definition.
        DeployError: Another file in the same folder has the same name, or a bad schedule.
    """
    from prefect.deployments.runner import RunnerDeployment

    file = Path(path).resolve()
    if file.suffix != ".md":
        raise DeployError(f"{path}: a deployed definition must be a .md file (runs look for it among *.md)")
    folder = file.parent
    with searching([folder]):
        definition = find_definition(load_definition(file).name, [folder])
        found = Path(definition.location.path).resolve()
        if found != file:
            raise DeployError(
                f"{path}: {found.name}, in the same folder, is also named '{definition.name}'; "
                "a run would not know which to read: rename one"
            )
        schedules = schedules_of(definition, cron=cron, timezone=timezone)
        check_scheduled_inputs(definition, schedules, parameters or {})
        deployment = RunnerDeployment.from_entrypoint(
            entrypoint_of(definition),
            name=name or definition.name,
            schedules=schedules,
            parameters=parameters or {},
            work_pool_name=pool,
            tags=[RUN_TAG, definition.name],  # its runs carry them: `taskmark runs` lists them
            # Deploying makes it live again, after a `taskmark serve` paused it on exit.
            paused=False,
        )
    if pool is None:
        # Said explicitly, so that serving a deployment that was on a pool takes it off the
        # pool (else the pool's workers would take its runs too).
        deployment.work_pool_name = None
    # Sent even when empty: deploying a definition whose schedule was removed removes it. (No
    # slugs: with slugs, Prefect's server keeps a schedule that an update leaves out.)
    deployment.schedules = deployment.schedules or []
    if pool:
        deployment.storage = _WorkingDirectory(folder)
    return deployment


def check_scheduled_inputs(
    definition: Definition, schedules: Sequence[PrefectSchedule], parameters: dict[str, Any]
) -> None:
    """Fail unless scheduled runs get every required input (from ``parameters`` or the schedule).

    Raises:
        DeployError: Naming the inputs scheduled runs would lack.
    """
    for schedule in schedules:
        given = {**parameters, **(schedule.parameters or {})}
        missing = [p.name for p in definition.metadata.inputs.problems(given) if p.kind == "missing"]
        if missing:
            names = ", ".join(f"'{n}'" for n in missing)
            raise DeployError(
                f"scheduled runs would have no value for the required input {names}: give it with "
                f"--param {missing[0]}=... or under schedule.parameters"
            )


def ensure_pool(pool: str) -> bool:
    """Create the work pool ``pool`` (type ``process``) unless it exists.

    Returns:
        True if it was created.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            return False
        except ObjectNotFound:
            # The process worker's own template: it is what passes job variables (env) to runs.
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=template))
            return True


def deploy(
    path: str | Path,
    *,
    pool: str = DEFAULT_POOL,
    name: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> Deployed:
    """Create or update the deployment of the definition at ``path`` on the work pool ``pool``.

    Deploying again updates the deployment: its parameter schema, defaults and schedule.

    Raises:
        DefinitionError: The file is not a valid definition.
        DeployError: See :func:`to_deployment`.

    Example:
        >>> deploy("definitions/daily-market-analysis.md").full_name
        'daily-market-analysis/daily-market-analysis'
    """
    deployment = to_deployment(path, name=name, pool=pool, cron=cron, timezone=timezone, parameters=parameters)
    deployment_id = deployment.apply()
    assert isinstance(deployment_id, UUID)
    return Deployed(
        id=deployment_id,
        flow_name=str(deployment.flow_name),
        name=deployment.name,
        pool=pool,
        schedule=_describe(deployment),
    )


def serve(paths: Sequence[str | Path], *, limit: int | None = None) -> None:
    """Serve the deployments of the definitions at ``paths`` from this process until interrupted.

    Prefect's ``serve``: no work pool or worker; this process polls for their runs (scheduled
    or started from the UI) and runs each in a subprocess, which reads its definition then.

    Args:
        paths: Definition files.
        limit: Most runs at once.

    Raises:
        DefinitionError: A file is not a valid definition.
        DeployError: Two files have the same name.
    """
    from prefect import serve as prefect_serve

    deployments = [to_deployment(path) for path in paths]
    names = [str(d.flow_name) for d in deployments]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise DeployError(f"more than one file is named {', '.join(sorted(clash))}")
    # Runs are subprocesses of this one: they inherit where to find their definitions.
    folders = dict.fromkeys(str(Path(p).resolve().parent) for p in paths)
    os.environ[DEFINITIONS_PATH_ENV] = os.pathsep.join(folders)
    prefect_serve(*deployments, limit=limit)
