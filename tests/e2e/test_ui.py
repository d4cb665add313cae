"""The Prefect UI in a real browser (Debian's chromium, headless, driven by Playwright): the run
form of a hand-written definition's deployment has one typed field per requirement, submitting
it ends in a Completed run, and the run's page shows the summary artifact.

Screenshots go to a folder this test prints (``-s`` shows it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fake_openai import FakeOpenAIServer
from support.prefect_stack import PrefectStack, wait_final, wait_for

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
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

    def field(name: str) -> Any:  # noqa: ANN401 - a Playwright locator
        label = page.locator(".schema-form-property__label", has_text=name)
        return page.locator(".schema-form-property").filter(has=label)

    field("includeGuidance").locator("[role=switch]").wait_for()
    labels = page.locator(".schema-form-property__label").all_inner_texts()
    assert labels == ["company", "region (Optional)", "quarters (Optional)", "surpriseThreshold (Optional)", "includeGuidance (Optional)"]
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
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/deployments/deployment/*?tab=Runs")
    page.screenshot(path=str(shots / "2-submitted.png"), full_page=True)

    run = wait_for(lambda: _run_for(prefect_stack, deployment.id, company="Globex"), "the run the form created")
    finished = wait_final(prefect_stack, run.id)
    assert finished.state.type.value == "COMPLETED", finished.state.message
    assert finished.parameters == {"company": "Globex", "region": "Americas", "quarters": 6, "surpriseThreshold": 2.5, "includeGuidance": True}

    page.goto(f"{prefect_stack.ui_url}/runs/flow-run/{run.id}")
    page.get_by_text("Completed", exact=True).first.wait_for()
    page.screenshot(path=str(shots / "3-run.png"), full_page=True)
    page.get_by_text("Artifacts", exact=True).first.click()
    page.get_by_text("earnings-preview-summary").first.wait_for()
    page.get_by_text("earnings-preview-summary").first.click()
    page.get_by_text("A short answer.").first.wait_for()  # the Preview phase's output
    page.screenshot(path=str(shots / "4-summary-artifact.png"), full_page=True)


def _run_for(stack: PrefectStack, deployment_id: Any, **parameters: Any) -> Any:  # noqa: ANN401
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with stack.client() as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
    return next((r for r in runs if all(r.parameters.get(k) == v for k, v in parameters.items())), None)
