"""The sandbox templates render in, bounded in size and time.

Jinja's own sandbox keeps a template away from Python internals, but not from running long:
``range(100000)`` nested twice is ten billion iterations, ``"x" * 10**10`` ten gigabytes. This
environment caps ``range``, counts loop iterations, checks a deadline (and a stop request) at
every iteration and call, refuses operations whose result would be huge before making it, and
caps the rendered text. A render past any of these raises :class:`TemplateLimitError`.
"""

from __future__ import annotations

import functools
import math
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

__all__ = [
    "LOOP_FILTER",
    "MAX_LOOP_ITERATIONS",
    "MAX_OUTPUT_CHARS",
    "MAX_RANGE",
    "RENDER_TIMEOUT_S",
    "TemplateLimitError",
    "environment",
    "render_template",
    "stop_renders_on",
]

MAX_RANGE = 10_000
"""Most numbers one ``range()`` of a template may hold."""
MAX_LOOP_ITERATIONS = 1_000_000
"""Most loop iterations of one render, all loops together."""
MAX_OUTPUT_CHARS = 10_000_000
"""Longest rendered text, and longest text or list one operation of a template may make."""
MAX_INT_BITS = 100_000
"""Largest number (in bits, about 30,000 digits) arithmetic in a template may make."""
RENDER_TIMEOUT_S = 10.0
"""Longest one render may take."""
LOOP_FILTER = "taskmark_bounded"
"""The filter every ``{% for %}`` iterates through (added when a template is compiled)."""
_DIGITS_PER_BIT = math.log10(2)
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
"""``str`` methods whose integer argument is the length of the text they make."""


class TemplateLimitError(SecurityError):
    """A template went past a bound of the sandbox (size, loop count, time)."""


@dataclass
class _Budget:
    """What one render may still spend."""

    deadline: float
    stop: threading.Event | None = None
    iterations: int = 0
    timeout_s: float = field(default=RENDER_TIMEOUT_S)

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"rendering took longer than {self.timeout_s:g} s")
        if self.stop is not None and self.stop.is_set():
            raise TemplateLimitError("rendering was stopped (the run ended or timed out)")

    def iterate(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise TemplateLimitError(f"the template looped more than {MAX_LOOP_ITERATIONS:,} times")
        self.check()


_BUDGET: ContextVar[_Budget | None] = ContextVar("taskmark_render_budget", default=None)
_STOP: ContextVar[threading.Event | None] = ContextVar("taskmark_render_stop", default=None)


def _check() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.check()


def _too_long(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise TemplateLimitError(f"{what} would be {size:,} long; a template may make at most {MAX_OUTPUT_CHARS:,}")


def _too_big(bits: float, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimitError(
            f"{what} would have about {int(bits * _DIGITS_PER_BIT):,} digits; "
            f"the limit is {int(MAX_INT_BITS * _DIGITS_PER_BIT):,}"
        )


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimitError(
            f"range() of {len(numbers):,} numbers; a template's range() may hold at most {MAX_RANGE:,}"
        )
    return numbers


@pass_context  # never folded into a constant when the template is compiled
def _bounded(context: Context, iterable: Iterable[Any]) -> Iterable[Any]:
    budget = _BUDGET.get()
    return iterable if budget is None else _Counted(iterable, budget)


class _Counted:
    """An iterable that charges each item to the render's budget; its length is the wrapped one's."""

    def __init__(self, iterable: Iterable[Any], budget: _Budget) -> None:
        self.iterable, self.budget = iterable, budget

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            self.budget.iterate()
            yield item

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type] # TypeError makes Jinja count by iterating


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_format(fmt: object, args: Iterable[Any]) -> None:
    """Refuse a width or precision that would make a huge text (``%999999999s``, ``{:>999999999}``)."""
    if not isinstance(fmt, str):
        return
    numbers: list[str] = [n for spec in _PERCENT_SPEC.findall(fmt) for n in spec]
    try:
        numbers += [n for _, _, spec, _ in string.Formatter().parse(fmt) if spec for n in re.findall(r"\d+|\{", spec)]
    except ValueError:
        pass  # not a str.format string; Python says so if it is used as one
    if "*" in numbers or "{" in numbers:  # the width is an argument
        numbers += [str(a) for a in args if isinstance(a, int)]
    for number in numbers:
        if number.isdigit():
            _too_long(int(number), "a formatted field")


def _check_replace(text: object, old: object, new: object, count: object = -1) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        times = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _too_long(len(text) + times * (len(new) - len(old)), "the replaced text")


def _count(value: object, what: str) -> None:
    """Refuse a count above :data:`MAX_RANGE`; ``what`` is a format string for it."""
    if isinstance(value, int) and value > MAX_RANGE:
        raise TemplateLimitError(what.format(value) + f"; a template may use at most {MAX_RANGE:,}")


def _check_indent(text: object, width: object = 4, *_: object, **__: object) -> None:
    size = len(width) if isinstance(width, str) else width
    if isinstance(text, str) and isinstance(size, int):
        _too_long(len(text) + (text.count("\n") + 1) * size, "the indented text")


def _check_lipsum(*args: object, **kwargs: object) -> None:
    paragraphs = kwargs.get("n", args[0] if args else 5)
    words = kwargs.get("max", args[3] if len(args) > 3 else 100)
    if isinstance(paragraphs, int) and isinstance(words, int):
        _too_long(paragraphs * words * 10, "lipsum()")


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": lambda value, width=80, *_, **__: _too_long(width, "center() width") if isinstance(width, int) else None,
    "indent": _check_indent,
    "replace": lambda text, old, new, count=None, **__: _check_replace(str(text), str(old), str(new), count),
    "format": lambda value, *args, **kwargs: _check_format(value, [*args, *kwargs.values()]),
    "slice": lambda value, slices, *_, **__: _count(slices, "slice() into {:,} lists"),
    "batch": lambda value, linecount, *_, **__: _count(linecount, "batch() of {:,} items"),
}
"""Checks run before the filters that make text or lists from a count in their arguments."""


def _guard(function: Callable[..., Any], check: Callable[..., None]) -> Callable[..., Any]:
    """``function`` with ``check`` run on its arguments first; Jinja's pass_* mark is kept, and
    the context (or environment) Jinja passes because of it is not shown to ``check``."""
    skip = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
        check(*args[skip:], **kwargs)
        return function(*args, **kwargs)

    return guarded


class _Environment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with the bounds of this module."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:  # noqa: ANN401
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and not isinstance(times, bool):
                    _too_long(len(seq) * times, "the repeated text or list")
            if isinstance(left, int) and isinstance(right, int):
                _too_big(left.bit_length() + right.bit_length(), "the product")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            _too_big(right * math.log2(abs(left)) if abs(left) > 1 else 0, "the power")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right if isinstance(right, tuple) else (right,))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401, N805
        _check()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _PADDING_METHODS and args and isinstance(args[0], int):
                _too_long(args[0] * (len(owner) if name == "expandtabs" else 1), f"str.{name}()")
            elif name == "replace":
                _check_replace(owner, *args[:3])
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, (str, list, tuple, dict)):
            _too_long(len(result), "a value")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:  # noqa: ANN401
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:  # noqa: ANN401
            _check_format(fmt, [*args, *kwargs.values()])
            return wrapped(*args, **kwargs)

        return checked


@functools.lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    """The sandboxed environment templates are parsed and rendered in."""
    from jinja2 import StrictUndefined

    env = _Environment(undefined=StrictUndefined, autoescape=False)
    env.filters[LOOP_FILTER] = _bounded
    for name, check in _FILTER_CHECKS.items():
        env.filters[name] = _guard(env.filters[name], check)
    env.globals["range"] = _bounded_range
    env.globals["lipsum"] = _guard(generate_lorem_ipsum, _check_lipsum)
    return env


def _count_loops(tree: nodes.Template) -> nodes.Template:
    """Make every loop of ``tree`` iterate through the budget-charging filter."""
    env = environment()
    for loop in list(tree.find_all(nodes.For)):
        loop.iter = nodes.Filter(loop.iter, LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno, environment=env)
    return tree


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> Template:
    env = environment()
    return env.from_string(_count_loops(env.parse(text)))


@contextmanager
def stop_renders_on(event: threading.Event) -> Iterator[None]:
    """Within this block (in this thread), a render stops at its next check once ``event`` is set.

    The caller rendering off its event loop sets ``event`` when it stops waiting (a run that
    timed out or was cancelled), so the render does not go on in the background.
    """
    token = _STOP.set(event)
    try:
        yield
    finally:
        _STOP.reset(token)


def render_template(text: str, names: Mapping[str, Any], *, timeout_s: float = RENDER_TIMEOUT_S) -> str:
    """Render a template in the bounded sandbox; each distinct template is compiled once.

    Args:
        text: The template.
        names: What it may read.
        timeout_s: The longest the render may take.

    Returns:
        The rendered text.

    Raises:
        TemplateLimitError: The render went past a bound (:data:`MAX_RANGE`,
            :data:`MAX_LOOP_ITERATIONS`, :data:`MAX_OUTPUT_CHARS`, ``timeout_s``) or was stopped.
        jinja2.TemplateError: An undefined name or a sandbox violation at render time.

    Example:
        >>> render_template("{% for x in xs %}{{ loop.index }}.{{ x }} {% endfor %}", {"xs": ["a", "b"]})
        '1.a 2.b '
    """
    budget = _Budget(deadline=time.monotonic() + timeout_s, stop=_STOP.get(), timeout_s=timeout_s)
    token = _BUDGET.set(budget)
    try:
        parts: list[str] = []
        size = 0
        for chunk in _compiled(text).generate(names):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimitError(f"the rendered text is longer than {MAX_OUTPUT_CHARS:,} characters")
            budget.check()
            parts.append(chunk)
        return "".join(parts)
    finally:
        _BUDGET.reset(token)
