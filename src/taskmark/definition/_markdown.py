"""The block structure of a definition: title, metadata block, phases and their sections.

markdown-it-py gives tokens whose ``map`` holds 0-based source lines; we keep raw text (never
rendered HTML) so that templates and expressions reach the parser exactly as written.
Inline parsing is switched off: we only need blocks, and it is most of markdown-it's time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.token import Token

from taskmark.definition._source import Location, Reporter, Source, did_you_mean

__all__ = ["SECTIONS", "RawBlock", "RawDocument", "RawItem", "RawPhase", "RawSection", "parse_markdown"]

SECTIONS = ("Steps", "Agents", "Outputs", "Critique", "Refine")

_OPTION_LINE = re.compile(r"[a-z][A-Za-z0-9_]*\s*:(\s|$)")
_PHASE_HEADING = re.compile(r"Phase\s*:\s*(?P<name>.*)$", re.DOTALL)


@dataclass
class RawBlock:
    """YAML text cut from the file: a ```yaml fence or a paragraph of option lines."""

    text: str
    line0: int
    indent: int
    location: Location


@dataclass
class RawItem:
    """A bullet: its raw text and the bullets nested under it."""

    text: str
    location: Location
    children: list[RawItem] = field(default_factory=list)


@dataclass
class RawSection:
    """A `### NAME` section of a phase."""

    name: str
    location: Location
    options: list[RawBlock] = field(default_factory=list)
    items: list[RawItem] = field(default_factory=list)


@dataclass
class RawPhase:
    """A `## Phase: NAME` section."""

    name: str
    location: Location
    options: list[RawBlock] = field(default_factory=list)
    prose: list[str] = field(default_factory=list)
    sections: dict[str, RawSection] = field(default_factory=dict)


@dataclass
class RawDocument:
    """The blocks of a definition that matter, with their places."""

    title: str | None
    title_location: Location
    metadata: RawBlock | None
    phases: list[RawPhase]


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"maxNesting": 20})
    md.core.ruler.disable(["inline", "text_join"])
    return md


_MD = _markdown()


def parse_markdown(source: Source, reporter: Reporter) -> RawDocument:
    """Split a definition into title, metadata and phases, reporting misplaced structure."""
    tokens = _MD.parse(source.text)
    doc = RawDocument(title=None, title_location=source.at(0), metadata=None, phases=[])
    phase: RawPhase | None = None
    section: RawSection | None = None
    skipping = False  # inside a `##` section that is not a phase: prose, ignored
    seen_first_block = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.level != 0 or token.nesting == -1:
            i += 1
            continue
        line0 = token.map[0] if token.map else 0
        if token.type == "heading_open":
            text = tokens[i + 1].content.strip()
            if token.tag == "h1" and doc.title is None and not seen_first_block:
                doc.title, doc.title_location = text, source.find(line0, text)
            elif token.tag in ("h1", "h2"):
                phase, section, skipping = _heading(source, line0, text, token.tag, doc, reporter)
            elif token.tag == "h3" and phase is not None and not skipping:
                section = _section(source, line0, text, phase, reporter)
            seen_first_block = True
            i += 3
            continue
        seen_first_block = True
        end = _close(tokens, i)
        if not skipping:
            if phase is None:
                if token.type == "fence" and _is_yaml(token) and doc.metadata is None:
                    doc.metadata = _fence(source, token)
            elif section is None:
                _phase_block(source, tokens[i:end], phase, reporter)
            else:
                _section_block(source, tokens[i:end], section, reporter)
        i = end
    if doc.title is None:
        first = next((t.map[0] for t in tokens if t.map and t.level == 0), 0)
        reporter.error(source.line_start(first), "expected a '# Title' line at the top of the definition")
    return doc


def _heading(
    source: Source, line0: int, text: str, tag: str, doc: RawDocument, reporter: Reporter
) -> tuple[RawPhase | None, None, bool]:
    match = _PHASE_HEADING.match(text)
    if match and tag == "h2":
        name = match.group("name").strip()
        if not name:
            reporter.error(source.find(line0, "Phase"), "expected a phase name after '## Phase:'")
            return None, None, True
        phase = RawPhase(name=name, location=source.find(line0, name))
        doc.phases.append(phase)
        return phase, None, False
    if tag == "h2" and text.lower().startswith("phase"):
        reporter.error(source.find(line0, text), f"expected '## Phase: NAME'; found '## {text}'")
    return None, None, True


def _section(source: Source, line0: int, text: str, phase: RawPhase, reporter: Reporter) -> RawSection | None:
    where = source.find(line0, text)
    if text not in SECTIONS:
        reporter.error(
            where,
            f"unknown section '### {text}' in phase '{phase.name}'; expected one of "
            + ", ".join(SECTIONS)
            + did_you_mean(text, SECTIONS),
        )
        return None
    if text in phase.sections:
        first = phase.sections[text].location.line
        reporter.error(where, f"section '### {text}' is given twice in phase '{phase.name}'; first at line {first}")
        return None
    phase.sections[text] = RawSection(name=text, location=where)
    return phase.sections[text]


def _close(tokens: Sequence[Token], i: int) -> int:
    """The index after the block that opens at ``i``."""
    if tokens[i].nesting == 0:
        return i + 1
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j + 1
    return len(tokens)


def _is_yaml(token: Token) -> bool:
    info = token.info.strip().split()
    return bool(info) and info[0].lower() in ("yaml", "yml")


def _fence(source: Source, token: Token) -> RawBlock:
    line0 = token.map[0] if token.map else 0
    fence_line = source.lines[line0]
    indent = len(fence_line) - len(fence_line.lstrip())
    return RawBlock(token.content, line0 + 1, indent, source.line_start(line0))


def _option_paragraph(source: Source, token: Token) -> RawBlock | None:
    """Option lines: a paragraph whose first line is a lowercase `key: value`."""
    start, end = token.map or (0, 0)
    lines = source.lines[start:end]
    if not lines or not _OPTION_LINE.match(lines[0].lstrip()):
        return None
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    text = "\n".join(line[indent:] for line in lines)
    return RawBlock(text, start, indent, source.line_start(start))


def _phase_block(source: Source, block: Sequence[Token], phase: RawPhase, reporter: Reporter) -> None:
    head = block[0]
    if head.type == "fence" and _is_yaml(head):
        phase.options.append(_fence(source, head))
    elif head.type == "paragraph_open":
        options = _option_paragraph(source, head)
        if options is not None:
            phase.options.append(options)
        else:
            start, end = head.map or (0, 0)
            phase.prose.append("\n".join(source.lines[start:end]).strip())


def _section_block(source: Source, block: Sequence[Token], section: RawSection, reporter: Reporter) -> None:
    head = block[0]
    if head.type in ("bullet_list_open", "ordered_list_open"):
        section.items.extend(_items(source, block))
    elif head.type == "fence" and _is_yaml(head):
        section.options.append(_fence(source, head))
    elif head.type == "paragraph_open" and section.name in ("Critique", "Refine"):
        options = _option_paragraph(source, head)
        if options is not None:
            section.options.append(options)


def _items(source: Source, block: Sequence[Token]) -> list[RawItem]:
    """The items of the list that ``block`` is, with their nested lists."""
    items: list[RawItem] = []
    base = block[0].level + 1
    i = 1
    while i < len(block) - 1:
        token = block[i]
        if token.type == "list_item_open" and token.level == base:
            end = _close(block, i)
            items.append(_item(source, block[i:end]))
            i = end
        else:
            i += 1
    return items


def _item(source: Source, block: Sequence[Token]) -> RawItem:
    line0 = (block[0].map or (0, 0))[0]
    level = block[0].level
    text = ""
    children: list[RawItem] = []
    i = 1
    while i < len(block) - 1:
        token = block[i]
        if token.level == level + 1 and token.type == "paragraph_open" and not text:
            text = block[i + 1].content.strip()
        elif token.level == level + 1 and token.type in ("bullet_list_open", "ordered_list_open"):
            end = _close(block, i)
            children.extend(_items(source, block[i:end]))
            i = end
            continue
        i += 1
    first_line = text.split("\n", 1)[0]
    return RawItem(text=text, location=source.find(line0, first_line), children=children)
