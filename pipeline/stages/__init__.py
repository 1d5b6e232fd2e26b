"""Composition of stages, sans-IO: the stage protocols and built-in specs, islands of fused
sync stages, the planner that decides fusion, and the hand-fused hot path of the default
chain.

Rule: imports ``core``, ``providers`` and ``errors`` only; no anyio at run time (its memory
streams appear in type hints only), no httpx, no structlog (tests/test_layers.py).
"""
