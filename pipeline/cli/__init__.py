"""The ``sse-pipeline`` command line (also ``python -m pipeline``): ``commands`` parses and
runs the subcommands, ``demo`` is the many-streams demo.

Rule: the top layer; it may import anything of the package, and ``cli/demo.py`` alone may
import ``plugins`` (tests/test_layers.py).
"""

from __future__ import annotations

from .commands import main

__all__ = ["main"]
