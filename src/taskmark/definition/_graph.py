"""The phase DAG: order, cycles, ancestry, and drawings of it with the other links (Mermaid, DOT, JSON)."""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskmark.definition._model import Definition, Phase

__all__ = ["ancestors", "find_cycles", "render_graph", "topological_order"]

Edges = Mapping[str, Sequence[str]]
"""Each phase's dependsOn, by phase name, in file order; unknown names are ignored."""


def topological_order(depends_on: Edges) -> list[str]:
    """Phases so that each comes after what it depends on; file order breaks ties.

    Phases on a cycle are left out (the validator reports cycles).
    """
    index = {name: i for i, name in enumerate(depends_on)}
    waiting = {name: sum(1 for d in set(deps) if d in index) for name, deps in depends_on.items()}
    dependents: dict[str, list[str]] = {name: [] for name in depends_on}
    for name, deps in depends_on.items():
        for dep in set(deps):
            if dep in index:
                dependents[dep].append(name)
    ready = [(index[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in dependents[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (index[child], child))
    return order


def find_cycles(depends_on: Edges) -> list[list[str]]:
    """Each dependency cycle once, as ``[A, B, C, A]`` where each depends on the next.

    A cycle starts at its phase that comes first in the file. Iterative (no recursion
    limit on long chains).
    """
    index = {name: i for i, name in enumerate(depends_on)}
    color: dict[str, int] = dict.fromkeys(depends_on, 0)  # 0 new, 1 on stack, 2 done
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for start in depends_on:
        if color[start]:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        color[start] = 1
        while stack:
            node, i = stack[-1]
            deps = [d for d in depends_on[node] if d in index]
            if i < len(deps):
                stack[-1] = (node, i + 1)
                dep = deps[i]
                if color[dep] == 0:
                    color[dep] = 1
                    stack.append((dep, 0))
                    path.append(dep)
                elif color[dep] == 1 and dep != node:
                    cycle = path[path.index(dep) :]
                    key = frozenset(cycle)
                    if key not in seen:
                        seen.add(key)
                        first = min(range(len(cycle)), key=lambda k: index[cycle[k]])
                        cycle = cycle[first:] + cycle[:first]
                        cycles.append([*cycle, cycle[0]])
            else:
                color[node] = 2
                stack.pop()
                path.pop()
    return sorted(cycles, key=lambda c: index[c[0]])


def ancestors(depends_on: Edges, name: str) -> set[str]:
    """Every phase ``name`` depends on, directly or through others."""
    found: set[str] = set()
    todo = list(depends_on.get(name, ()))
    while todo:
        dep = todo.pop()
        if dep not in found and dep in depends_on:
            found.add(dep)
            todo.extend(depends_on[dep])
    return found


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    kind: str


_LINKS = ("refers", "duplicates", "relates_to")
"""Phase options that name other phases, each drawn as the edge kind of the same name."""

_MERMAID_ARROWS = {
    "requires": "-->",
    "refers": "-.->|refers|",
    "duplicates": "<-.->|duplicates|",
    "relates_to": "-.-|relates to|",
    "documents": "-.->|documents|",
}
_DOT_STYLES = {
    "requires": "",
    "refers": ' [style=dashed, label="refers"]',
    "duplicates": ' [style=dotted, dir=both, label="duplicates"]',
    "relates_to": ' [style=dotted, dir=none, label="relates to"]',
    "documents": ' [style=dashed, label="documents"]',
}


def _edges(definition: Definition, phases: Sequence[Phase]) -> tuple[list[_Edge], list[str], list[str]]:
    """Every edge, then the nodes that are not phases: other definitions' phases, documents entries.

    Data flows along requires, refers and documents edges (from the phase or file read, to
    the phase reading it); duplicates and relates_to go from the phase that names the other.
    """
    own = definition.name + "/"

    def node(target: str) -> str:
        # `own-name/Phase` is this definition's phase (its earlier runs, for refers).
        return target[len(own) :] if target.startswith(own) else target

    edges = [_Edge(dep, p.name, "requires") for p in phases for dep in p.depends_on]
    for p in phases:
        for kind in _LINKS:
            for target in getattr(p.options, kind):
                edge = _Edge(node(target), p.name, kind) if kind == "refers" else _Edge(p.name, node(target), kind)
                edges.append(edge)
        edges += [_Edge(entry, p.name, "documents") for entry in p.options.documents]
    names = {p.name for p in phases}
    others = [e.source if e.kind == "refers" else e.target for e in edges if e.kind in _LINKS]
    external = list(dict.fromkeys(n for n in others if n not in names))
    documents = list(dict.fromkeys(e.source for e in edges if e.kind == "documents"))
    return edges, external, documents


def render_graph(definition: Definition, fmt: str) -> str:
    """The phase graph as ``mermaid``, ``dot`` or ``json`` text.

    Besides dependsOn (``requires``, solid), it draws ``refers``, ``duplicates`` and
    ``relatesTo`` (dashed or dotted, labelled), each `documents` entry as a node of its own,
    another definition's phase as a node of its own, and marks the index.

    Raises:
        ValueError: For an unknown format.
    """
    phases = definition.run_order()
    edges, external, documents = _edges(definition, phases)
    index = definition.metadata.index
    if fmt == "json":
        return json.dumps(
            {
                "name": definition.name,
                "title": definition.title,
                "index": index,
                "phases": [
                    {
                        "name": p.name,
                        "dependsOn": p.depends_on,
                        "parallel": p.parallel,
                        "steps": [s.kind for s in p.steps],
                        "line": p.location.line,
                        "refers": p.options.refers,
                        "documents": p.options.documents,
                        "index": p.options.index,
                        "review": p.options.review,
                    }
                    for p in phases
                ],
                "edges": [{"from": e.source, "to": e.target, "kind": e.kind} for e in edges],
            },
            indent=2,
        )
    ids = {p.name: f"p{i}" for i, p in enumerate(phases)}
    ids.update({name: f"x{i}" for i, name in enumerate(external)})
    doc_ids = {entry: f"d{i}" for i, entry in enumerate(documents)}

    def ends(edge: _Edge) -> tuple[str, str]:
        source = doc_ids[edge.source] if edge.kind == "documents" else ids[edge.source]
        return source, ids[edge.target]

    if fmt == "mermaid":

        def text(label: str) -> str:
            return label.replace('"', "#quot;")

        lines = ["flowchart TD"]
        for p in phases:
            label = text(p.name) + (" ∥" if p.parallel else "") + (" (index)" if p.options.index else "")
            lines.append(f'    {ids[p.name]}["{label}"]')
        lines += [f'    {ids[name]}[/"{text(name)}"/]' for name in external]
        lines += [f'    {doc_ids[entry]}[("{text(entry)}")]' for entry in documents]
        if index is not None:
            lines.append(f'    idx[["index: {text(index)}"]]')
        for edge in edges:
            source, target = ends(edge)
            lines.append(f"    {source} {_MERMAID_ARROWS[edge.kind]} {target}")
        return "\n".join(lines)
    if fmt == "dot":
        quote = json.dumps  # DOT strings use the same escapes as JSON for quotes and backslashes
        lines = [f"digraph {quote(definition.name)} {{", "    rankdir=TB;"]
        for p in phases:
            shape = ", peripheries=2" if p.parallel else ""
            marked = ", style=bold" if p.options.index else ""
            label = p.name + (" (index)" if p.options.index else "")
            lines.append(f"    {ids[p.name]} [label={quote(label)}, shape=box{shape}{marked}];")
        lines += [f'    {ids[name]} [label={quote(name)}, shape=box, style="rounded,dashed"];' for name in external]
        lines += [f"    {doc_ids[entry]} [label={quote(entry)}, shape=cylinder];" for entry in documents]
        if index is not None:
            lines.append(f"    idx [label={quote('index: ' + index)}, shape=note];")
        for edge in edges:
            source, target = ends(edge)
            lines.append(f"    {source} -> {target}{_DOT_STYLES[edge.kind]};")
        lines.append("}")
        return "\n".join(lines)
    raise ValueError(f"unknown graph format {fmt!r}; expected mermaid, dot or json")
