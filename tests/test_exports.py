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


def test_sans_io_modules_do_not_import_anyio() -> None:
    """Framing, events, decoding and folding stay sans-IO, as httpx's decoders are."""
    names = ("sse.py", "events.py", "message.py", "accumulate.py", "derive.py")
    for name in (*(f"core/{n}" for n in names), "providers/anthropic.py"):
        tree = ast.parse((ROOT / "pipeline" / name).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"anyio", "trio", "asyncio", "httpx"}, name
