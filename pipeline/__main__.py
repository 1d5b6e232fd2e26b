"""``python -m pipeline``: the sse-pipeline command line."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
