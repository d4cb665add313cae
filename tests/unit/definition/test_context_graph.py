"""Context in definitions: refers and the other links, documents, the index, context options, the graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import taskmark.definition._context as context_module
from taskmark.definition import (
    ContextOptions,
    Definition,
    Metadata,
    PhaseOptions,
    Retrieval,
    load_definition,
    merge_context,
    render_graph,
    validate_file,
)


def definition(name: str, phases: str, meta: str = "") -> str:
    return f"# {name}\n\n```yaml\nname: {name}\n{meta}```\n\n{phases}"


def phase(name: str, options: str = "", step: str = "- Do the work.") -> str:
    return f"## Phase: {name}\n{options}\n### Steps\n{step}\n\n"


def write(folder: Path, file: str, text: str) -> Path:
    path = folder / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def at(path: Path, needle: str, nth: int = 0, shift: int = 0) -> str:
    """``PATH:LINE:COL`` of the ``nth`` occurrence of ``needle`` in the file (``shift`` columns on)."""
    text = path.read_text(encoding="utf-8")
    offset = -1
    for _ in range(nth + 1):
        offset = text.index(needle, offset + 1)
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1 + shift
    return f"{path}:{line}:{column}"


def errors(path: Path) -> list[str]:
    report = validate_file(path)
    return [str(d) for d in report.diagnostics if d.severity == "error"]


# -- context options -----------------------------------------------------------------------


def test_context_options_take_camel_case_and_snake_case_keys() -> None:
    options = ContextOptions.model_validate(
        {"budgetTokens": 500, "summarize": "llm", "retrieval": {"k": 3}, "template": "{{ prompt }}"}
    )
    assert options == ContextOptions(
        budget_tokens=500, summarize="llm", retrieval=Retrieval(k=3), template="{{ prompt }}"
    )
    assert ContextOptions.model_validate({"retrieval": True}).retrieval == Retrieval(k=5)
    assert ContextOptions.model_validate({"retrieval": False}).retrieval is None
    assert ContextOptions() == ContextOptions(budget_tokens=None, summarize="extract", retrieval=None, template=None)


def test_retrieval_ranks_by_tfidf_unless_embeddings_are_asked_for(tmp_path: Path) -> None:
    assert ContextOptions.model_validate({"retrieval": {"k": 2}}).retrieval == Retrieval(k=2, method="tfidf")
    path = write(tmp_path, "f.md", definition("f", phase("A", "context: {retrieval: {k: 2, method: embeddings}}\n")))
    context = load_definition(path).phases[0].options.context
    assert (
        context is not None
        and context.retrieval is not None
        and context.retrieval.model_dump() == {"k": 2, "method": "embeddings"}
    )
    wrong = write(tmp_path, "g.md", definition("g", phase("B", "context: {retrieval: {method: meaning}}\n")))
    assert errors(wrong) == [
        f"{at(wrong, 'meaning')}: error: context.retrieval.method: input should be 'tfidf' or 'embeddings'; found 'meaning'"
    ]


def test_retrieval_by_embeddings_without_the_extra_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context_module, "embeddings_available", lambda: False)
    path = write(
        tmp_path,
        "f.md",
        definition(
            "f", phase("A", "documents: [notes.md]\n"), meta="context: {retrieval: {k: 2, method: embeddings}}\n"
        ),
    )
    write(tmp_path, "notes.md", "Notes.")
    assert errors(path) == [
        f"{at(path, 'embeddings')}: error: retrieval by embeddings needs the embeddings extra, which is not installed here: "
        "pip install 'taskmark[embeddings]'; or write method: tfidf"
    ]


def test_merge_context_takes_each_key_from_the_most_specific_layer_that_sets_it() -> None:
    agent = ContextOptions(summarize="llm")
    phase_level = ContextOptions(budget_tokens=300, retrieval=None)  # turns retrieval off explicitly
    definition_level = ContextOptions(budget_tokens=900, retrieval=Retrieval(k=2), template="{{ prompt }}")
    merged = merge_context(agent, phase_level, definition_level)
    assert merged == ContextOptions(budget_tokens=300, summarize="llm", retrieval=None, template="{{ prompt }}")
    assert merge_context(None, None, ContextOptions(retrieval=Retrieval(k=2))).retrieval == Retrieval(k=2)
    assert merge_context() == ContextOptions() and merge_context(None) == ContextOptions()
    # A merged result merges again like a written one.
    assert merge_context(merged, ContextOptions(summarize="extract", budget_tokens=1)).summarize == "llm"


def test_schema_has_the_new_keys() -> None:
    metadata = Metadata.model_json_schema(by_alias=True)["properties"]
    phase_options = PhaseOptions.model_json_schema(by_alias=True)["properties"]
    assert {"index", "context"} <= set(metadata)
    assert {"refers", "documents", "context", "review", "index", "duplicates", "relatesTo"} <= set(phase_options)
    context = ContextOptions.model_json_schema(by_alias=True)["properties"]
    assert set(context) == {"budgetTokens", "summarize", "retrieval", "template"}
    assert set(ContextOptions.model_json_schema(by_alias=True)["$defs"]["Retrieval"]["properties"]) == {"k", "method"}


def test_bad_context_values_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.md",
        definition(
            "f",
            phase("A", "context: {budgetTokens: 0, summarise: llm}\nreview: contxt\n")
            + phase("B", "context: {retrieval: {k: 500}, summarize: abstract}\nindex: 1\n"),
        ),
    )
    assert errors(path) == [
        f"{at(path, '0,')}: error: context.budgetTokens: input should be greater than or equal to 1; found 0",
        f"{at(path, 'summarise')}: error: unknown key 'context.summarise' in phase 'A' options; expected one of budgetTokens, summarize, retrieval, template; did you mean 'summarize'?",
        f"{at(path, 'contxt')}: error: review: input should be 'context'; found 'contxt'",
        f"{at(path, '500')}: error: context.retrieval.k: input should be less than or equal to 100; found 500",
        f"{at(path, 'abstract')}: error: context.summarize: input should be 'extract' or 'llm'; found 'abstract'",
        f"{at(path, 'index: 1', shift=7)}: error: index: input should be a valid boolean; found 1",
    ]


def test_context_templates_are_checked_in_metadata_phases_and_agents(tmp_path: Path) -> None:
    write(tmp_path, "agents/helper.md", '---\ncontext: {template: "{{ prompt }} {% if %}"}\n---\nYou help.\n')
    path = write(
        tmp_path,
        "f.md",
        definition(
            "f",
            phase(
                "A",
                'context: {template: "{{ items }}{{ promt }}"}\n',
                '- agent: helper - Help.\n- agent: inline - Help.\n\n### Agents\n```yaml\ninline: {systemPrompt: Hi, context: {template: "{{ nope }}"}}\n```',
            ),
            meta='context: {template: "{% for item in items %}{{ item.text }}{% endfor %}{{ prompt }}{{ note }}"}\n',
        ),
    )
    phase_template, inline_template = at(path, '"{{ items }}{{ promt'), at(path, '"{{ nope')
    assert errors(path) == [  # the definition's own errors first, then those of its agent files
        f"{phase_template}: error: unknown name 'promt' in context template; expected one of items, prompt, note; did you mean 'prompt'?",
        f"{inline_template}: error: unknown name 'nope' in context template; expected one of items, prompt, note; did you mean 'note'?",
        f"{tmp_path / 'agents' / 'helper.md'}:2:21: error: invalid context template: Expected an expression, got 'end of statement block'",
    ]


def test_agents_carry_their_context_options(tmp_path: Path) -> None:
    write(
        tmp_path, "agents/reader.md", "---\nmodel: m\ncontext: {budgetTokens: 700, retrieval: true}\n---\nYou read.\n"
    )
    path = write(
        tmp_path,
        "f.md",
        definition(
            "f",
            phase(
                "A",
                "",
                "- agent: reader - Read.\n- agent: plain - Say.\n- agent: inline - Say.\n\n### Agents\n```yaml\ninline: {context: {summarize: llm}}\nplain: {}\n```",
            ),
        ),
    )
    agents = load_definition(path).agents
    reader, inline = agents["reader"].context, agents["inline"].context
    assert (
        reader is not None
        and reader.model_dump() == ContextOptions(budget_tokens=700, retrieval=Retrieval(k=5)).model_dump()
    )
    assert inline is not None and inline.model_fields_set == {"summarize"} and inline.summarize == "llm"
    assert agents["plain"].context is None


# -- refers, duplicates, relatesTo --------------------------------------------------------------


def test_links_within_the_definition_are_checked_and_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.md",
        definition(
            "f",
            phase("Gather", "refers: Gather\n")
            + phase(
                "Summary",
                "refers: [Gather, Sumary, f/Sumary]\nduplicates: [Gathr]\nrelatesTo: [Elsewhere, /Gather, f/]\n",
            ),
        ),
    )
    assert errors(path) == [
        f"{at(path, 'Gather', 1)}: error: phase 'Gather' refers to itself; to use its own earlier runs, write 'f/Gather'",
        f"{at(path, 'Sumary')}: error: phase 'Summary' refers to unknown phase 'Sumary'; did you mean 'Summary'?",
        f"{at(path, 'f/Sumary')}: error: phase 'Summary' refers to 'f/Sumary', but this definition has no phase 'Sumary'; did you mean 'Summary'?",
        f"{at(path, 'Gathr')}: error: phase 'Summary' duplicates unknown phase 'Gathr'; did you mean 'Gather'?",
        f"{at(path, 'Elsewhere')}: error: phase 'Summary' relates to unknown phase 'Elsewhere'; a phase of another definition is written 'definition-name/Phase Name'",
        f"{at(path, '/Gather')}: error: phase 'Summary' relates to '/Gather'; expected 'Phase Name' or 'definition-name/Phase Name'",
        f"{at(path, 'f/]')}: error: phase 'Summary' relates to 'f/'; expected 'Phase Name' or 'definition-name/Phase Name'",
    ]


def test_a_phase_may_refer_to_its_own_earlier_runs_and_refers_may_form_cycles(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.md",
        definition(
            "f",
            phase("A", "refers: [B, f/A]\n")
            + phase("B", "dependsOn: A\nrefers: [A, f/B]\nduplicates: A\nrelatesTo: f/A\n"),
        ),
    )
    loaded = load_definition(path)
    assert loaded.phase("A").options.refers == ["B", "f/A"]
    assert [p.name for p in loaded.run_order()] == ["A", "B"]


def test_a_depends_on_cycle_is_still_an_error_beside_refers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.md",
        definition("f", phase("A", "dependsOn: B\nrefers: B\n") + phase("B", "dependsOn: A\nrefers: A\n")),
    )
    assert errors(path) == [f"{at(path, 'B', 0)}: error: dependency cycle: A → B → A (each phase depends on the next)"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Definitions side by side, and files that are not definitions."""
    write(
        tmp_path, "research.md", definition("market-research", phase("Collect") + phase("Rank", "dependsOn: Collect\n"))
    )
    write(
        tmp_path, "broken.md", definition("broken-flow", phase("Only", "dependsOn: [Nowhere]\n"))
    )  # its errors are its own
    write(tmp_path, "README.md", "# Notes\n\nNot a definition.\n")
    write(tmp_path, "agents/writer.md", "You write.\n")
    write(tmp_path, "nested/deep.md", definition("deep-flow", phase("Hidden")))
    return tmp_path


def test_refers_to_a_phase_of_another_definition_in_the_folder(folder: Path) -> None:
    path = write(
        folder,
        "report.md",
        definition(
            "report",
            phase("Write", "refers: [market-research/Rank, broken-flow/Only]\nrelatesTo: market-research/Collect\n"),
        ),
    )
    loaded = load_definition(path)
    assert loaded.phase("Write").options.refers == ["market-research/Rank", "broken-flow/Only"]


def test_unknown_definition_or_phase_in_the_folder(folder: Path) -> None:
    path = write(
        folder,
        "report.md",
        definition(
            "report",
            phase(
                "Write",
                "refers: [market-reserch/Rank, market-research/Rnak, deep-flow/Hidden]\nduplicates: market-research/Nothing Like It\n",
            ),
        ),
    )
    shown = folder.as_posix()
    assert errors(path) == [
        f"{at(path, 'market-reserch/Rank')}: error: phase 'Write' refers to 'market-reserch/Rank', but no definition in {shown} is named 'market-reserch'; definitions there: broken-flow, market-research; did you mean 'market-research'?",
        f"{at(path, 'market-research/Rnak')}: error: phase 'Write' refers to 'market-research/Rnak', but definition 'market-research' ({folder / 'research.md'}) has no phase 'Rnak'; did you mean 'Rank'?",
        f"{at(path, 'deep-flow/Hidden')}: error: phase 'Write' refers to 'deep-flow/Hidden', but no definition in {shown} is named 'deep-flow'; definitions there: broken-flow, market-research; did you mean 'broken-flow'?",
        f"{at(path, 'market-research/Nothing')}: error: phase 'Write' duplicates 'market-research/Nothing Like It', but definition 'market-research' ({folder / 'research.md'}) has no phase 'Nothing Like It'",
    ]


def test_the_folder_is_read_once_per_validation(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    original = context_module._read_sibling

    def counting(path: str) -> context_module.Sibling | None:
        read.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(context_module, "_read_sibling", counting)
    path = write(
        folder,
        "report.md",
        definition(
            "report",
            phase("A", "refers: [market-research/Rank, x/Y]\n") + phase("B", "refers: market-research/Collect\n"),
        ),
    )
    validate_file(path)
    assert sorted(read) == ["README.md", "broken.md", "research.md"]  # not report.md itself, not nested/
    read.clear()
    write(folder, "plain.md", definition("plain", phase("A", "refers: B\n") + phase("B")))
    validate_file(folder / "plain.md")
    assert read == []  # no qualified target: the folder is not read at all


def test_relative_paths_are_resolved_from_the_current_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(folder, "report.md", definition("report", phase("Write", "refers: market-research/Rank\n")))
    monkeypatch.chdir(folder)
    assert load_definition("report.md").phase("Write").options.refers == ["market-research/Rank"]
    monkeypatch.chdir(folder.parent)
    assert load_definition(f"{folder.name}/report.md").name == "report"


# -- documents -----------------------------------------------------------------------------------


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    write(tmp_path, "docs/a.md", "A\n")
    write(tmp_path, "docs/b.txt", "B\n")
    write(tmp_path, "docs/deep/c.markdown", "C\n")
    write(tmp_path, "docs/deep/chart.png", "not text")
    write(tmp_path, "shared/conventions.md", "Be brief.\n")
    return tmp_path


def test_documents_match_paths_and_globs(docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside the definition's folder (flows/), allowed through the setting.
    monkeypatch.setenv("TASKMARK_DOCUMENT_ROOTS", str(docs))
    (docs / "flows").mkdir()
    path = write(
        docs,
        "flows/f.md",
        definition(
            "f",
            phase("A", "documents: [../docs/*.md, ../docs/**/*.markdown, ../docs/b.txt, ../docs/a.md]\n")
            + phase("B", "documents: ../shared/conventions.md\n"),
        ),
    )
    loaded = load_definition(path)
    assert loaded.source_dir == docs / "flows"
    assert loaded.documents(loaded.phase("A")) == [
        docs / "flows/../docs/a.md",
        docs / "flows/../docs/b.txt",
        docs / "flows/../docs/deep/c.markdown",
    ]
    assert [p.name for p in loaded.documents(loaded.phase("B"))] == ["conventions.md"]


def test_documents_that_match_nothing_or_not_text_are_located(docs: Path) -> None:
    path = write(
        docs,
        "f.md",
        definition("f", phase("A", "documents: [docs/*.pdf, docs/deep/*, docs/deep/chart.png, docs, docs/**/*.md]\n")),
    )
    assert errors(path) == [
        f"{at(path, 'docs/*.pdf')}: error: documents: 'docs/*.pdf' matches no file in {docs}",
        f"{at(path, 'docs/deep/*')}: error: documents: 'docs/deep/*' matches 'docs/deep/chart.png', which is not markdown or text (.md, .markdown, .txt)",
        f"{at(path, 'docs/deep/chart.png')}: error: documents: 'docs/deep/chart.png' is not markdown or text (.md, .markdown, .txt)",
        f"{at(path, 'docs,')}: error: documents: 'docs' is a folder; to take its files write 'docs/*.md'",
    ]


# -- the index ---------------------------------------------------------------------------------------


def test_metadata_index_resolves_beside_the_definition(docs: Path) -> None:
    path = write(docs, "f.md", definition("f", phase("A"), meta="index: shared/conventions.md\n"))
    loaded = load_definition(path)
    assert loaded.index_path() == docs / "shared/conventions.md" and loaded.index_phase() is None
    assert load_definition(write(docs, "g.md", definition("g", phase("A")))).index_path() is None


def test_a_missing_index_is_located(docs: Path) -> None:
    path = write(docs, "f.md", definition("f", phase("A"), meta="index: shared/conventions.txt\n"))
    assert errors(path) == [
        f"{at(path, 'shared/')}: error: index: file 'shared/conventions.txt' does not exist (looked for {docs.as_posix()}/shared/conventions.txt)"
    ]
    path = write(docs, "g.md", definition("g", phase("A"), meta="index: shared\n"))
    assert errors(path) == [
        f"{at(path, 'shared')}: error: index: 'shared' is a folder; expected a markdown or text file"
    ]
    path = write(docs, "h.md", definition("h", phase("A"), meta="index: docs/deep/chart.png\n"))
    assert errors(path) == [
        f"{at(path, 'docs/')}: error: index: 'docs/deep/chart.png' is not markdown or text (.md, .markdown, .txt)"
    ]


def test_one_index_only(docs: Path) -> None:
    path = write(
        docs,
        "f.md",
        definition("f", phase("A", "index: true\n") + phase("B", "index: true\n") + phase("C", "index: false\n")),
    )
    assert errors(path) == [
        f"{at(path, 'true', 1)}: error: phase 'B' is an index phase, but phase 'A' already is (line 7); a definition has one index"
    ]
    path = write(docs, "g.md", definition("g", phase("A", "index: true\n"), meta="index: shared/conventions.md\n"))
    assert errors(path) == [
        f"{at(path, 'true')}: error: phase 'A' is an index phase, but the metadata already names the index document 'shared/conventions.md' (line 5); keep one"
    ]


def test_every_phase_not_upstream_of_the_index_phase_waits_for_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.md",
        definition(
            "f",
            phase("Source")
            + phase("Conventions", "dependsOn: Source\nindex: true\n")
            + phase("Alone", "", '- agent: w - Follow {{ phases["Conventions"] }}\n\n### Agents\n```yaml\nw: {}\n```')
            + phase("After Alone", "dependsOn: Alone\n")
            + phase("After Index", "dependsOn: Conventions\n")
            + phase("After Source", "dependsOn: Source\n")
            + phase("Both", "dependsOn: [Source, Conventions]\n"),
        ),
    )
    loaded = load_definition(path)
    assert {p.name: p.depends_on for p in loaded.phases} == {
        "Source": [],
        "Conventions": ["Source"],
        "Alone": ["Conventions"],
        "After Alone": ["Alone"],  # waits through Alone
        "After Index": ["Conventions"],
        "After Source": ["Source", "Conventions"],
        "Both": ["Source", "Conventions"],
    }
    assert loaded.index_phase() is loaded.phase("Conventions")
    assert [p.name for p in loaded.run_order()][:2] == ["Source", "Conventions"]
    mermaid = render_graph(loaded, "mermaid")
    assert '    p1["Conventions (index)"]' in mermaid and "    p1 --> p2" in mermaid


# -- the graph -----------------------------------------------------------------------------------


@pytest.fixture
def linked(folder: Path) -> Definition:
    write(folder, "docs/a.md", "A\n")
    path = write(
        folder,
        "report.md",
        definition(
            "report",
            phase("Plan", "index: true\n")
            + phase(
                "Draft",
                "dependsOn: Plan\nparallel: true\nrefers: [market-research/Rank, report/Draft]\ndocuments: docs/*.md\nreview: context\n",
            )
            + phase(
                "Check",
                "dependsOn: Draft\nduplicates: Draft\nrelatesTo: market-research/Collect\ndocuments: [docs/*.md, docs/a.md]\nrefers: Draft\n",
            ),
        ),
    )
    return load_definition(path)


def test_mermaid_draws_each_kind_of_edge(linked: Definition) -> None:
    assert render_graph(linked, "mermaid").splitlines() == [
        "flowchart TD",
        '    p0["Plan (index)"]',
        '    p1["Draft ∥"]',
        '    p2["Check"]',
        '    x0[/"market-research/Rank"/]',
        '    x1[/"market-research/Collect"/]',
        '    d0[("docs/*.md")]',
        '    d1[("docs/a.md")]',
        "    p0 --> p1",
        "    p1 --> p2",
        "    x0 -.->|refers| p1",
        "    p1 -.->|refers| p1",
        "    d0 -.->|documents| p1",
        "    p1 -.->|refers| p2",
        "    p2 <-.->|duplicates| p1",
        "    p2 -.-|relates to| x1",
        "    d0 -.->|documents| p2",
        "    d1 -.->|documents| p2",
    ]


def test_dot_draws_each_kind_of_edge(linked: Definition) -> None:
    assert render_graph(linked, "dot").splitlines() == [
        'digraph "report" {',
        "    rankdir=TB;",
        '    p0 [label="Plan (index)", shape=box, style=bold];',
        '    p1 [label="Draft", shape=box, peripheries=2];',
        '    p2 [label="Check", shape=box];',
        '    x0 [label="market-research/Rank", shape=box, style="rounded,dashed"];',
        '    x1 [label="market-research/Collect", shape=box, style="rounded,dashed"];',
        '    d0 [label="docs/*.md", shape=cylinder];',
        '    d1 [label="docs/a.md", shape=cylinder];',
        "    p0 -> p1;",
        "    p1 -> p2;",
        '    x0 -> p1 [style=dashed, label="refers"];',
        '    p1 -> p1 [style=dashed, label="refers"];',
        '    d0 -> p1 [style=dashed, label="documents"];',
        '    p1 -> p2 [style=dashed, label="refers"];',
        '    p2 -> p1 [style=dotted, dir=both, label="duplicates"];',
        '    p2 -> x1 [style=dotted, dir=none, label="relates to"];',
        '    d0 -> p2 [style=dashed, label="documents"];',
        '    d1 -> p2 [style=dashed, label="documents"];',
        "}",
    ]


def test_json_gives_each_edge_its_kind(linked: Definition) -> None:
    graph = json.loads(render_graph(linked, "json"))
    assert graph["index"] is None
    assert graph["edges"] == [
        {"from": "Plan", "to": "Draft", "kind": "requires"},
        {"from": "Draft", "to": "Check", "kind": "requires"},
        {"from": "market-research/Rank", "to": "Draft", "kind": "refers"},
        {"from": "Draft", "to": "Draft", "kind": "refers"},
        {"from": "docs/*.md", "to": "Draft", "kind": "documents"},
        {"from": "Draft", "to": "Check", "kind": "refers"},
        {"from": "Check", "to": "Draft", "kind": "duplicates"},
        {"from": "Check", "to": "market-research/Collect", "kind": "relates_to"},
        {"from": "docs/*.md", "to": "Check", "kind": "documents"},
        {"from": "docs/a.md", "to": "Check", "kind": "documents"},
    ]
    draft = graph["phases"][1]
    assert (draft["refers"], draft["documents"], draft["index"], draft["review"]) == (
        ["market-research/Rank", "report/Draft"],
        ["docs/*.md"],
        False,
        "context",
    )
    assert graph["phases"][0]["index"] is True


def test_the_metadata_index_is_a_node_of_its_own(docs: Path) -> None:
    loaded = load_definition(write(docs, "f.md", definition("f", phase("A"), meta="index: shared/conventions.md\n")))
    assert render_graph(loaded, "mermaid").splitlines() == [
        "flowchart TD",
        '    p0["A"]',
        '    idx[["index: shared/conventions.md"]]',
    ]
    assert '    idx [label="index: shared/conventions.md", shape=note];' in render_graph(loaded, "dot")
    assert json.loads(render_graph(loaded, "json"))["index"] == "shared/conventions.md"


def test_a_definition_without_links_draws_as_before(tmp_path: Path) -> None:
    loaded = load_definition(
        write(tmp_path, "f.md", definition("f", phase("A") + phase("B", "dependsOn: A\nparallel: true\n")))
    )
    assert render_graph(loaded, "mermaid") == 'flowchart TD\n    p0["A"]\n    p1["B ∥"]\n    p0 --> p1'
    assert (
        render_graph(loaded, "dot")
        == 'digraph "f" {\n    rankdir=TB;\n    p0 [label="A", shape=box];\n    p1 [label="B", shape=box, peripheries=2];\n    p0 -> p1;\n}'
    )
