"""Backbones: registry, shapes, input checks, pretrained weights offline, weights files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata
from torchvision.models._meta import _IMAGENET_CATEGORIES

from varsec.errors import ConfigError, ModelError
from varsec.vision import Backbone, create_backbone, known_backbones, register_backbone
from varsec.vision.weights import torchvision_cache_dir

BUILTINS = ["alexnet", "efficientnet-lite0", "fmnist-cnn", "resnet50", "vgg16"]


def test_registry_lists_the_builtin_backbones():
    assert set(BUILTINS) <= set(known_backbones())


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet51'") as info:
        create_backbone("resnet51")
    for name in BUILTINS:
        assert name in str(info.value)


def test_unknown_backbone_argument_is_named():
    with pytest.raises(ConfigError, match="no argument 'depth'.*accepted: .*num_classes"):
        create_backbone("fmnist-cnn", depth=3)


def test_register_rejects_non_backbones_and_duplicates():
    known_backbones()
    with pytest.raises(TypeError):
        register_backbone("not-a-backbone")(int)
    with pytest.raises(ConfigError, match="already registered"):
        register_backbone("fmnist-cnn")(type("Other", (Backbone,), {}))


def test_fmnist_cnn_shapes_layers_and_stages():
    model = create_backbone("fmnist-cnn").eval()
    x = torch.rand(4, 1, 28, 28)
    assert model.features(x).shape == (4, 64) and model.feature_dim == 64
    assert model.features(x, "logits").shape == (4, 10)
    assert model.logits(x).shape == (4, 10)
    torch.testing.assert_close(model(x), model.logits(x))
    stages = model.stages(x)
    assert [s.shape[1] for s in stages] == [16, 16, 32, 64]
    assert [s.shape[-1] for s in stages] == [14, 14, 7, 4]
    wide = create_backbone("fmnist-cnn", widths=[32, 64, 128], blocks=[2, 1, 1])
    assert wide.feature_dim == 128 and len(wide.layers[0]) == 2
    assert model.feature_layer == "pool" and model.input_channels == 1


def test_fmnist_cnn_takes_32px_and_three_channels_when_built_for_them():
    model = create_backbone("fmnist-cnn", in_channels=3, num_classes=5).eval()
    assert model.logits(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert model.logits(torch.rand(2, 1, 30, 30)).shape == (2, 5)  # grey repeated to RGB


@pytest.mark.parametrize(
    ("shape", "dtype", "match"),
    [
        ((2, 3, 28, 28), torch.float32, "takes 1-channel images, got 3 channels"),
        ((2, 2, 28, 28), torch.float32, "got 2 channels"),
        ((2, 1, 64, 64), torch.float32, "28 to 32 pixels per side, got 64 x 64"),
        ((2, 1, 20, 28), torch.float32, "got 20 x 28"),
        ((1, 28, 28), torch.float32, r"N x C x H x W tensor, got \(1, 28, 28\)"),
        ((2, 1, 28, 28), torch.uint8, "float32 in \\[0, 1\\], got torch.uint8"),
    ],
)
def test_fmnist_cnn_rejects_images_it_cannot_take(shape, dtype, match):
    model = create_backbone("fmnist-cnn")
    with pytest.raises(ConfigError, match=match):
        model.features(torch.zeros(shape, dtype=dtype))


def test_unknown_layer_lists_the_known_layers():
    with pytest.raises(ConfigError, match="no layer 'fc7' \\(known: pool, logits\\)"):
        create_backbone("fmnist-cnn").features(torch.rand(1, 1, 28, 28), "fc7")


def test_bad_architecture_arguments():
    with pytest.raises(ConfigError, match="in_channels must be 1 or 3, got 4"):
        create_backbone("fmnist-cnn", in_channels=4)
    with pytest.raises(ConfigError, match="num_classes must be at least 2"):
        create_backbone("fmnist-cnn", num_classes=1)


def _photo(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255


def test_efficientnet_lite0_is_really_imagenet_pretrained():
    # ImageNet class ids checked explicitly: 281-285 are the domestic cats, 967/968 espresso/cup.
    assert _IMAGENET_CATEGORIES[281:286] == [
        "tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"
    ]
    assert _IMAGENET_CATEGORIES[967:969] == ["espresso", "cup"]
    model = create_backbone("efficientnet-lite0").eval()
    with torch.no_grad():
        cat = model.logits(_photo(skdata.chelsea())).softmax(1)  # 300 x 451, resized inside
        coffee = model.logits(_photo(skdata.coffee())).softmax(1)
    assert int(cat.argmax()) in range(281, 286) and float(cat[0, 281:286].sum()) > 0.8
    assert int(coffee.argmax()) in (967, 968) and float(coffee[0, 967:969].sum()) > 0.8


def test_efficientnet_lite0_features_stages_and_grey_input():
    model = create_backbone("efficientnet-lite0").eval()
    with torch.no_grad():
        grey = torch.rand(2, 1, 28, 28)
        assert model.features(grey).shape == (2, 1280)
        torch.testing.assert_close(model.features(grey), model.features(grey.repeat(1, 3, 1, 1)))
        sizes = [s.shape[-1] for s in model.stages(grey)]
    assert sizes == [112, 56, 28, 14, 7]
    with pytest.raises(ConfigError, match="16 to 4096 pixels per side, got 8 x 8"):
        model.features(torch.rand(1, 3, 8, 8))


def test_efficientnet_lite0_new_head_keeps_pretrained_trunk():
    model = create_backbone("efficientnet-lite0", num_classes=10).eval()
    reference = create_backbone("efficientnet-lite0").eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), reference.features(x))
    assert model.logits(x).shape == (1, 10)


def test_efficientnet_lite0_input_size_runs_the_same_weights_at_another_side(tmp_path):
    from varsec.vision.checkpoint import load_checkpoint, save_checkpoint

    small = create_backbone("efficientnet-lite0", input_size=64).eval()
    reference = create_backbone("efficientnet-lite0").eval()
    x = torch.rand(2, 3, 64, 64)  # already at 64 px: no resize inside the small one
    prepared = ((x - reference._mean) / reference._std).contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(small.features(x), reference._forward(prepared, "pool"))
        assert [s.shape[-1] for s in small.stages(torch.rand(1, 1, 28, 28))] == [32, 16, 8, 4, 2]
    assert small.weights_hash() != reference.weights_hash()
    assert reference.arch_config == {"num_classes": 1000}  # 224 px checkpoints keep their hash
    save_checkpoint(tmp_path / "small.pt", small)
    again = load_checkpoint(tmp_path / "small.pt").backbone
    assert again.image_size == 64


@pytest.mark.parametrize("size", [16, 31, 225, 64.0, True])
def test_efficientnet_lite0_refuses_an_input_size_outside_32_to_224(size):
    with pytest.raises(ConfigError, match=r"input_size must be an integer from 32 to 224"):
        create_backbone("efficientnet-lite0", input_size=size, weights=None)


@pytest.mark.parametrize(
    ("name", "filename"),
    [
        ("resnet50", "resnet50-0676ba61.pth"),
        ("alexnet", "alexnet-owt-7be5be79.pth"),
        ("vgg16", "vgg16-397923af.pth"),
    ],
)
def test_missing_torchvision_weights_say_which_file_goes_where(name, filename, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected_dir = tmp_path / "hub" / "checkpoints"
    assert torchvision_cache_dir() == expected_dir
    with pytest.raises(ModelError) as info:
        create_backbone(name)
    message = str(info.value)
    assert f"place {filename}" in message and str(expected_dir) in message
    assert "weights=PATH" in message


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    """A randomly initialised resnet50 state dict saved as a plain .pth file."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50-random.pth"
    net = resnet50(weights=None)
    torch.save(net.state_dict(), path)
    return path, net.fc.weight.detach().clone()


def test_torchvision_weights_load_from_a_file(resnet_weights):
    path, fc_weight = resnet_weights
    model = create_backbone("resnet50", weights=str(path)).eval()
    torch.testing.assert_close(model.net.fc.weight, fc_weight)
    with torch.no_grad():
        x = torch.rand(1, 1, 28, 28)
        assert model.features(x).shape == (1, 2048) and model.logits(x).shape == (1, 1000)
        assert [s.shape[1] for s in model.stages(x)] == [64, 256, 512, 1024, 2048]


def test_torchvision_cache_is_used_and_checksum_verified(resnet_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet50-0676ba61.pth").write_bytes(resnet_weights[0].read_bytes())
    with pytest.raises(ModelError, match="sha256 does not start with 0676ba61"):
        create_backbone("resnet50")


def test_weights_for_another_architecture_are_a_clear_error(tmp_path):
    path = tmp_path / "fmnist.pth"
    torch.save(create_backbone("fmnist-cnn").state_dict(), path)
    with pytest.raises(ModelError, match=r"fmnist.pth: weights are not for the resnet50 arch"):
        create_backbone("resnet50", weights=str(path))
    with pytest.raises(ModelError, match="not for the efficientnet-lite0 architecture"):
        create_backbone("efficientnet-lite0", weights=str(path))


def test_missing_and_unreadable_weights_files(tmp_path):
    with pytest.raises(ModelError, match="nope.pth: no such resnet50 weights file"):
        create_backbone("resnet50", weights=str(tmp_path / "nope.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(ModelError, match="garbage.pth: not a readable alexnet weights file"):
        create_backbone("alexnet", weights=str(garbage))


def test_weights_hash_changes_with_weights():
    a, b = create_backbone("fmnist-cnn"), create_backbone("fmnist-cnn")
    assert a.weights_hash() != b.weights_hash()
    b.load_state_dict(a.state_dict())
    assert a.weights_hash() == b.weights_hash()
