"""The package's public surface, and that importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import taskmark.blocks


def test_all_names_exist_and_are_public() -> None:
    for name in taskmark.blocks.__all__:
        assert hasattr(taskmark.blocks, name), name
        assert not name.startswith("_")
    assert sorted(taskmark.blocks.__all__) == sorted(set(taskmark.blocks.__all__))


def test_every_public_name_defined_in_the_package_is_exported() -> None:
    exported = set(taskmark.blocks.__all__)
    for name, value in vars(taskmark.blocks).items():
        module = getattr(value, "__module__", "") or ""
        if not name.startswith("_") and module.startswith("taskmark.blocks."):
            assert name in exported, f"{name} is public but not in __all__"


def test_import_does_not_import_litellm() -> None:
    code = (
        "import sys, taskmark.blocks\n"
        "from taskmark.blocks import LLMProvider\n"
        "LLMProvider(model='gpt-4o-mini')\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
        "assert 'xllamacpp' not in sys.modules, 'xllamacpp imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_entry_point_names_the_blocks_module() -> None:
    # Prefect imports every `prefect.collections` entry point; that is how the server
    # lists LLM Provider in its Blocks catalogue without a registration step.
    (point,) = [p for p in entry_points(group="prefect.collections") if p.name == "taskmark"]
    assert point.value == "taskmark.blocks"
