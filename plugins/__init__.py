"""First-party subscriber plugins for sse-pipeline; they use the public ``pipeline`` API only."""
