"""Test-wide settings.

Unit tests use small tensors, where torch's thread pool costs more than it saves on a 2-core machine
(measured: the training and sampler tests ran about 4x slower with 2 threads). Chapters run in their own
kernels and are not affected.
"""

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # diffusers is a reference only; nothing may reach the network
torch.set_num_threads(1)
