"""Deployments of definitions: typed UI forms, schedules, work pools, ``serve``.

Every definition has a Prefect entrypoint, ``taskmark.deploy.entrypoints.NAME`` (the
definition's name with ``_`` for ``-``), whose flow is compiled from the file when the
entrypoint is loaded. ``prefect deploy`` (from ``prefect.yaml``), :func:`deploy` and
:func:`serve` all make deployments through it, so each deployment's parameter schema is
its definition's requirements, and each run reads the definition file when it starts.
See docs/deploying.md.
"""

from __future__ import annotations

from taskmark.deploy._deploy import (
    DEFAULT_POOL,
    Deployed,
    DeployError,
    check_scheduled_inputs,
    deploy,
    ensure_pool,
    schedules_of,
    serve,
    to_deployment,
)
from taskmark.deploy._locate import (
    DEFINITIONS_PATH_ENV,
    ENTRYPOINT_MODULE,
    DefinitionNotFoundError,
    definitions_path,
    entrypoint_of,
    find_definition,
)

__all__ = [
    "DEFAULT_POOL",
    "DEFINITIONS_PATH_ENV",
    "ENTRYPOINT_MODULE",
    "DefinitionNotFoundError",
    "DeployError",
    "Deployed",
    "check_scheduled_inputs",
    "definitions_path",
    "deploy",
    "ensure_pool",
    "entrypoint_of",
    "find_definition",
    "schedules_of",
    "serve",
    "to_deployment",
]
