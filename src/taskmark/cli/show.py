"""`taskmark show PATH`: the phases in run order, with their steps and agents."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.tree import Tree

from taskmark.cli._common import load_or_exit
from taskmark.definition import AgentStep, AggregateStep, CustomStep, Definition, NoteStep, ValidationStep

app = typer.Typer()


def _step_label(step: object) -> str:
    if isinstance(step, AgentStep):
        prompt = step.prompt.replace("\n", " ")
        return f"[bold]agent[/] {step.agent}: {prompt[:70] + '…' if len(prompt) > 70 else prompt}"
    if isinstance(step, ValidationStep):
        return f"[bold]validation[/] {step.expression}"
    if isinstance(step, AggregateStep):
        return f"[bold]aggregate[/] {step.method}" + (f" by {step.agent}" if step.agent else "")
    if isinstance(step, CustomStep):
        return f"[bold]{step.kind}[/] {step.argument}"
    assert isinstance(step, NoteStep)
    return f"[dim]{step.text}[/]"


def render(definition: Definition) -> Tree:
    """A Rich tree of the definition: inputs, then phases in run order."""
    meta = definition.metadata
    tree = Tree(
        f"[bold]{definition.title}[/] ({definition.name})" + (f" — {meta.description}" if meta.description else ""),
        highlight=False,
    )
    if meta.requirements:
        inputs = tree.add("[bold]inputs[/]")
        for name, req in meta.requirements.items():
            extra = " (required)" if req.required else f" = {req.default!r}"
            choices = f" one of {req.enum}" if req.enum else ""
            inputs.add(f"{name}: {req.type}{choices}{extra}")
    if meta.schedule is not None:
        when = meta.schedule.cron or f"every {meta.schedule.interval:g}s"
        tree.add(f"[bold]schedule[/] {when} ({meta.schedule.timezone})")
    for i, phase in enumerate(definition.run_order(), 1):
        mode = "parallel" if phase.parallel else "sequential"
        after = f" after {', '.join(phase.depends_on)}" if phase.depends_on else ""
        node = tree.add(f"[bold cyan]{i}. {phase.name}[/] ({mode}{after})")
        for step in phase.steps:
            node.add(_step_label(step))
        if phase.outputs:
            node.add("[bold]outputs[/] " + ", ".join(f"{o.name}: {o.type}" for o in phase.outputs))
        for title, section in (("critique", phase.critique), ("refine", phase.refine)):
            if section is not None:
                node.add(f"[bold]{title}[/] by " + ", ".join(s.agent for s in section.steps))
        agents = sorted({s.agent for s in phase.agent_steps()} | set(phase.agents))
        if agents:
            models = {a: definition.agents[a].llm.model for a in agents if a in definition.agents}
            node.add("[bold]agents[/] " + ", ".join(f"{a} ({models[a]})" if models.get(a) else a for a in agents))
    return tree


@app.command()
def show(path: Annotated[str, typer.Argument(help="A definition file.", metavar="PATH")]) -> None:
    """Print the phases in run order, with their steps and agents."""
    Console().print(render(load_or_exit(path)))
