"""Shared test set-up."""

import importlib.util
import os
from pathlib import Path

import pytest

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
