"""The Prefect entrypoints of definitions: one attribute per definition name.

``taskmark.deploy.entrypoints.daily_market_analysis`` is the flow compiled from the
definition named ``daily-market-analysis``, found on the search path (see
:mod:`taskmark.deploy._locate`) and read when the attribute is asked for. Prefect imports
entrypoints when a deployment is made (``prefect deploy``, ``taskmark deploy``) and again in
each run's process, so every deployment gets its own typed parameter schema from its
definition's requirements, and every run reads the definition file as it is when the run
starts.

In ``prefect.yaml``::

    deployments:
    - name: daily-market-analysis
      entrypoint: taskmark.deploy.entrypoints.daily_market_analysis
"""

from __future__ import annotations

from typing import Any

from taskmark.deploy._locate import find_definition, name_of_attribute

__all__: list[str] = []


def __getattr__(attribute: str) -> Any:  # noqa: ANN401 - a prefect Flow
    """The flow of the definition ``attribute`` names (PEP 562 module ``__getattr__``).

    Raises:
        AttributeError: For dunder names, which Python's import machinery probes.
        DefinitionNotFoundError: No definition of that name on the search path.
        DefinitionError: The definition file is not valid.
    """
    if attribute.startswith("__"):
        raise AttributeError(attribute)
    from taskmark.flows import compile

    return compile(find_definition(name_of_attribute(attribute)))
