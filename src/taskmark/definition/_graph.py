"""The phase DAG: order, cycles, ancestry, and drawings of it (Mermaid, DOT, JSON)."""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskmark.definition._model import Definition

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
                    cycle = path[path.index(dep):]
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


def render_graph(definition: Definition, fmt: str) -> str:
    """The phase DAG as ``mermaid``, ``dot`` or ``json`` text.

    Raises:
        ValueError: For an unknown format.
    """
    phases = definition.run_order()
    edges = [(dep, p.name) for p in phases for dep in p.depends_on]
    if fmt == "json":
        return json.dumps(
            {
                "name": definition.name,
                "title": definition.title,
                "phases": [
                    {
                        "name": p.name,
                        "dependsOn": p.depends_on,
                        "parallel": p.parallel,
                        "steps": [s.kind for s in p.steps],
                        "line": p.location.line,
                    }
                    for p in phases
                ],
                "edges": [{"from": a, "to": b} for a, b in edges],
            },
            indent=2,
        )
    ids = {p.name: f"p{i}" for i, p in enumerate(phases)}
    if fmt == "mermaid":
        lines = ["flowchart TD"]
        for p in phases:
            label = p.name.replace('"', "#quot;") + (" ∥" if p.parallel else "")
            lines.append(f'    {ids[p.name]}["{label}"]')
        lines += [f"    {ids[a]} --> {ids[b]}" for a, b in edges]
        return "\n".join(lines)
    if fmt == "dot":
        quote = json.dumps  # DOT strings use the same escapes as JSON for quotes and backslashes
        lines = [f"digraph {quote(definition.name)} {{", "    rankdir=TB;"]
        for p in phases:
            shape = ", peripheries=2" if p.parallel else ""
            lines.append(f"    {ids[p.name]} [label={quote(p.name)}, shape=box{shape}];")
        lines += [f"    {ids[a]} -> {ids[b]};" for a, b in edges]
        lines.append("}")
        return "\n".join(lines)
    raise ValueError(f"unknown graph format {fmt!r}; expected mermaid, dot or json")
