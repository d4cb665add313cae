"""Prompt templates, checked without rendering them: syntax, the names they read (as Jinja
scopes them), the keys they read from ``phases``, ``steps`` and ``output``, filters and tests
that exist, and loops that would go past the sandbox's bounds. Each finding has its position
in the template, so the validator can point at the very name.

Rendering is :mod:`taskmark.definition._sandbox`.
"""

from __future__ import annotations

import ast
import bisect
import functools
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace

from jinja2 import TemplateAssertionError, TemplateSyntaxError, meta, nodes

from taskmark.definition._sandbox import LOOP_FILTER, MAX_LOOP_ITERATIONS, MAX_RANGE, environment, render_template
from taskmark.definition._source import did_you_mean

__all__ = ["Position", "Read", "TemplateCheck", "check_template", "environment", "render_template"]

Position = tuple[int, int]
"""A 0-based line and column within a template."""

READ_ROOTS = ("phases", "steps", "output")
"""The names whose constant keys are collected (see :class:`Read`)."""

# Nodes that bind names; a template without them reads every name it mentions from outside.
_SCOPING = (
    nodes.For, nodes.Macro, nodes.CallBlock, nodes.With, nodes.Assign, nodes.AssignBlock,
    nodes.Import, nodes.FromImport, nodes.Scope, nodes.OverlayScope,
)  # fmt: skip
_LOADERS: dict[type[nodes.Node], str] = {
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from",
    nodes.Extends: "extends",
}


@dataclass(frozen=True)
class Read:
    """A chain of constant keys read from a name: ``phases["A"].summary`` is ``phases``
    with keys ``("A", "summary")``."""

    name: str
    keys: tuple[str, ...]
    attribute: tuple[bool, ...]
    """Whether each key is written ``.key`` (which may also be a method of a mapping)."""
    line: int
    """The 0-based line of the name in the template."""


@dataclass(frozen=True)
class TemplateCheck:
    """What a template reads and what is wrong with it, or why it cannot be parsed.

    Positions of names and keys are found only when asked for (:meth:`at`, :meth:`places`):
    a template without errors is not lexed a second time.
    """

    text: str = ""
    syntax_error: tuple[int, str] | None = None
    """(0-based line within the template, message)."""
    unknown_names: tuple[str, ...] = ()
    """Names read from outside that are not in the names given to :func:`check_template`."""
    names: dict[str, int] = field(default_factory=dict)
    """Every name read from outside the template (Jinja's globals aside), and the 0-based line where first."""
    reads: tuple[Read, ...] = ()
    """Constant keys read from ``phases``, ``steps`` and ``output``."""
    problems: tuple[tuple[Position, str], ...] = ()
    """Unknown filters and tests, other templates it loads, loops past the sandbox's bounds."""

    def at(self, name: str) -> Position:
        """Where ``name`` is first read."""
        return _tokens(self.text).find(self.names.get(name, 0), name)

    def places(self, read: Read) -> tuple[Position, ...]:
        """Where each key of ``read`` is written: the first letter of the key itself, inside any quotes."""
        return _tokens(self.text).chain(read)


class _Tokens:
    """The template's tokens with their offsets (Jinja's lexer gives lines only)."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self.items: list[tuple[int, str, str]] = []
        offset = 0
        for _, kind, value in environment().lex(text):
            found = text.find(value, offset)
            offset = found if found >= 0 else offset
            if kind != "whitespace":
                self.items.append((offset, kind, value))
            offset += len(value) if found >= 0 else 0

    def position(self, offset: int) -> Position:
        line = bisect.bisect_right(self.starts, offset) - 1
        return line, offset - self.starts[line]

    def before(self, index: int) -> str:
        return self.items[index - 1][2] if index > 0 else ""

    def find(self, line0: int, value: str, after: Collection[str] | None = None, nth: int = 0) -> Position:
        """The ``nth`` name token ``value`` on a line (preceded by one of ``after``, if given;
        else not an attribute, filter or test), or the line's start."""
        for index, (offset, kind, text) in enumerate(self.items):
            at = self.position(offset)
            if at[0] == line0 and kind == "name" and text == value:
                before = self.before(index)
                if (before in after) if after is not None else before not in (".", "|", "is"):
                    if nth == 0:
                        return at
                    nth -= 1
        return line0, 0

    def chain(self, read: Read) -> tuple[Position, ...]:
        """Where the keys of ``read`` are written (the start of its line for each, if not found)."""
        items = self.items
        for index, (offset, kind, text) in enumerate(items):
            if kind != "name" or text != read.name or self.position(offset)[0] != read.line:
                continue
            if self.before(index) in (".", "|", "is"):
                continue
            places: list[Position] = []
            i = index + 1
            for key in read.keys:
                if i + 1 < len(items) and items[i][2] == "." and items[i + 1][2] == key:
                    places.append(self.position(items[i + 1][0]))
                    i += 2
                elif i + 2 < len(items) and items[i][2] == "[" and _string(items[i + 1][2]) == key:
                    places.append(self.position(items[i + 1][0] + 1))  # inside the quote
                    i += 3
                else:
                    break
            if len(places) == len(read.keys):
                return tuple(places)
        return tuple((read.line, 0) for _ in read.keys)


@functools.lru_cache(maxsize=256)
def _tokens(text: str) -> _Tokens:
    return _Tokens(text)


def _string(token: str) -> str | None:
    try:
        value = ast.literal_eval(token)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


class _Nodes:
    """The nodes of a template's tree the checks look at, gathered in one walk."""

    def __init__(self, tree: nodes.Template) -> None:
        self.tree = tree
        self.names: list[nodes.Name] = []
        self.filters: list[nodes.Filter | nodes.Test] = []
        self.loaders: list[nodes.Node] = []
        self.ranges: list[nodes.Call] = []
        self.keyed: list[nodes.Getattr | nodes.Getitem] = []
        self.scoped = self.loops = False
        for node in tree.find_all(nodes.Node):
            if isinstance(node, (nodes.Getattr, nodes.Getitem)) and _key(node) is not None:
                self.keyed.append(node)
            elif isinstance(node, nodes.Name):
                self.names.append(node)
            elif isinstance(node, (nodes.Filter, nodes.Test)):
                self.filters.append(node)
            elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
                self.ranges.append(node)
            if isinstance(node, tuple(_LOADERS)):
                self.loaders.append(node)
            self.scoped = self.scoped or isinstance(node, _SCOPING)
            self.loops = self.loops or isinstance(node, nodes.For)

    def reads(self, roots: Collection[str]) -> Iterator[Read]:
        """Each longest chain of constant keys read from one of ``roots``."""
        inner = {id(n.node) for n in self.keyed}
        for node in self.keyed:
            if id(node) in inner:
                continue
            keys: list[tuple[str, bool]] = []
            current: nodes.Node = node
            while (key := _key(current)) is not None:
                keys.append(key)
                current = current.node  # type: ignore[attr-defined]
            if isinstance(current, nodes.Name) and current.name in roots:
                keys.reverse()
                yield Read(current.name, tuple(k for k, _ in keys), tuple(a for _, a in keys), current.lineno - 1)

    def free_names(self) -> tuple[set[str], TemplateAssertionError | None]:
        """The names the template reads from outside, as Jinja scopes them (``loop``,
        ``caller``, ``varargs``, ``kwargs``, loop targets, ``set``, ``with`` and macro
        arguments are its own), and the error Jinja's compiler finds, if any."""
        loads = {n.name for n in self.names if n.ctx == "load"}
        error = None
        if not self.scoped:
            # Nothing is bound: every name is read from outside (Jinja's analysis costs as much as parsing).
            names = loads
        else:
            env = environment()
            for node in self.filters:
                # Unknown ones are reported by themselves; Jinja's analysis would stop at them.
                if isinstance(node, nodes.Filter) and node.name not in env.filters:
                    node.name = "string"
                elif isinstance(node, nodes.Test) and node.name not in env.tests:
                    node.name = "defined"
            try:
                names = meta.find_undeclared_variables(self.tree)
            except TemplateAssertionError as exc:  # its compiler stopped: a rougher count
                error = exc
                stored = {n.name for n in self.names if n.ctx != "load"}
                names = loads - stored - {"loop", "caller", "varargs", "kwargs"}
        globals_ = environment().globals
        return {n for n in names if n not in globals_}, error


def _key(node: nodes.Node) -> tuple[str, bool] | None:
    """The constant key ``node`` reads (``x["key"]`` or ``x.key``), and whether it is an attribute."""
    if isinstance(node, nodes.Getattr):
        return node.attr, True
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value, False
    return None


def _literal_range(node: nodes.Node) -> tuple[int, ...] | None:
    """The arguments of ``range(...)`` when they are all written as integers."""
    if not (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "range"
        and not node.kwargs
        and node.dyn_args is None
        and node.dyn_kwargs is None
        and all(isinstance(a, nodes.Const) and type(a.value) is int for a in node.args)
    ):
        return None
    return tuple(a.value for a in node.args)  # type: ignore[attr-defined]


def _range_size(arguments: tuple[int, ...]) -> int | None:
    try:
        return len(range(*arguments))
    except (TypeError, ValueError):
        return None  # Python says what is wrong when it runs


def _problems(found: _Nodes, text: str) -> Iterator[tuple[Position, str]]:
    """What is wrong besides names and keys; the template is lexed only when something is."""
    env = environment()
    for node in found.filters:
        known, what = (env.filters, "filter") if isinstance(node, nodes.Filter) else (env.tests, "test")
        if node.name not in known:
            where = _tokens(text).find(node.lineno - 1, node.name, ("|",) if what == "filter" else ("is", "not"))
            yield (
                where,
                f"unknown {what} '{node.name}'" + did_you_mean(node.name, [k for k in known if k != LOOP_FILTER]),
            )
    for loader in found.loaders:
        keyword = _LOADERS[type(loader)]
        yield (
            _tokens(text).find(loader.lineno - 1, keyword, ("{%", "{%-", "{%+")),
            f"a prompt cannot {keyword} another template ('{{% {keyword} %}}'); templates here have no files to load",
        )
    # The n-th range() call of a line (in the tree's order, which is the text's) is its n-th `range`.
    ranges: dict[int, int] = {}
    places: dict[int, Position] = {}
    for call in found.ranges:
        nth = ranges[call.lineno] = ranges.get(call.lineno, -1) + 1
        places[id(call)] = _tokens(text).find(call.lineno - 1, "range", nth=nth)
        arguments = _literal_range(call)
        size = _range_size(arguments) if arguments is not None else None
        if arguments is not None and size is not None and size > MAX_RANGE:
            yield (
                places[id(call)],
                f"range({', '.join(map(str, arguments))}) holds {size:,} numbers; "
                f"a template's range() may hold at most {MAX_RANGE:,}",
            )
    if found.loops and places:
        yield from _nested_loops(found.tree, places, 1)


def _nested_loops(node: nodes.Node, places: dict[int, Position], times: int) -> Iterator[tuple[Position, str]]:
    """Loops over written ranges whose nesting would run past :data:`MAX_LOOP_ITERATIONS`."""
    for child in node.iter_child_nodes():
        inner = times
        if isinstance(child, nodes.For):
            arguments = _literal_range(child.iter)
            size = _range_size(arguments) if arguments is not None else None
            if size is not None and size <= MAX_RANGE:  # a larger one is reported by itself
                inner = times * size
                if inner > MAX_LOOP_ITERATIONS:
                    yield (
                        places.get(id(child.iter), (child.iter.lineno - 1, 0)),
                        f"these nested loops would run {inner:,} times; "
                        f"a template may loop at most {MAX_LOOP_ITERATIONS:,} times in all",
                    )
                    continue
        yield from _nested_loops(child, places, inner)


@functools.lru_cache(maxsize=4096)
def _analyse(text: str) -> TemplateCheck:
    env = environment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        return TemplateCheck(syntax_error=(max(exc.lineno - 1, 0), exc.message or "syntax error"))
    except RecursionError:
        return TemplateCheck(syntax_error=(0, "template nested too deeply"))
    found = _Nodes(tree)
    problems = dict.fromkeys(_problems(found, text))  # first: it reads the names of filters and tests
    free, error = found.free_names()
    if error is not None and not problems:  # what stopped Jinja's compiler is not reported yet
        problems[((error.lineno or 1) - 1, 0), error.message or "invalid template"] = None
    first_line: dict[str, int] = {}
    for name in found.names:
        if name.ctx == "load" and name.name in free:
            first_line.setdefault(name.name, name.lineno - 1)
    return TemplateCheck(
        text=text,
        names=dict(sorted(first_line.items())),
        reads=tuple(found.reads(free.intersection(READ_ROOTS))),
        problems=tuple(problems),
    )


def check_template(text: str, names: Collection[str]) -> TemplateCheck:
    """Parse a template and list the names it reads that are not in ``names``.

    Args:
        text: The template.
        names: The top-level names it may read (Jinja's own globals, and the names the
            template binds itself, are always allowed).

    Example:
        >>> check = check_template("{% for x in xs %}{{ loop.index }}{{ y }}{% endfor %}", ["xs"])
        >>> check.unknown_names, check.at("y")
        (('y',), (0, 37))
    """
    check = _analyse(text)
    return replace(check, unknown_names=tuple(n for n in check.names if n not in names))
