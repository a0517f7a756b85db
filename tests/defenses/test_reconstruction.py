"""The reconstruction network: architecture, sizes, losses, and the direction of training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from varsec.defenses import PerceptualLoss, ReconstructionNet, pixel_loss
from varsec.defenses.reconstruction import GlobalSelfAttention, ResidualBlock


def test_default_architecture_is_yins():
    net = ReconstructionNet(channels=3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].kernel_size == (9, 9) and convs[-1].kernel_size == (9, 9)
    assert convs[-2].kernel_size == (3, 3)  # the 3x3 convolution before the last 9x9
    assert all(c.kernel_size == (3, 3) for c in convs[1:-1])
    assert sum(isinstance(m, ResidualBlock) for m in net.modules()) == 9
    assert sum(isinstance(m, GlobalSelfAttention) for m in net.modules()) == 1
    assert all(c.stride == (1, 1) for c in convs)
    block = net.blocks[0].body
    kinds = [type(m).__name__ for m in block]
    assert kinds == ["Conv2d", "BatchNorm2d", "PReLU", "Conv2d", "BatchNorm2d"]


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 32, 32), (1, 3, 20, 30)])
def test_no_downsampling_and_same_size_out(shape):
    net = ReconstructionNet(channels=shape[1], width=8, blocks=2, heads=2).eval()
    sizes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[-2:])))
             for m in net.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d)]
    x = torch.rand(shape)
    with torch.no_grad():
        out = net(x)
    for hook in hooks:
        hook.remove()
    assert out.shape == x.shape
    assert set(sizes) == {shape[-2:]}
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_attention_is_global_over_positions():
    """Changing one pixel's features changes the attention output at a distant position."""
    block = GlobalSelfAttention(width=8, heads=2, max_tokens=1024).eval()
    x = torch.randn(1, 8, 6, 6)
    y = x.clone()
    y[0, :, 0, 0] += 5.0 * torch.randn(8)  # not a constant shift: LayerNorm removes those
    assert not torch.allclose(block(x)[0, :, 5, 5], block(y)[0, :, 5, 5])


def test_attention_pools_large_maps_and_keeps_their_size():
    block = GlobalSelfAttention(width=8, heads=2, max_tokens=64)
    assert block.grid(40, 40) == (8, 8)
    assert block(torch.randn(1, 8, 40, 40)).shape == (1, 8, 40, 40)


def test_starts_close_to_the_identity():
    torch.manual_seed(0)
    net = ReconstructionNet(channels=1, width=8, blocks=1, heads=2).eval()
    x = torch.rand(2, 1, 28, 28) * 0.8 + 0.1
    with torch.no_grad():
        assert float((net(x) - x).abs().mean()) < 0.05


def test_losses(tiny_extractor):
    clean = torch.rand(2, 1, 28, 28)
    assert float(pixel_loss(clean, clean)) == 0.0
    perceptual = PerceptualLoss(tiny_extractor, stages=(1, 2, 3))
    assert float(perceptual(clean, clean).detach()) == 0.0
    noisy = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1).requires_grad_(True)
    value = perceptual(noisy, clean)
    value.backward()
    assert float(value.detach()) > 0
    assert noisy.grad is not None and float(noisy.grad.abs().sum()) > 0


def test_reconstruction_lowers_the_attacked_loss_gap(tiny_defense, tiny_vbpr, tiny_dataset):
    """On held-out items never trained on: the BPR attack loss of T(adv) is closer to the
    clean loss than that of adv (002 Table 2's direction, tiny budget)."""
    from varsec.attacks.bpr_untargeted import BPRUntargeted
    from varsec.defenses import defend_images

    items = np.concatenate([tiny_defense.split.calibration, tiny_defense.split.test])
    objective = BPRUntargeted(tiny_vbpr, tiny_dataset, items)
    adv = tiny_defense.adversarial_images("fgsm", items)
    clean_loss = objective.evaluate(objective.images).mean()
    attacked_gap = float(objective.evaluate(adv).mean() - clean_loss)
    restored = defend_images(tiny_defense.reconstruction, adv)
    defended_gap = float(objective.evaluate(restored).mean() - clean_loss)
    assert attacked_gap > 0
    assert defended_gap < attacked_gap
