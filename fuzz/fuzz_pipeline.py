"""Coverage-guided fuzzing of the parser, the accumulator and the derived events (atheris).

Opt-in, not run in CI::

    pip install atheris
    python fuzz/fuzz_pipeline.py -max_total_time=600 -timeout=10 fuzz/corpus

The corpus starts from every body of ``pipeline.testing.all_bodies()`` (written to the
corpus folder when it is empty). Each input is an SSE body after two bytes that choose how
it is cut into chunks. It runs through ``open_stream`` twice, with the default (fused) chain
and with every built-in stage in its own island, and fails (a "crash") when:

- anything but a :class:`pipeline.PipelineError` escapes (a bare ``ValueError``, ``KeyError``...);
- the two chains disagree on the events, the final message or the error type;
- an error's partial message is missing although ``message_start`` was delivered.

libFuzzer's ``-timeout`` turns a hang into a crash. RELIABILITY.md records the runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["pipeline", "harness"]):
    from harness import check_input

    from pipeline.testing import all_bodies


def _seed(corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for name, body in all_bodies(seed=1).items():
            for size in (0, 1, 17, 160):
                (corpus / f"{name}-{size}").write_bytes(size.to_bytes(2, "little") + body)


def main() -> None:
    dirs = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    for folder in map(Path, dirs):
        if not folder.is_file():  # a file names one input to run again (a crash)
            _seed(folder)
    atheris.Setup(sys.argv, check_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
