"""Deployments end to end: prefect.yaml, `taskmark deploy`, `taskmark serve`, schedules, runs
through a real worker, read back through Prefect's API. Every docs/deploying.md command runs here
or in test_ui.py."""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from support.deploy_docs import COMMANDS, doc_commands, doc_definition
from support.fake_openai import FakeOpenAIServer
from support.prefect_stack import PrefectStack, flow_run_id_in, wait_final, wait_for
from taskmark.cli import app
from taskmark.definition import load_definition
from taskmark.deploy import entrypoint_of

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "definitions").glob("*.md"))


def _schema_of(path: Path) -> dict[str, Any]:
    from prefect.utilities.callables import parameter_schema

    from taskmark.flows import compile

    return parameter_schema(compile(load_definition(path))).model_dump(exclude_unset=True)


def _scheduled_runs(stack: PrefectStack, deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with stack.client() as client:
        return list(
            client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                ),
            )
        )


# -- without a server --------------------------------------------------------------------------


def test_every_docs_command_is_one_the_tests_run() -> None:
    assert sorted(doc_commands()) == sorted(COMMANDS.values())


def test_prefect_yaml_has_its_own_entry_for_each_example() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entries = {d["name"]: d for d in config["deployments"]}
    assert sorted(entries) == [p.stem for p in EXAMPLES]
    for path in EXAMPLES:
        definition = load_definition(path)
        entry = entries[definition.name]
        assert entry["entrypoint"] == entrypoint_of(definition)
        assert entry["work_pool"]["name"] == "taskmark"
        schedule = definition.metadata.schedule
        expected = (
            []
            if schedule is None
            else [{"cron": schedule.cron, "timezone": schedule.timezone, "parameters": schedule.parameters}]
        )
        assert entry["schedules"] == expected, "prefect.yaml's schedule must match the definition's"


def test_a_bad_definition_is_a_located_error_and_exit_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.md"
    text = doc_definition().replace("type: integer", "type: intger")
    broken.write_text(text)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "intger" in row)
    result = CliRunner().invoke(app, ["deploy", str(broken)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"{broken}:{line}:11: error: requirements.quarters.type: unknown type 'intger'; "
        "expected one of string, number, integer, boolean, array, object; did you mean 'integer'?\n"
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "61 6 * * *", "-p", "company=X"], 'error: invalid schedule: Invalid cron string: "61 6 * * *"'),
        (
            ["--cron", "0 6 * * *", "--timezone", "Mars/Olympus", "-p", "company=X"],
            "error: invalid schedule: Invalid timezone",
        ),
        (["--cron", "0 6 * * *"], "error: scheduled runs would have no value for the required input 'company'"),
        (["-p", "quarters=many"], "quarters: expected integer (as JSON); found 'many'"),
    ],
    ids=["cron", "timezone", "missing-input", "param-type"],
)
def test_bad_options_exit_2_before_anything_is_sent(tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "earnings-preview.md"
    path.write_text(doc_definition())
    result = CliRunner().invoke(app, ["deploy", str(path), *args])
    assert result.exit_code == 2, result.output
    words = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # Typer boxes usage errors
    assert message in words
    assert "Traceback" not in result.output


# -- prefect.yaml, a worker, runs ----------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_prefect_deploy_keeps_each_definitions_typed_schema(prefect_stack: PrefectStack, path: Path) -> None:
    with prefect_stack.client() as client:
        deployment = client.read_deployment_by_name(f"{path.stem}/{path.stem}")
    assert deployment.parameter_openapi_schema == _schema_of(path)
    assert deployment.work_pool_name == "taskmark"
    assert deployment.entrypoint == entrypoint_of(load_definition(path))


def test_the_daily_form_has_typed_fields_defaults_and_required(prefect_stack: PrefectStack) -> None:
    with prefect_stack.client() as client:
        schema = client.read_deployment_by_name("daily-market-analysis/daily-market-analysis").parameter_openapi_schema
    fields = schema["properties"]
    assert schema["required"] == ["question"]
    assert fields["question"]["type"] == "string" and fields["question"]["description"].startswith(
        "The market question"
    )
    assert (fields["ticker"]["type"], fields["ticker"]["default"]) == ("string", "BTC")
    assert (fields["riskTolerance"]["enum"], fields["riskTolerance"]["default"]) == (
        ["low", "medium", "high"],
        "medium",
    )


def test_the_schedule_lists_weekday_8am_new_york_runs(prefect_stack: PrefectStack) -> None:
    with prefect_stack.client() as client:
        deployment = client.read_deployment_by_name("daily-market-analysis/daily-market-analysis")
    runs = wait_for(lambda: _scheduled_runs(prefect_stack, deployment.id), "scheduled runs of daily-market-analysis")
    new_york = ZoneInfo("America/New_York")
    times = sorted(run.expected_start_time.astimezone(new_york) for run in runs)
    assert times[0] > datetime.now(timezone.utc)
    assert all((t.hour, t.minute, t.weekday() < 5) == (8, 0, True) for t in times), times
    assert all(run.parameters == {"question": "What moved the market today?"} for run in runs)


@pytest.fixture(scope="session")
def daily_run(prefect_stack: PrefectStack, _fake_llm_server: FakeOpenAIServer) -> Any:
    """A daily-market-analysis run started with the docs' `prefect deployment run ... --watch`."""
    from support.fake_openai import schema_reply

    _fake_llm_server.default = schema_reply
    result = prefect_stack.run(COMMANDS["run_daily"])  # --watch: returns when the run is over
    return wait_final(prefect_stack, flow_run_id_in(result.stdout))


def test_a_cli_run_completes_with_its_graph_artifacts_and_events(prefect_stack: PrefectStack, daily_run: Any) -> None:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    assert daily_run.state.type.value == "COMPLETED", daily_run.state.message
    assert daily_run.parameters == {"question": "What moved BTC today?"}
    with prefect_stack.client() as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[daily_run.id]))
        )
        phases = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[daily_run.id]))
        )
        phase_ids = [p.id for p in phases]
        stages = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=phase_ids))
        )
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=phase_ids)))
    kinds = {a.key: a.type for a in artifacts if a.key}
    assert sum(a.type == "taskmark-record" for a in artifacts) == 1 + len(phases)  # the run record: header, phases
    assert kinds == {
        "daily-market-analysis-summary": "markdown",
        "daily-market-analysis-usage": "table",
        "outputs-daily-market-analysis": "markdown",
    }
    assert sorted(p.parameters["phase"] for p in phases) == sorted(
        p.name for p in load_definition(ROOT / "definitions" / "daily-market-analysis.md").phases
    )
    assert {p.name for p in phases} == {daily_run.name}  # each phase's run is named after its run
    for stage in (
        "Question Classification/ingestion",
        "Question Classification/inference",
        "Answer Synthesis/inference",
    ):
        assert any(s.name.startswith(stage) for s in stages), (stage, sorted(s.name for s in stages))
    assert any(log.task_run_id is not None for log in logs), "no log of a stage"

    def phase_events() -> set[str]:  # events reach the server a moment after the run ends
        with prefect_stack.client() as client:
            body = {
                "filter": {
                    "any_resource": {"id": [f"prefect.flow-run.{daily_run.id}"]},
                    "event": {"prefix": ["taskmark."]},
                }
            }
            found = {e["event"] for e in client.request("POST", "/events/filter", json=body).json()["events"]}
        return found if {"taskmark.phase.started", "taskmark.phase.completed"} <= found else set()

    wait_for(phase_events, "taskmark's phase events in the event feed")


def test_an_api_run_with_typed_inputs_completes(prefect_stack: PrefectStack, llm: FakeOpenAIServer) -> None:
    with prefect_stack.client() as client:
        deployment = client.read_deployment_by_name("content-generation/content-generation")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"topic": "Tides", "length": 300, "tone": "neutral"}
        )
    finished = wait_final(prefect_stack, run.id)
    assert finished.state.type.value == "COMPLETED", finished.state.message
    assert finished.parameters == {"topic": "Tides", "length": 300, "tone": "neutral"}
    assert llm.count > 0


# -- taskmark deploy and serve ----------------------------------------------------------------------


def test_taskmark_deploy_makes_a_typed_scheduled_deployment_of_a_new_file(
    prefect_stack: PrefectStack, workspace: Path, llm: FakeOpenAIServer
) -> None:
    result = prefect_stack.run(COMMANDS["taskmark_deploy"], cwd=workspace)
    assert (
        "Deployed earnings-preview/earnings-preview (cron 30 6 * * 1-5 (Europe/London)) to pool 'taskmark'"
        in result.stdout
    )
    with prefect_stack.client() as client:
        deployment = client.read_deployment_by_name("earnings-preview/earnings-preview")
    assert deployment.parameter_openapi_schema == _schema_of(workspace / "my-workflows" / "earnings-preview.md")
    fields = deployment.parameter_openapi_schema["properties"]
    assert {n: (f["type"], f.get("default")) for n, f in fields.items()} == {
        "company": ("string", None),
        "region": ("string", "Americas"),
        "quarters": ("integer", 4),
        "surpriseThreshold": ("number", 2.5),
        "includeGuidance": ("boolean", True),
    }
    assert deployment.parameters == {"company": "ACME Corp"}
    # Each run starts in the file's folder (no copy of the folder `taskmark deploy` ran in).
    assert deployment.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(workspace / "my-workflows")}}
    ]
    assert deployment.path is None
    london = ZoneInfo("Europe/London")
    runs = wait_for(lambda: _scheduled_runs(prefect_stack, deployment.id), "scheduled runs of earnings-preview")
    assert all(
        (r.expected_start_time.astimezone(london).hour, r.expected_start_time.astimezone(london).minute) == (6, 30)
        for r in runs
    )

    ran = prefect_stack.run(COMMANDS["run_preview"], cwd=workspace)
    finished = wait_final(prefect_stack, flow_run_id_in(ran.stdout))
    assert finished.state.type.value == "COMPLETED", finished.state.message
    assert "Preview the coming results of Initech (Americas)" in llm.requests[0].messages[-1]["content"]


def test_editing_then_deploying_again_updates_the_deployment(
    prefect_stack: PrefectStack, tmp_path: Path, llm: FakeOpenAIServer
) -> None:
    path = tmp_path / "edited.md"
    text = doc_definition().replace("name: earnings-preview", "name: edited-preview")
    path.write_text(text)
    prefect_stack.run(f"taskmark deploy {path}")
    with prefect_stack.client() as client:
        first = client.read_deployment_by_name("edited-preview/edited-preview")

    # A prompt edit reaches the next run without deploying: runs read the file when they start.
    path.write_text(text.replace("Preview the coming results", "Preview, briefly, the coming results"))
    with prefect_stack.client() as client:
        run = client.create_flow_run_from_deployment(first.id, parameters={"company": "Hooli"})
    assert wait_final(prefect_stack, run.id).state.type.value == "COMPLETED"
    assert "Preview, briefly, the coming results of Hooli" in llm.requests[-1].messages[-1]["content"]

    # A new input and a schedule need a deploy: the same deployment gets the new form.
    edited = path.read_text().replace(
        "requirements:\n", "requirements:\n  audience: {type: string, enum: [traders, investors], default: investors}\n"
    )
    path.write_text(edited)
    result = prefect_stack.run(f"taskmark deploy {path} --cron '0 7 * * *' --timezone Asia/Tokyo --param company=Hooli")
    assert "(cron 0 7 * * * (Asia/Tokyo))" in result.stdout
    with prefect_stack.client() as client:
        second = client.read_deployment_by_name("edited-preview/edited-preview")
    assert second.id == first.id
    assert second.parameter_openapi_schema["properties"]["audience"]["enum"] == ["traders", "investors"]
    assert [(s.schedule.cron, s.schedule.timezone) for s in second.schedules] == [("0 7 * * *", "Asia/Tokyo")]

    prefect_stack.run(f"taskmark deploy {path}")  # no --cron, no schedule: the schedule goes
    with prefect_stack.client() as client:
        assert client.read_deployment_by_name("edited-preview/edited-preview").schedules == []


def test_taskmark_serve_runs_a_deployment_without_a_pool(
    prefect_stack: PrefectStack, workspace: Path, llm: FakeOpenAIServer, preview_deployment: Any
) -> None:
    server = prefect_stack.start(COMMANDS["serve"], log_name="serve", cwd=workspace)
    try:

        def served() -> Any:
            assert server.poll() is None, prefect_stack.log("serve")
            with prefect_stack.client() as client:
                deployment = client.read_deployment_by_name("earnings-preview/earnings-preview")
            return deployment if deployment.work_pool_name is None and not deployment.paused else None

        deployment = wait_for(served, "taskmark serve to register earnings-preview")
        assert deployment.parameter_openapi_schema == preview_deployment.parameter_openapi_schema
        with prefect_stack.client() as client:
            run = client.create_flow_run_from_deployment(deployment.id, parameters={"company": "Umbrella"})
        finished = wait_final(prefect_stack, run.id)
        assert finished.state.type.value == "COMPLETED", prefect_stack.log("serve")[-3000:]
        assert "Umbrella" in llm.requests[-1].messages[-1]["content"]
    finally:
        prefect_stack.stop(server, signal.SIGINT)
    # Back to the pool, live again (serve paused it on exit).
    prefect_stack.run(COMMANDS["taskmark_deploy"], cwd=workspace)
    with prefect_stack.client() as client:
        again = client.read_deployment_by_name("earnings-preview/earnings-preview")
    assert (again.id, again.work_pool_name, again.paused) == (deployment.id, "taskmark", False)


def test_no_secret_reaches_the_server(prefect_stack: PrefectStack, daily_run: Any) -> None:
    with prefect_stack.client() as client:
        seen = {
            "deployments": [d.model_dump(mode="json") for d in client.read_deployments()],
            "flow runs": [r.model_dump(mode="json") for r in client.read_flow_runs()],
            "logs": [log.message for log in client.read_logs()],
            "artifacts": [a.model_dump(mode="json") for a in client.read_artifacts()],
            "events": client.request("POST", "/events/filter", json={"filter": {}}).json(),
        }
    key = prefect_stack.env["TASKMARK_LLM_API_KEY"]
    assert key.startswith("sk-canary-") and len(seen["logs"]) > 0 and len(seen["artifacts"]) > 0
    for what, value in seen.items():
        assert key not in json.dumps(value), f"the API key is in the server's {what}"
    assert key not in prefect_stack.log("worker")
