"""What the parser makes of a definition: phases, options, steps, agents, locations."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskmark.definition import (
    AgentStep,
    AggregateStep,
    CritiqueOptions,
    CustomStep,
    Definition,
    Location,
    NoteStep,
    RefineOptions,
    ValidationStep,
    load_definition,
    register_step_kind,
    validate_file,
)
from taskmark.errors import DefinitionError


@pytest.fixture
def full(data_dir: Path) -> Definition:
    return load_definition("valid/full.md")


def test_metadata_is_typed(full: Definition) -> None:
    meta = full.metadata
    assert (full.title, full.name, meta.version) == ("Full Feature Tour", "full-tour", "1.0")
    assert meta.max_execution_time == 5400
    assert meta.max_concurrent_phases == 2
    assert (meta.retry.max_attempts, meta.retry.backoff_ms) == (5, 250)
    assert meta.llm.model == "gpt-4o-mini"
    assert meta.cache is not None and meta.cache.ttl == 3600
    assert meta.schedule is not None and meta.schedule.interval == 6 * 3600


def test_requirements_keep_types_defaults_and_required(full: Definition) -> None:
    reqs = full.metadata.requirements
    assert reqs["topic"].type == "string" and reqs["topic"].required
    assert reqs["audience"].enum == ["experts", "beginners"]
    assert reqs["audience"].default == "beginners" and not reqs["audience"].required
    assert reqs["audience"].description == "Who reads it"
    assert reqs["length"].default == 300


def test_every_part_knows_where_it_was_written(full: Definition) -> None:
    assert full.location == Location(path="valid/full.md", line=1, column=3)
    research = full.phase("Research")
    assert research.location == Location(path="valid/full.md", line=29, column=11)
    assert research.steps[0].location.line == 36
    assert full.metadata.requirements["audience"].location == Location(path="valid/full.md", line=15, column=13)
    assert full.metadata.location is not None and full.metadata.location.line == 6
    assert full.agents["writer"].location.path == "valid/agents/writer.md"
    assert full.agents["helper"].location.line == 48


def test_phase_options_from_lines_and_yaml_block(full: Definition) -> None:
    research, draft, publish = full.phases
    assert research.parallel and research.depends_on == []
    assert research.options.llm.temperature == 0.9
    assert draft.depends_on == ["Research"] and not draft.parallel
    assert draft.options.handlers == {"preProcessing": "mypkg.hooks:prepare"}
    assert draft.options.description == "Write the draft."
    assert publish.depends_on == ["Draft"]
    assert "gathers material" in research.prose


def test_steps_of_every_kind(full: Definition) -> None:
    research, draft, publish = full.phases
    first = research.steps[0]
    assert isinstance(first, AgentStep)
    assert first.agent == "writer"
    assert first.prompt == "Research {{ topic }} for {{ audience }}\nreaders, in about {{ length }} words."
    assert (first.llm.temperature, first.llm.model) == (0.4, "gpt-4o")
    assert isinstance(research.steps[2], AggregateStep) and research.steps[2].method == "concat"
    assert isinstance(draft.steps[0], NoteStep)
    assert isinstance(draft.steps[3], ValidationStep)
    assert draft.steps[3].expression == "len(output.text) > 10 and output.score >= 3"
    assert [o.name for o in draft.outputs] == ["text", "score"]
    assert draft.outputs[0].description == "The draft"
    assert isinstance(publish.steps[1], ValidationStep)


def test_critique_and_refine_sections(full: Definition) -> None:
    draft = full.phase("Draft")
    assert draft.critique is not None and draft.refine is not None
    assert isinstance(draft.critique.options, CritiqueOptions) and draft.critique.options.when == "always"
    assert isinstance(draft.refine.options, RefineOptions) and draft.refine.options.max_refinements == 3
    assert draft.refine.steps[0].agent == "writer"


def test_agents_from_files_and_inline(full: Definition) -> None:
    writer, helper, editor = full.agents["writer"], full.agents["helper"], full.agents["editor"]
    assert writer.system_prompt.startswith("You write clear, concrete prose")
    assert (writer.llm.model, writer.llm.temperature, writer.llm.max_tokens) == ("gpt-4o-mini", 0.7, 800)
    assert writer.description == "Writes clear prose."
    assert helper.system_prompt == "You list sources." and helper.llm.temperature == 0
    assert editor.system_prompt == "You edit for clarity." and editor.llm.model is None


def test_run_order_respects_dependencies(full: Definition) -> None:
    assert [p.name for p in full.run_order()] == ["Research", "Draft", "Publish"]


def test_crlf_and_bom_parse_like_the_original(data_dir: Path) -> None:
    plain = load_definition("valid/full.md")
    crlf = load_definition("valid/crlf-bom.md")
    same = crlf.model_dump_json().replace("crlf-bom", "full").replace("valid/full.md", "X")
    assert same == plain.model_dump_json().replace("full-tour", "full").replace("valid/full.md", "X")


def test_agents_are_found_in_the_projects_definitions_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "definitions" / "agents").mkdir(parents=True)
    (tmp_path / "definitions" / "agents" / "poet.md").write_text("You rhyme.\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "flow.md").write_text(
        "# F\n\n```yaml\nname: f\n```\n\n## Phase: A\n\n### Steps\n- agent: poet - Rhyme\n"
    )
    monkeypatch.chdir(tmp_path)
    assert load_definition("elsewhere/flow.md").agents["poet"].system_prompt == "You rhyme."


def test_agent_listed_but_unused_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "idle.md").write_text("Idle.\n")
    path = tmp_path / "f.md"
    path.write_text("# F\n\n```yaml\nname: f\n```\n\n## Phase: A\n\n### Steps\n- Note.\n\n### Agents\n- idle\n")
    report = validate_file(str(path))
    assert report.ok
    assert [d.msg for d in report.diagnostics] == ["agent 'idle' is listed in phase 'A' but no step uses it"]
    assert report.diagnostics[0].severity == "warning"


def test_registered_custom_step_kind(tmp_path: Path) -> None:
    path = tmp_path / "f.md"
    path.write_text("# F\n\n```yaml\nname: f\n```\n\n## Phase: A\n\n### Steps\n- websearch: latest {{ x }}\n")
    with pytest.raises(DefinitionError, match="unknown step kind 'websearch'"):
        load_definition(path)
    register_step_kind("websearch")
    step = load_definition(path).phases[0].steps[0]
    assert isinstance(step, CustomStep) and (step.kind, step.argument) == ("websearch", "latest {{ x }}")


def test_register_step_kind_refuses_builtins_and_bad_names() -> None:
    with pytest.raises(ValueError, match="built-in"):
        register_step_kind("agent")
    with pytest.raises(ValueError, match="lowercase word"):
        register_step_kind("Web Search")


def test_errors_are_all_collected_and_sorted(tmp_path: Path) -> None:
    path = tmp_path / "f.md"
    path.write_text(
        "# F\n\n```yaml\nname: F\nretry: {maxAttempts: 0}\n```\n\n## Phase: A\ndependsOn: [B]\n\n"
        "### Steps\n- agent: nobody - {{ nope }}\n\n## Phase: A\n\n### Steps\n- x\n"
    )
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    lines = [d.line for d in caught.value.diagnostics]
    assert lines == sorted(lines) and len(lines) >= 5
    assert caught.value.line == 4 and caught.value.path == str(path)


@pytest.mark.parametrize("name", ["class", "two words", "1st"])
def test_requirement_names_must_be_usable_as_parameters(tmp_path: Path, name: str) -> None:
    path = tmp_path / "f.md"
    path.write_text(
        f'# F\n\n```yaml\nname: f\nrequirements:\n  "{name}": string\n```\n\n## Phase: A\n\n### Steps\n- note\n'
    )
    with pytest.raises(DefinitionError, match="must be an identifier"):
        load_definition(path)


def test_output_bounds_become_the_json_schema(tmp_path: Path) -> None:
    from taskmark.tasks._answers import check_structure, output_schema

    path = tmp_path / "bounds.md"
    path.write_text(
        "# B\n\n```yaml\nname: b\nrequirements: {top: number}\n```\n\n## Phase: A\n\n### Steps\n- agent: w - Answer.\n\n"
        "### Agents\n```yaml\nw: {systemPrompt: You answer.}\n```\n\n### Outputs\n"
        "- category: string - The kind\n  - enum: [macro, news]\n"
        "- signals: array\n  - items: {type: string, maxLength: 20}\n  - minItems: 1\n  - maxItems: 2\n"
        "- confidence: integer\n  - minimum: 0\n  - maximum: top\n"
        "- weights: object\n  - keys: [a, b]\n  - values: number\n"
    )
    schema = output_schema(load_definition(path).phases[0].outputs, {"top": 1.0})
    assert schema == {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["macro", "news"], "description": "The kind"},
            "signals": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string", "maxLength": 20}},
            "confidence": {"type": "integer", "minimum": 0, "maximum": 1},
            "weights": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
        "required": ["category", "signals", "confidence", "weights"],
        "additionalProperties": False,
    }
    good = {"category": "news", "signals": ["rates"], "confidence": 1, "weights": {"a": 1, "b": 0}}
    assert check_structure(good, schema) == []
    bad = {"category": "sport", "signals": [], "confidence": 2, "weights": {"a": 1}, "extra": 1}
    assert check_structure(bad, schema) == [
        "output (root): Additional properties are not allowed ('extra' was unexpected)",
        "output category: 'sport' is not one of ['macro', 'news']",
        "output confidence: 2 is greater than the maximum of 1",
        "output signals: [] should be non-empty",
        "output weights: 'b' is a required property",
    ]
