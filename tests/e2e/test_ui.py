"""The Prefect UI in a real browser (Debian's chromium, headless, driven by Playwright): the run
form of a hand-written definition's deployment has one typed field per requirement, submitting
it ends in a Completed run, and the run's page shows the summary artifact; a phase paused for
a context review shows its candidates and a pin/exclude/note form whose answer decides what the
call gets; the LLM provider block shows its key masked and can be created from the UI.

Screenshots go to a folder this test prints (``-s`` shows it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fake_openai import FakeOpenAIServer, Reply
from support.prefect_stack import PrefectStack, wait_final, wait_for

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UI_TIMEOUT_MS = 60_000
"""How long to wait for an element: the UI draws nothing until its scripts have run."""


@pytest.fixture
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A page of a fresh headless chromium profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1400},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


def test_run_form_is_typed_and_a_submitted_run_shows_its_summary(
    prefect_stack: PrefectStack, preview_deployment: Any, llm: FakeOpenAIServer, page: Any, shots: Path
) -> None:
    deployment = preview_deployment
    page.goto(f"{prefect_stack.ui_url}/deployments/deployment/{deployment.id}/run")

    def field(name: str) -> Any:
        label = page.locator(".schema-form-property__label", has_text=name)
        return page.locator(".schema-form-property").filter(has=label)

    field("includeGuidance").locator("[role=switch]").wait_for()
    labels = page.locator(".schema-form-property__label").all_inner_texts()
    assert labels == [
        "company",
        "region (Optional)",
        "quarters (Optional)",
        "surpriseThreshold (Optional)",
        "includeGuidance (Optional)",
    ]
    assert field("company").get_by_text('The company that reports, e.g. "ACME Corp"').is_visible()
    # One typed control each, with its default (company's is the deployment's --param).
    assert field("company").locator("textarea").input_value() == "ACME Corp"
    assert field("region").locator(".p-select-button__value").inner_text() == "Americas"
    assert field("quarters").locator("input[type=number]").input_value() == "4"
    assert field("quarters").locator("input[type=number]").get_attribute("step") == "1"  # an integer
    assert field("surpriseThreshold").locator("input[type=number]").input_value() == "2.5"
    assert field("includeGuidance").locator("[role=switch]").get_attribute("aria-checked") == "true"
    page.screenshot(path=str(shots / "1-run-form.png"), full_page=True)

    field("company").locator("textarea").fill("Globex")
    field("quarters").locator("input[type=number]").fill("6")
    page.get_by_text("Parameters", exact=True).click()  # leave the field, as a user would
    _submit(page, "/create_flow_run")
    page.wait_for_url("**/deployments/deployment/*?tab=Runs")
    page.screenshot(path=str(shots / "2-submitted.png"), full_page=True)

    run = wait_for(lambda: _run_for(prefect_stack, deployment.id, company="Globex"), "the run the form created")
    finished = wait_final(prefect_stack, run.id)
    assert finished.state.type.value == "COMPLETED", finished.state.message
    assert finished.parameters == {
        "company": "Globex",
        "region": "Americas",
        "quarters": 6,
        "surpriseThreshold": 2.5,
        "includeGuidance": True,
    }

    page.goto(f"{prefect_stack.ui_url}/runs/flow-run/{run.id}")
    page.get_by_text("Completed", exact=True).first.wait_for()
    page.screenshot(path=str(shots / "3-run.png"), full_page=True)
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("earnings-preview-summary").first.wait_for()
    page.get_by_text("earnings-preview-summary").first.click()
    page.get_by_text("A short answer.").first.wait_for()  # the Preview phase's output
    page.screenshot(path=str(shots / "4-summary-artifact.png"), full_page=True)


def _submit(page: Any, endpoint: str, tries: int = 3) -> None:
    """Press Submit, and again while the server answers the form's request (to a URL ending in
    ``endpoint``) with 503, as a user would.

    Under load Prefect's SQLite server answers 503 (the database was busy: a retryable error,
    which Prefect's Python client retries); the UI shows "Oops. Something went wrong." and keeps
    the form as it was. Any other answer is the form's to show.
    """
    for _ in range(tries):
        with page.expect_response(lambda response: response.url.endswith(endpoint)) as created:
            page.get_by_role("button", name="Submit").click()
        if created.value.status != 503:
            return


REVIEWED = """# Reviewed tides

```yaml
name: reviewed-tides
```

## Phase: Answer
documents: docs/*.md
review: context

### Steps
- agent: b - explain the tides
"""


def test_a_context_review_is_answered_in_the_ui_and_the_call_gets_the_pinned_item(
    prefect_stack: PrefectStack, llm: FakeOpenAIServer, page: Any, shots: Path, tmp_path: Path
) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "b.md").write_text("You are b.\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "tides.md").write_text("Tides rise twice a day; the moon pulls the sea.")
    (tmp_path / "docs" / "bread.md").write_text("Sourdough needs a starter, flour and patience.")
    (tmp_path / "reviewed.md").write_text(REVIEWED)
    llm.default = lambda r: Reply(content="the moon pulls the sea")
    prefect_stack.start("taskmark run reviewed.md", log_name="reviewed", cwd=tmp_path)
    paused = wait_for(lambda: _paused_phase(prefect_stack, "Answer"), "the phase paused for its review")

    page.goto(f"{prefect_stack.ui_url}/runs/flow-run/{paused.id}")
    page.get_by_text("Artifacts", exact=True).first.click()  # the candidates, as the reviewer sees them
    page.get_by_text("Context for Answer: pin or exclude items").first.click()
    page.get_by_text("doc:docs/bread.md").first.wait_for()
    page.screenshot(path=str(shots / "5-review-candidates.png"), full_page=True)

    page.goto(f"{prefect_stack.ui_url}/runs/flow-run/{paused.id}")
    page.get_by_role("button", name="Resume").first.click()
    page.get_by_text("Items every call of the phase must get.").first.wait_for()

    def field(name: str) -> Any:
        label = page.locator(".schema-form-property__label", has_text=name)
        return page.locator(".schema-form-property").filter(has=label)

    field("Note").locator("textarea").wait_for()  # the whole form is drawn
    assert page.locator(".schema-form-property__label").all_inner_texts() == [
        "Pin (Optional)",
        "Exclude (Optional)",
        "Note (Optional)",
    ]
    _open_options(field("Exclude").locator("button.p-select-button__control"), page.get_by_role("option").first)
    assert sorted(page.get_by_role("option").all_inner_texts()) == ["doc:docs/bread.md", "doc:docs/tides.md"]
    page.get_by_role("option", name="doc:docs/bread.md").click()
    page.keyboard.press("Escape")
    field("Note").locator("textarea").fill("bread is off topic")
    page.screenshot(path=str(shots / "6-review-answered.png"), full_page=True)
    _submit(page, "/resume")

    parent = wait_for(lambda: _run_of(prefect_stack, "reviewed-tides"), "the reviewed run")
    finished = wait_final(prefect_stack, parent.id)
    assert finished.state.type.value == "COMPLETED", (
        f"{finished.state.message}\n{prefect_stack.log('reviewed')[-3000:]}"
    )
    sent = next(m["content"] for m in llm.requests[-1].messages if m["role"] == "user")
    assert "Tides rise twice a day" in sent and "Sourdough" not in sent  # the call got what the reviewer chose
    assert sent.endswith("explain the tides")
    trace = prefect_stack.run(f"taskmark trace {parent.id} --context").stdout
    assert "bread is off topic" in trace and "doc:docs/tides.md" in trace  # the choice is recorded with the call


def _open_options(control: Any, option: Any) -> None:
    """Opens a select's list of options. On a loaded machine the UI can take a key press before
    its handlers listen, and a second ArrowDown on an open list only moves the highlight."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(5):
        control.press("ArrowDown")
        try:
            option.wait_for(timeout=5000)
            return
        except PlaywrightTimeout:
            continue
    option.wait_for()


def _paused_phase(stack: PrefectStack, name: str) -> Any:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    paused = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    with stack.client() as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(state=paused))
    return next((r for r in runs if r.parameters.get("phase") == name), None)


def _run_of(stack: PrefectStack, flow_name: str) -> Any:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with stack.client() as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    return runs[0] if runs else None


def _run_for(stack: PrefectStack, deployment_id: Any, **parameters: Any) -> Any:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with stack.client() as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return next((r for r in runs if all(r.parameters.get(k) == v for k, v in parameters.items())), None)


def test_provider_block_shows_its_key_masked_and_can_be_made_in_the_ui(
    prefect_stack: PrefectStack, page: Any, shots: Path
) -> None:
    from pydantic import SecretStr

    from taskmark.blocks import LLMProvider

    canary = "sk-ui-canary-0123456789abcdef"
    saved = _save_block(
        prefect_stack, LLMProvider(model="openai/gpt-4o-mini", api_key=SecretStr(canary)), "ui-provider"
    )
    page.goto(f"{prefect_stack.ui_url}/blocks/block/{saved}")
    page.get_by_text("ui-provider").first.wait_for()
    page.get_by_text("openai/gpt-4o-mini").first.wait_for()
    page.screenshot(path=str(shots / "5-provider-block.png"), full_page=True)
    assert canary not in page.content()
    assert page.get_by_text("********").count() >= 1  # the key, masked

    page.goto(f"{prefect_stack.ui_url}/blocks/catalog/llm-provider/create")
    made_in_ui = "sk-made-in-the-ui-0123456789"
    name = page.locator(".schema-form-property, .p-label").filter(has_text="Block Name").locator("input").first
    api_key = (
        page.locator("section, div")
        .filter(has=page.get_by_text("API key", exact=True))
        .filter(has=page.get_by_text("password", exact=True))
        .last
    )
    page.get_by_text("Context window (tokens)", exact=True).wait_for()  # the whole form is drawn
    for attempt in range(3):
        name.fill("from-the-ui")
        api_key.locator("textarea, input").last.fill(made_in_ui)
        page.screenshot(path=str(shots / f"6-provider-create-form-{attempt}.png"), full_page=True)
        page.get_by_role("button", name="Create").click()
        if _reaches(page, "**/blocks/block/*"):
            break
        page.screenshot(path=str(shots / f"6-provider-create-stayed-{attempt}.png"), full_page=True)
    else:
        raise AssertionError(f"Create never led to the new block's page; screenshots in {shots}")
    page.get_by_text("from-the-ui").first.wait_for()
    page.screenshot(path=str(shots / "7-provider-made-in-ui.png"), full_page=True)
    assert made_in_ui not in page.content()
    with prefect_stack.client() as client:
        document = client.read_block_document_by_name("from-the-ui", "llm-provider", include_secrets=True)
    assert document.data["api_key"] == made_in_ui  # stored, as a secret


def _reaches(page: Any, url: str) -> bool:
    """Whether the page goes to ``url`` within 20 s."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_url(url, timeout=20_000)
    except PlaywrightTimeout:
        return False
    return True


def _save_block(stack: PrefectStack, block: Any, name: str) -> str:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        # Playwright's sync API runs an event loop in this thread: ask for the sync save.
        return str(block.save(name, overwrite=True, _sync=True))
