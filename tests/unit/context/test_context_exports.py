"""The package's public surface, and that importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import taskmark.context


def test_all_names_exist_and_are_public() -> None:
    for name in taskmark.context.__all__:
        assert hasattr(taskmark.context, name), name
        assert not name.startswith("_")
    assert sorted(taskmark.context.__all__) == sorted(set(taskmark.context.__all__))


def test_every_public_name_defined_in_the_package_is_exported() -> None:
    exported = set(taskmark.context.__all__)
    for name, value in vars(taskmark.context).items():
        module = getattr(value, "__module__", "") or ""
        if not name.startswith("_") and module.startswith("taskmark.context."):
            assert name in exported, f"{name} is public but not in __all__"


def test_import_loads_neither_scikit_learn_nor_prefect_nor_litellm() -> None:
    code = "import sys, taskmark.context\nprint(sorted(m for m in ('sklearn', 'numpy', 'scipy', 'prefect', 'litellm') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
