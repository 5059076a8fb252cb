"""Shared test set-up."""

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests never write to the user's HOME: the saturation cache (llm_routing_env.scenarios) and
# matplotlib's font cache go to a directory of this session, inherited by the scripts tests run.
_SESSION_DIR = tempfile.mkdtemp(prefix="llm-routing-env-tests-")
atexit.register(shutil.rmtree, _SESSION_DIR, ignore_errors=True)
os.environ["LLM_ROUTING_ENV_CACHE"] = os.path.join(_SESSION_DIR, "cache")
os.environ["MPLCONFIGDIR"] = os.path.join(_SESSION_DIR, "matplotlib")

# The tests train tiny networks beside the simulator on a 2-core CI machine: extra BLAS / torch
# threads only contend for the cores (measured: 10-30x slower training steps under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # torch is an optional extra
    pass


@pytest.fixture
def load_example():
    """Import ``examples/NAME.py`` as a module (examples are scripts, not a package)."""

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def write_trace():
    """Write a CSV trace (``arrival_s,prompt_tokens,output_tokens``, exact floats; with
    ``prefix_blocks``, that column too: per request a string of block ids) and return its path."""

    def write(path, arrival_s, prompt_tokens, output_tokens, prefix_blocks=None) -> str:
        with open(path, "w") as f:
            f.write("arrival_s,prompt_tokens,output_tokens" + (",prefix_blocks" if prefix_blocks is not None else "") + "\n")
            for i, (t, p, o) in enumerate(zip(arrival_s, prompt_tokens, output_tokens)):
                tail = f",{prefix_blocks[i]}" if prefix_blocks is not None else ""
                f.write(f"{float(t)!r},{int(p)},{int(o)}{tail}\n")
        return str(path)

    return write
