"""The command lines and the example definition of docs/deploying.md, for the tests that run them."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["COMMANDS", "DOC", "doc_commands", "doc_definition"]

DOC = Path(__file__).parents[2] / "docs" / "deploying.md"

COMMANDS = {
    "server": "prefect server start --host 127.0.0.1 --port 4200",
    "config": "prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api",
    "pool": "prefect work-pool create taskmark --type process",
    "deploy_all": "prefect --no-prompt deploy --all",
    "worker": "prefect worker start --pool taskmark",
    "run_daily": "prefect deployment run 'daily-market-analysis/daily-market-analysis' --param question=\"What moved BTC today?\" --watch",
    "taskmark_deploy": 'taskmark deploy my-workflows/earnings-preview.md --cron "30 6 * * 1-5" --timezone Europe/London --param company="ACME Corp"',
    "run_preview": "prefect deployment run 'earnings-preview/earnings-preview' --param company=\"Initech\" --watch",
    "serve": "taskmark serve my-workflows/earnings-preview.md",
}
"""Each command line of the doc, by the name the tests use; a test checks the doc has exactly these."""


def doc_commands() -> list[str]:
    """Every line of every ```bash block of the doc."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def doc_definition() -> str:
    """The hand-written definition the doc deploys (its ````markdown block)."""
    found = re.search(r"````markdown\n(.*?)````", DOC.read_text(), re.S)
    assert found, f"no ````markdown block in {DOC}"
    return found.group(1)
