"""The one error path of every command-line entry point (evaluate.py, train.py, ``python -m
llm_routing_env.scenarios``, ``python -m llm_routing_env.predictors``, tools/, benchmarks/,
examples/).

A bad input (an unknown scenario, a malformed trace named on the command line or inside a scenario
file, a bad setting, a missing file) raises ValueError (TraceError is one) or OSError somewhere
below; :func:`entry_point` turns it into one line ``PROG: error: MESSAGE`` on stderr and exit code
2, as argparse does for a bad flag. Set ``LLM_ROUTING_ENV_TRACEBACK=1`` to get the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

USAGE_ERROR = 2  # argparse's exit code for bad usage


def entry_point(prog: str | None = None):
    """Decorate a CLI's ``main(argv=None)``: bad input becomes one line on stderr and exit code 2; the
    decorated main returns an exit code (main's int, else 0, e.g. for a result dict)."""

    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                code = main(*args, **kwargs)
            except (ValueError, OSError) as e:
                if os.environ.get("LLM_ROUTING_ENV_TRACEBACK"):
                    raise
                print(f"{prog or Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
                return USAGE_ERROR
            return code if isinstance(code, int) and not isinstance(code, bool) else 0

        run.unwrapped = main  # the undecorated main (returns what it returns, raises what it raises)
        return run

    return wrap
