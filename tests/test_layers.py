"""The layer rule (DESIGN.md section 9): each folder of ``pipeline/`` is one layer, and a layer may
import from the package only itself and the layers ``LAYERS`` lists for it, never the root face.
``forbidden`` names the third-party packages a layer must not import at run time: imports under
``if TYPE_CHECKING:`` do not count, imports inside functions do. coredis lives in ``redis_jobs`` alone,
only ``cli/demo.py`` imports ``plugins``, and ``plugins/`` sees nothing but the public face.
Modules are found by walking the tree, so a new module is covered as is; a new folder fails until listed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = "LAYERS in tests/test_layers.py"


@dataclass(frozen=True)
class Layer:
    """What one layer may import: package layers (``None``: anything) and third-party packages."""

    may_import: tuple[str, ...] | None
    forbidden: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()  # dotted prefixes allowed in spite of ``forbidden``


LAYERS: dict[str, Layer] = {
    "errors": Layer((), ("anyio", "trio", "asyncio", "httpx", "h11", "structlog", "coredis")),
    "logs": Layer((), ("anyio", "trio", "asyncio", "httpx", "h11", "coredis")),
    "core": Layer(("errors",), ("anyio", "trio", "asyncio", "httpx", "h11", "structlog", "coredis")),
    "testing": Layer(
        (), ("anyio", "trio", "asyncio", "httpx", "h11", "structlog", "coredis"), allowed=("anyio.lowlevel",)
    ),
    "providers": Layer(("core", "errors"), ("anyio", "trio", "asyncio", "httpx", "h11", "structlog", "coredis")),
    "fake_server": Layer(("testing", "core", "errors"), ("httpx", "structlog", "coredis", "trio", "asyncio")),
    "stages": Layer(
        ("core", "providers", "errors"), ("anyio", "trio", "asyncio", "httpx", "h11", "structlog", "coredis")
    ),
    "runtime": Layer(("stages", "providers", "core", "errors"), ("httpx", "h11", "coredis", "trio", "asyncio")),
    "client": Layer(("runtime", "core", "errors"), ("coredis", "trio", "h11", "asyncio")),
    "worker": Layer(("client", "runtime", "core", "errors", "logs"), ("coredis", "trio", "httpx", "asyncio")),
    "redis_jobs": Layer(("worker", "client", "runtime", "core", "errors", "logs"), ("trio", "asyncio")),
    "relay": Layer(("worker", "client", "runtime", "core", "errors", "logs"), ("coredis", "trio", "asyncio")),
    "cli": Layer(None),
    "pipeline": Layer(None),  # the root face, pipeline/__init__.py
    "__main__": Layer(None),
}

ONLY_IN: dict[str, tuple[str, ...]] = {"coredis": ("redis_jobs",)}  # third party one layer alone may import
PLUGIN_IMPORTERS = ("pipeline/cli/demo.py",)  # the only modules of pipeline/ that may import plugins
PUBLIC_FACE = (
    "pipeline",
    "pipeline.errors",
    "pipeline.testing",
    "pipeline.fake_server",
    "pipeline.redis_jobs",
    "pipeline.client",
    "pipeline.worker",
    "pipeline.providers.anthropic",
)  # the modules plugins/ may import from pipeline (names starting with "_" never)

Reason = Callable[[str, str], str | None]


def is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` test is ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def runtime_imports(nodes: Iterable[ast.AST]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements under ``nodes`` that run, skipping the bodies of ``if TYPE_CHECKING:``."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and is_type_checking(node.test):
            yield from runtime_imports(node.orelse)
        else:
            yield from runtime_imports(ast.iter_child_nodes(node))


def is_module(root: Path, dotted: str) -> bool:
    """Whether ``dotted`` names a module or package of the tree at ``root``."""
    path = root.joinpath(*dotted.split("."))
    return path.with_name(path.name + ".py").is_file() or (path / "__init__.py").is_file()


def resolve(node: ast.ImportFrom, package: tuple[str, ...]) -> str:
    """The absolute module a ``from ... import`` reads, relative levels resolved against ``package``."""
    if node.level == 0:
        return node.module or ""
    base = package[: len(package) - node.level + 1]
    return ".".join((*base, node.module) if node.module else base)


def targets(node: ast.Import | ast.ImportFrom, package: tuple[str, ...], root: Path) -> Iterator[tuple[str, str]]:
    """(module, full name) per name an import binds: the module it loads, and that module plus the name."""
    if isinstance(node, ast.Import):
        yield from ((alias.name, alias.name) for alias in node.names)
        return
    base = resolve(node, package)
    for alias in node.names:
        full = base if alias.name == "*" else f"{base}.{alias.name}"
        yield (full if is_module(root, full) else base), full


def layer_of(module: str) -> str:
    """The layer of a ``pipeline...`` module; the root face and its names are ``pipeline``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "pipeline"


def source_layer(rel: Path) -> str:
    """The layer of a file of ``pipeline/``: its folder, or the stem of a top-level module."""
    if len(rel.parts) > 2:
        return rel.parts[1]
    return "pipeline" if rel.name == "__init__.py" else rel.stem


def under(name: str, prefix: str) -> bool:
    """Whether dotted ``name`` is ``prefix`` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def layer_reason(layer: str, rel: str) -> Reason:
    """Why an import of a module of layer ``layer`` (file ``rel``) breaks the rule, or ``None``."""
    rule = LAYERS[layer]

    def reason(module: str, full: str) -> str | None:
        top = module.split(".")[0]
        if top == "pipeline":
            target = layer_of(module)
            if rule.may_import is None or target == layer or target in rule.may_import:
                return None
            return f"{layer} may import {', '.join(rule.may_import) or 'nothing of pipeline'}"
        if top == "plugins":
            return None if rel in PLUGIN_IMPORTERS else f"only {', '.join(PLUGIN_IMPORTERS)} may import plugins"
        if top in ONLY_IN and layer not in ONLY_IN[top]:
            return f"{top} is allowed only in {', '.join(ONLY_IN[top])}"
        if top in rule.forbidden and not any(under(full, prefix) for prefix in rule.allowed):
            only = f"; only {', '.join(rule.allowed)} is allowed" if rule.allowed else ""
            return f"{top} is forbidden in {layer} at run time{only}"
        return None

    return reason


def plugin_reason(module: str, full: str) -> str | None:
    """Why an import in ``plugins/`` reaches past the public face, or ``None``."""
    if module.split(".")[0] != "pipeline":
        return None
    if module in PUBLIC_FACE and not any(part.startswith("_") for part in full.split(".")):
        return None
    return f"plugins may import only the public face: {', '.join(PUBLIC_FACE)}"


def sources(root: Path) -> list[Path]:
    """Every Python file of ``pipeline/`` and ``plugins/`` under ``root``, in a stable order."""
    return sorted((root / "pipeline").rglob("*.py")) + sorted((root / "plugins").rglob("*.py"))


def file_violations(root: Path, path: Path) -> Iterator[str]:
    """The lines reporting each import of one file that breaks the rule."""
    rel = path.relative_to(root)
    reason: Reason
    if rel.parts[0] == "plugins":
        reason = plugin_reason
    elif (layer := source_layer(rel)) in LAYERS:
        reason = layer_reason(layer, rel.as_posix())
    else:
        place = f"pipeline/{layer}/" if len(rel.parts) > 2 else rel.as_posix()
        yield f"{place} is in no layer: add it to {TABLE}"
        return
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in runtime_imports([tree]):
        for module, full in targets(node, rel.parts[:-1], root):
            if why := reason(module, full):
                yield f"{rel.as_posix()}:{node.lineno} imports {module} ({why})"


def violations(root: Path) -> list[str]:
    """Every breach of the layer rule in the ``pipeline/`` and ``plugins/`` under ``root``, one line each."""
    found = (line for path in sources(root) for line in file_violations(root, path))
    return list(dict.fromkeys(found))


def test_the_package_keeps_the_layer_rule() -> None:
    """No module of pipeline/ or plugins/ imports what its layer may not import."""
    walked = {path.relative_to(ROOT).as_posix() for path in sources(ROOT)}
    assert {"pipeline/__init__.py", "plugins/__init__.py"} <= walked
    found = violations(ROOT)
    assert found == [], "the layer rule is broken:\n" + "\n".join(found)


def test_the_table_names_only_its_own_layers() -> None:
    """Every layer a rule allows, and every layer ONLY_IN names, is itself a row of the table."""
    named = {name for rule in LAYERS.values() for name in rule.may_import or ()}
    named |= {name for layers in ONLY_IN.values() for name in layers}
    assert named <= set(LAYERS), named - set(LAYERS)


FACE = ", ".join(PUBLIC_FACE)
TYPE_CHECKED_ANYIO = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from anyio.abc import TaskGroup\n"
# (id, files of the fake tree, what violations() reports): one forbidden import each, or none
CASES = [
    (
        "core-imports-anyio",
        {"pipeline/core/x.py": "import anyio\n"},
        ["pipeline/core/x.py:1 imports anyio (anyio is forbidden in core at run time)"],
    ),
    (
        "core-imports-runtime",
        {"pipeline/core/x.py": '"""Doc."""\n\nfrom ..runtime.bus import EVERY_EVENT\n'},
        ["pipeline/core/x.py:3 imports pipeline.runtime.bus (core may import errors)"],
    ),
    (
        "core-imports-itself-and-errors",
        {
            "pipeline/core/__init__.py": "from . import x\nfrom .x import y\n",
            "pipeline/core/x.py": "from ..errors import E\n",
        },
        [],
    ),
    (
        "stages-imports-anyio-at-run-time",
        {"pipeline/stages/x.py": "import anyio.abc\n"},
        ["pipeline/stages/x.py:1 imports anyio.abc (anyio is forbidden in stages at run time)"],
    ),
    ("stages-imports-anyio-for-typing", {"pipeline/stages/x.py": TYPE_CHECKED_ANYIO}, []),
    (
        "stages-imports-anyio-under-typing.TYPE_CHECKING",
        {"pipeline/stages/x.py": "import typing\n\nif typing.TYPE_CHECKING:\n    import anyio\n"},
        [],
    ),
    (
        "stages-imports-anyio-in-the-else-of-TYPE_CHECKING",
        {"pipeline/stages/x.py": "import typing\n\nif typing.TYPE_CHECKING:\n    pass\nelse:\n    import anyio\n"},
        ["pipeline/stages/x.py:6 imports anyio (anyio is forbidden in stages at run time)"],
    ),
    (
        "stages-imports-the-root-face",
        {"pipeline/stages/x.py": "from .. import __version__\n"},
        ["pipeline/stages/x.py:1 imports pipeline (stages may import core, providers, errors)"],
    ),
    (
        "runtime-imports-httpx-lazily",
        {"pipeline/runtime/x.py": "def f() -> None:\n    import httpx\n"},
        ["pipeline/runtime/x.py:2 imports httpx (httpx is forbidden in runtime at run time)"],
    ),
    (
        "providers-imports-testing",
        {"pipeline/providers/x.py": "from .. import testing\n", "pipeline/testing/__init__.py": ""},
        ["pipeline/providers/x.py:1 imports pipeline.testing (providers may import core, errors)"],
    ),
    (
        "errors-imports-core-at-run-time",
        {"pipeline/errors.py": "from .core.message import Message\n"},
        ["pipeline/errors.py:1 imports pipeline.core.message (errors may import nothing of pipeline)"],
    ),
    (
        "errors-imports-core-for-typing",
        {"pipeline/errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .core import message\n"},
        [],
    ),
    (
        "testing-imports-anyio.lowlevel",
        {"pipeline/testing/x.py": "import anyio.lowlevel\nfrom anyio import lowlevel\nfrom anyio.lowlevel import f\n"},
        [],
    ),
    (
        "testing-imports-the-rest-of-anyio",
        {"pipeline/testing/x.py": "from anyio import sleep\n"},
        [
            "pipeline/testing/x.py:1 imports anyio"
            " (anyio is forbidden in testing at run time; only anyio.lowlevel is allowed)"
        ],
    ),
    (
        "worker-imports-coredis",
        {"pipeline/worker/x.py": "import coredis\n"},
        ["pipeline/worker/x.py:1 imports coredis (coredis is allowed only in redis_jobs)"],
    ),
    (
        "cli-imports-coredis",
        {"pipeline/cli/x.py": "from coredis import Redis\n"},
        ["pipeline/cli/x.py:1 imports coredis (coredis is allowed only in redis_jobs)"],
    ),
    (
        "relay-imports-coredis",
        {"pipeline/relay/x.py": "import coredis\n"},
        ["pipeline/relay/x.py:1 imports coredis (coredis is allowed only in redis_jobs)"],
    ),
    (
        "redis_jobs-imports-coredis",
        {"pipeline/redis_jobs/x.py": "try:\n    import coredis\nexcept ImportError:\n    raise\n"},
        [],
    ),
    (
        "plugin-imports-core",
        {"plugins/x.py": "from pipeline.core.events import TextEvent\n"},
        [f"plugins/x.py:1 imports pipeline.core.events (plugins may import only the public face: {FACE})"],
    ),
    (
        "plugin-imports-core-from-the-face",
        {"plugins/x.py": "from pipeline import core\n", "pipeline/core/__init__.py": ""},
        [f"plugins/x.py:1 imports pipeline.core (plugins may import only the public face: {FACE})"],
    ),
    (
        "plugin-imports-a-private-name",
        {"plugins/x.py": "from pipeline.testing import _private\n"},
        [f"plugins/x.py:1 imports pipeline.testing (plugins may import only the public face: {FACE})"],
    ),
    (
        "plugin-imports-the-public-face",
        {
            "plugins/x.py": "import pipeline\nfrom pipeline import TextEvent, errors\nfrom . import y\n"
            "from pipeline.providers.anthropic import AnthropicParser\nfrom pipeline.testing import Body\n",
            "pipeline/errors.py": "",
        },
        [],
    ),
    (
        "plugin-imports-a-module-inside-a-public-package",
        {"plugins/x.py": "from pipeline.testing import bodies\n", "pipeline/testing/bodies.py": ""},
        [f"plugins/x.py:1 imports pipeline.testing.bodies (plugins may import only the public face: {FACE})"],
    ),
    (
        "cli-module-other-than-demo-imports-plugins",
        {"pipeline/cli/main.py": "from plugins.console import ConsolePrinter\n"},
        ["pipeline/cli/main.py:1 imports plugins.console (only pipeline/cli/demo.py may import plugins)"],
    ),
    (
        "cli-demo-imports-plugins",
        {"pipeline/cli/demo.py": "from plugins.console import ConsolePrinter\nfrom ..runtime import bus\n"},
        [],
    ),
    (
        "unknown-folder",
        {"pipeline/mystery/x.py": "import os\n", "pipeline/mystery/y.py": "import os\n"},
        ["pipeline/mystery/ is in no layer: add it to LAYERS in tests/test_layers.py"],
    ),
    (
        "unknown-top-level-module",
        {"pipeline/encode.py": "import os\n"},
        ["pipeline/encode.py is in no layer: add it to LAYERS in tests/test_layers.py"],
    ),
]


@pytest.mark.parametrize(("files", "expected"), [pytest.param(f, e, id=i) for i, f, e in CASES])
def test_violations_reports_exactly_the_breach(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    """violations() reports each forbidden import of a fake tree, and nothing that is allowed."""
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert violations(tmp_path) == expected
