"""The public API: sorted ``__all__``, everything exported exists, plugins use it only."""

from __future__ import annotations

import ast
from pathlib import Path

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

