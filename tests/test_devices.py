"""varsec.devices: one rule for a named device, checked before compute at every entry point;
where a model's tensors live; seeded RNG blocks that restore the global state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from varsec.devices import check_device, device_problem, module_device, seeded
from varsec.errors import ConfigError


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine with one CUDA device (only the checks are asked, nothing runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_cpu_and_none_are_the_cpu():
    assert check_device(None) == check_device("cpu") == check_device(torch.device("cpu"))
    assert check_device(None).type == "cpu" and device_problem("cpu") is None


@pytest.mark.parametrize("value", ["abacus", "mps", "meta", "", 3, "cuda:x"])
def test_anything_but_cpu_or_cuda_is_one_sentence(value):
    with pytest.raises(ConfigError) as info:
        check_device(value)
    assert str(info.value) == f"device must be cpu, cuda or cuda:N, got {str(value)!r}."


@pytest.mark.usefixtures("no_cuda")
@pytest.mark.parametrize("value", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_cuda_names_the_value(value):
    with pytest.raises(ConfigError, match=f"^recommender device {str(value)!r} needs CUDA, "
                                          "which this machine does not have; use cpu.$"):
        check_device(value, "recommender device")


@pytest.mark.usefixtures("one_gpu")
def test_a_cuda_index_beyond_the_machine():
    assert check_device("cuda") == torch.device("cuda")
    assert check_device("cuda:0") == torch.device("cuda", 0)
    assert device_problem("cuda:2") == ("'cuda:2' names CUDA device 2, but this machine has 1 "
                                        "(cuda:0 to cuda:0).")


@pytest.mark.usefixtures("no_cuda")
def test_every_entry_point_refuses_cuda_before_compute(tmp_path):
    from varsec.attacks import ClassifierObjective, FGSMStep, run_attack
    from varsec.defenses import JPEG, DefenseConfig, defend_images
    from varsec.recsys import create_recommender
    from varsec.study.schema import load_study_text
    from varsec.vision import TrainConfig, create_backbone, open_backbone, save_checkpoint

    message = "device 'cuda' needs CUDA"
    model = nn.Linear(4, 2)
    images = torch.zeros(1, 1, 2, 2, dtype=torch.uint8)
    with pytest.raises(ConfigError, match=message):
        run_attack(ClassifierObjective(lambda x: model(x.flatten(1)), [0]), images,
                   FGSMStep(8), device="cuda")
    with pytest.raises(ConfigError, match=message):
        defend_images(JPEG(50), images, device="cuda")
    with pytest.raises(ConfigError, match=message):
        DefenseConfig(device="cuda")
    with pytest.raises(ConfigError, match=message):
        TrainConfig(device="cuda")
    with pytest.raises(ConfigError, match=f"BPRMF parameter {message}"):
        create_recommender("bpr-mf", device="cuda")
    path = tmp_path / "cnn.pt"
    save_checkpoint(path, create_backbone("fmnist-cnn"))
    with pytest.raises(ConfigError, match=message):
        open_backbone(path, device="cuda")
    with pytest.raises(ConfigError, match=r"^<string>:2: device: 'cuda' needs CUDA, which this "
                                          "machine does not have; use cpu.$"):
        load_study_text("study: s\ndevice: cuda\n")


def test_module_device_finds_the_tensors():
    with_buffer = nn.BatchNorm1d(2, affine=False)
    assert list(with_buffer.parameters()) == []
    assert module_device(with_buffer) == torch.device("cpu")  # from its running_mean buffer
    empty, meta = nn.Identity(), nn.Linear(2, 2, device="meta")
    assert module_device(empty, meta) == torch.device("meta")  # the first that holds tensors
    assert module_device(meta.forward) == torch.device("meta")  # a bound method: its module

    class Holder:
        device = torch.device("meta")

    assert module_device(Holder()) == torch.device("meta")
    assert module_device(empty, object(), len) == torch.device("cpu")


def test_seeded_repeats_draws_and_restores_the_global_state():
    torch.manual_seed(5)
    expected_after = torch.rand(3)
    torch.manual_seed(5)
    with seeded(11):
        first = torch.rand(3)
    after = torch.rand(3)
    with seeded(11, torch.device("cpu")):
        again = torch.rand(3)
    assert torch.equal(first, again)
    assert torch.equal(after, expected_after)  # the block did not move the outer stream
