"""Context for agent calls: candidates gathered once per phase, a bundle per call.

A phase draws on context when its definition names an index, when it declares `refers:`,
`documents:`, `review: context` or `context:` options, or when the definition or the agent
sets `context:`. Then each of its agent calls gets a bundle (``taskmark.context.assemble``)
rendered before its prompt; otherwise prompts are sent as written.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from taskmark.blocks import ChatModel
from taskmark.context import Bundle, Candidate, Choice, Kind, LeftOut, assemble, index_for
from taskmark.definition import ContextOptions, Definition, Phase
from taskmark.definition._context import read_document
from taskmark.tasks._referred import latest_runs

__all__ = ["DEFAULT_WINDOW", "Sources", "bundle_for", "gather_sources", "uses_context"]

DEFAULT_WINDOW = 8192
"""The context window assumed when the provider does not know its model's."""
DEFAULT_OUTPUT = 1024
"""Tokens kept for the answer when the call sets no maxTokens."""
_LAYOUT = 64
_LAYOUT_PER_ITEM = 24
"""Tokens kept for the layout's headings: for the whole, and per candidate."""


def uses_context(definition: Definition, phase: Phase) -> bool:
    """Whether the phase's agent calls get an assembled context bundle (agent `context:` aside)."""
    o, m = phase.options, definition.metadata
    return bool(m.index or m.context or o.refers or o.documents or o.review or o.context or definition.index_phase())


def _text(value: Any) -> str:  # noqa: ANN401
    return value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False, default=str)


@dataclass
class Sources:
    """A phase's candidates: the fixed tiers, the pool retrieval ranks, what was asked for and is absent."""

    fixed: list[Candidate] = field(default_factory=list)
    """The index, required phases' outputs, the other phases before it (short form)."""
    pool: list[Candidate] = field(default_factory=list)
    """Documents and referred outputs; ranked against each prompt when `retrieval:` is set."""
    absent: list[LeftOut] = field(default_factory=list)
    """Referred outputs with no completed run yet, and required outputs a preview lacks."""

    @property
    def ids(self) -> list[str]:
        """Every candidate id, in tier order."""
        return [c.id for c in (*self.fixed, *self.pool)]


async def gather_sources(
    definition: Definition, phase: Phase, upstream: dict[str, Any], done: dict[str, Any]
) -> Sources:
    """The candidates of ``phase``.

    Args:
        definition: The definition the phase belongs to.
        phase: The phase whose calls get these candidates.
        upstream: Outputs of the phases it depends on, directly or through others.
        done: Outputs of this run's phases that completed (for `refers:` to phases of this definition).
    """
    sources = Sources()
    base = Path(definition.location.path).parent
    found = definition.index_phase()
    index_phase = found.name if found is not None else None
    index_path = definition.index_path()
    if index_path is not None:
        sources.fixed.append(
            Candidate(id="index", kind="index", source=_shown(index_path, base), text=await _read(index_path, base))
        )
    elif index_phase is not None and index_phase in upstream:
        sources.fixed.append(
            Candidate(id="index", kind="index", source=f"phase {index_phase}", text=_text(upstream[index_phase]))
        )
    for name in sorted(upstream):
        if name == index_phase:
            continue
        kind: Kind = "requires" if name in phase.depends_on else "phase"
        sources.fixed.append(
            Candidate(id=f"phase:{name}", kind=kind, source=f"phase {name}", text=_text(upstream[name]))
        )
    for name in phase.depends_on:
        if name not in upstream and name != index_phase:
            sources.absent.append(
                LeftOut(
                    id=f"phase:{name}",
                    kind="requires",
                    source=f"phase {name}",
                    tier=1,
                    tokens=0,
                    reason=f"phase {name} has no output yet",
                )
            )
    for path in definition.documents(phase):
        if index_path is not None and path.resolve() == index_path.resolve():
            continue  # the index is already first, whole
        shown = _shown(path, base)
        sources.pool.append(Candidate(id=f"doc:{shown}", kind="document", source=shown, text=await _read(path, base)))
    sources.pool += await _referred(definition, phase, done, sources.absent)
    return sources


async def _referred(
    definition: Definition, phase: Phase, done: dict[str, Any], absent: list[LeftOut]
) -> list[Candidate]:
    targets = [
        (t.partition("/")[0], t.partition("/")[2]) if "/" in t else (definition.name, t) for t in phase.options.refers
    ]
    wanted = {d for d, p in targets if not (d == definition.name and p in done)}
    runs = await latest_runs(wanted)
    found = []
    for target, (name, ref) in zip(phase.options.refers, targets, strict=False):
        if name == definition.name and ref in done:
            found.append(
                Candidate(id=f"refers:{target}", kind="refers", source=f"{target} (this run)", text=_text(done[ref]))
            )
        elif name in runs and ref in runs[name].outputs:
            run = runs[name]
            found.append(
                Candidate(
                    id=f"refers:{target}",
                    kind="refers",
                    source=f"{target} (run {run.flow_run_id[:8]})",
                    text=_text(run.outputs[ref]),
                )
            )
        else:
            absent.append(
                LeftOut(
                    id=f"refers:{target}",
                    kind="refers",
                    source=target,
                    tier=3,
                    tokens=0,
                    reason=f"no completed run of {name} has outputs of {ref} yet",
                )
            )
    return found


def _shown(path: Path, base: Path) -> str:
    """``path`` as written beside the definition (``base`` its folder)."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


_FILES: dict[tuple[str, float, int], str] = {}


async def _read(path: Path, base: Path) -> str:
    """A document's text, read once per version of the file; refused (``DocumentOutsideRoots``)
    when it resolves outside the definition's folder ``base`` and ``TASKMARK_DOCUMENT_ROOTS``."""
    stat = path.stat()
    # Keyed by the real path: a file that became a link elsewhere since it was read is a new
    # key, so it is checked again rather than answered from here.
    key = (os.path.realpath(path), stat.st_mtime, stat.st_size)
    if key not in _FILES:
        _FILES[key] = await asyncio.to_thread(read_document, path, base)
    return _FILES[key]


Summarise = Callable[[str, int], Awaitable[str]]
"""Asks a model to shorten a text to at most so many tokens."""


async def bundle_for(
    sources: Sources,
    prompt: str,
    *,
    options: ContextOptions,
    provider: ChatModel,
    system: str,
    max_output: int | None,
    choice: Choice,
    summarise: Summarise | None = None,
) -> Bundle:
    """The bundle one call gets: candidates ranked (with `retrieval:`), counted with the call's
    model's tokenizer, fitted to the budget; with `summarize: llm`, shortened items are
    summarised by ``summarise`` instead, when its summary fits."""
    pool: Sequence[Candidate] = sources.pool
    if options.retrieval is not None and pool:
        k, method = options.retrieval.k, options.retrieval.method
        ranked = await asyncio.to_thread(lambda: index_for(list(sources.pool), method).rank(prompt, k))
        kept = {c.id for c in ranked}
        # A pinned item counts whether or not retrieval ranks it.
        pool = [*ranked, *(c for c in sources.pool if c.id in choice.pin and c.id not in kept)]
    candidates = [*sources.fixed, *pool]
    texts = list(dict.fromkeys([prompt, system, *(c.text for c in candidates)]))
    counts = dict(zip(texts, await provider.count_tokens(texts), strict=False))
    budget = options.budget_tokens
    if budget is None:
        window = await provider.context_window() or DEFAULT_WINDOW
        reserved = (max_output or DEFAULT_OUTPUT) + _LAYOUT + _LAYOUT_PER_ITEM * len(candidates)
        budget = max(0, window - counts[prompt] - counts[system] - reserved)
    loop = asyncio.get_running_loop()

    def count(text: str) -> int:
        if text not in counts:
            counts[text] = asyncio.run_coroutine_threadsafe(provider.count_tokens([text]), loop).result()[0]
        return counts[text]

    bundle = await asyncio.to_thread(assemble, candidates, budget=budget, count=count, choice=choice)
    if summarise is not None and options.summarize == "llm":
        full = {c.id: c.text for c in candidates}
        for item in bundle.items:
            if item.shortened == "extract":
                summary = await summarise(full[item.id], item.tokens)
                tokens = (await provider.count_tokens([summary]))[0]
                if tokens <= item.tokens:
                    bundle = bundle.with_text(item.id, summary, tokens, "llm")
    return replace(bundle, left_out=(*bundle.left_out, *sources.absent))
