"""Training a narrow fmnist-cnn on varying batch sizes with two threads must not corrupt memory.

With channels-last weights and fewer than 16 channels, oneDNN's convolution backward corrupted
the heap (an abort or a segfault within a few hundred steps); narrow models keep contiguous
weights. The training runs in a subprocess so that a crash fails this test, not the suite.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from varsec.vision.backbones.fmnist_cnn import CHANNELS_LAST_MIN_WIDTH
from varsec.vision.registry import create_backbone

_TRAIN = """
import torch
torch.set_num_threads(2)
from varsec.vision.registry import create_backbone
net = create_backbone("fmnist-cnn", widths={widths}, in_channels=1)
head = torch.nn.Linear(net.feature_dim, 16)
opt = torch.optim.Adam([*net.parameters(), *head.parameters()], 1e-3)
g = torch.Generator().manual_seed(0)
for step in range(300):
    x = torch.rand(int(torch.randint(50, 256, (1,), generator=g)), 1, 28, 28, generator=g)
    loss = head(net.features(x)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
print("trained")
"""


def _is_channels_last(net: torch.nn.Module) -> bool:
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)
                and m.in_channels > 1 and m.kernel_size == (3, 3))  # the two layouts differ
    return conv.weight.is_contiguous(memory_format=torch.channels_last) and \
        not conv.weight.is_contiguous()


def test_narrow_models_keep_contiguous_weights_wide_ones_channels_last():
    assert not _is_channels_last(create_backbone("fmnist-cnn", widths=[8, 16, 32]))
    assert _is_channels_last(create_backbone("fmnist-cnn", widths=[16, 32, 64]))
    assert CHANNELS_LAST_MIN_WIDTH == 16


@pytest.mark.parametrize("widths", [[8, 16, 32], [12, 24, 48]])
def test_narrow_models_train_on_varying_batches_without_crashing(widths):
    done = subprocess.run([sys.executable, "-c", _TRAIN.format(widths=widths)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "trained"
