"""Shared test set-up."""

import os

# The tests train tiny networks beside the simulator on a 2-core CI machine: extra BLAS / torch
# threads only contend for the cores (measured: 10-30x slower training steps under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # torch is an optional extra
    pass
