"""The one error tree of taskmark.

::

    TaskmarkError
     ├── DefinitionError (also ValueError)   a definition file is not valid; carries diagnostics
     ├── ProviderError                       an LLM call failed; carries model and status_code
     ├── LocalServerError                    the local Prefect server did not start or stop
     │                                       (defined in taskmark.server._local)
     ├── RetryError                          a run cannot be retried (taskmark.runs._run)
     ├── ApiUnreachableError                 the Prefect API did not answer; carries its url
     ├── PromptError                         a template of a definition could not be rendered
     │                                       (taskmark.tasks._rendering)
     └── DocumentOutsideRoots                a document or index file resolves outside the folders
                                             documents may come from (also PermissionError;
                                             defined in taskmark.definition._context)

Every error a user can cause is one of these, so the CLI can print it without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from taskmark.runs.record import RequestRecord

__all__ = ["ApiUnreachableError", "Diagnostic", "DefinitionError", "ProviderError", "TaskmarkError"]

Severity = Literal["error", "warning"]


class TaskmarkError(Exception):
    """Base class of every error taskmark raises on purpose."""


@dataclass(frozen=True)
class Diagnostic:
    """One located message about a definition file.

    Positions are 1-based; ``column`` is ``None`` where a column means nothing (a whole file).
    ``str(diagnostic)`` is ``PATH:LINE:COL: SEVERITY: MESSAGE``, the form compilers print.
    """

    path: str
    """The file as the user named it."""
    line: int
    """1-based line."""
    column: int | None
    """1-based column, or None."""
    msg: str
    """What was expected and what was found."""
    severity: Severity = "error"
    """``error`` makes a file invalid; ``warning`` does not."""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" + (f":{self.column}" if self.column else "")
        return f"{where}: {self.severity}: {self.msg}"

    def to_dict(self) -> dict[str, object]:
        """The diagnostic as a JSON-ready mapping (for ``--format json``)."""
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "message": self.msg,
        }


class DefinitionError(TaskmarkError, ValueError):
    """A definition file is not valid.

    Holds every error found in the file, in the order given (the validator sorts them by
    position); ``path``, ``line``, ``column`` and ``msg`` are those of the first.
    """

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = [d for d in diagnostics if d.severity == "error"]
        if not self.diagnostics:
            raise ValueError("DefinitionError needs at least one error diagnostic")
        first = self.diagnostics[0]
        self.path, self.line, self.column, self.msg = first.path, first.line, first.column, first.msg
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class ProviderError(TaskmarkError):
    """An LLM provider call failed.

    The message names the provider, model, status and reason, and never a key.
    """

    def __init__(
        self,
        msg: str,
        *,
        model: str | None = None,
        status_code: int | None = None,
        transient: bool = False,
    ) -> None:
        self.msg = msg
        self.model = model
        self.status_code = status_code
        self.transient = transient
        self.attempts = 1
        """HTTP requests the call made before it failed (retries and fallbacks included)."""
        self.requests: list[RequestRecord] = []
        """Each of those requests, with its outcome."""
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd: float | None = None
        """What the replies the provider did send cost (a reply that could not be parsed is paid for)."""
        super().__init__(msg)


class ApiUnreachableError(TaskmarkError):
    """The Prefect API did not answer: not running, gone mid-run, or not at that address.

    Every command says it the same way: ``the Prefect API at URL did not answer: REASON``.
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"the Prefect API at {url} did not answer: {reason}")

    @classmethod
    def from_error(cls, url: str, error: BaseException) -> ApiUnreachableError:
        """The error for ``url`` that ``error`` (a refused connection, a timeout) shows."""
        return cls(url, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
