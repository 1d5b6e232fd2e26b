"""The public API: sorted ``__all__``, everything exported exists, plugins use it only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_complete() -> None:
    assert pipeline.__all__ == sorted(pipeline.__all__)
    for name in pipeline.__all__:
        assert hasattr(pipeline, name), name


def test_plugins_use_the_public_api_only() -> None:
    """No plugin imports a private module of the framework."""
    for path in (ROOT / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
                assert not any(part.startswith("_") for part in node.module.split(".")), (path, node.module)



PUBLIC_PATHS = (
    "pipeline.errors",
    "pipeline.client",
    "pipeline.worker",
    "pipeline.redis_jobs",
    "pipeline.fake_server",
    "pipeline.testing",
    "pipeline.providers.anthropic",
    "pipeline.cli",
)


@pytest.mark.parametrize("path", PUBLIC_PATHS)
def test_public_module_paths_export_what_they_list(path: str) -> None:
    """Every documented module path imports, and every name of its ``__all__`` is there."""
    module = importlib.import_module(path)
    assert module.__all__, path
    for name in module.__all__:
        assert hasattr(module, name), (path, name)


def test_the_console_script_is_the_cli_main() -> None:
    """``sse-pipeline`` (``pipeline.cli:main``) and ``python -m pipeline`` run one function."""
    import pipeline.cli
    import pipeline.cli.commands

    assert pipeline.cli.main is pipeline.cli.commands.main
    assert callable(pipeline.cli.main)
