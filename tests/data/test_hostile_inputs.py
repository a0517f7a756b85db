"""Hostile inputs refused before any compute, each with one sentence (CLI: one `error:` line).

* folder images that leave the dataset folder (absolute paths, ``..``, symlinks), unless
  ``allow_outside`` / ``--allow-outside``;
* timestamps past int64 (``1e23``, ``inf``) in every loader that reads them;
* budgets below one 8-bit level (``eps=0.5``), which rounding to uint8 would silently undo;
* special files (a symlink to ``/dev/zero``, a FIFO) given where a regular file is expected,
  reported as what they are rather than as missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from varsec.cli import main
from varsec.data.dvbpr import read_interactions
from varsec.data.folder import load_folder
from varsec.data.sources import open_source
from varsec.data.vbpr import read_reviews
from varsec.errors import ConfigError, DataError, ModelError
from varsec.io import describe_non_regular, not_a_file_message


def _png(path: Path, seed: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (4, 4), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    return str(path)


def _folder(root: Path, images: list[str], stamps: list[str] | None = None) -> Path:
    """items.csv naming ``images`` as given (items a, b, ...) and a small interactions.csv."""
    root.mkdir(parents=True, exist_ok=True)
    ids = [chr(ord("a") + k) for k in range(len(images))]
    rows = "".join(f"{i},{image}\n" for i, image in zip(ids, images, strict=True))
    (root / "items.csv").write_text("item_id,image\n" + rows)
    stamps = stamps or [str(10 * (k + 1)) for k in range(len(ids))]
    lines = "".join(f"u{k % 2},{i},{t}\n" for k, (i, t) in enumerate(zip(ids, stamps, strict=True)))
    (root / "interactions.csv").write_text("user_id,item_id,timestamp\n" + lines)
    return root


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.fixture
def shop(tmp_path) -> Path:
    """A dataset folder beside an image that lies outside it."""
    _png(tmp_path / "shop" / "images" / "a.png")
    _png(tmp_path / "elsewhere" / "secret.png", seed=1)
    return tmp_path / "shop"


# -- folder images confined to the folder ---------------------------------------------------------
@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink-file", "symlink-dir"])
def test_folder_image_outside_the_folder_is_refused(shop, how):
    outside = shop.parent / "elsewhere" / "secret.png"
    if how == "absolute":
        image = str(outside)
    elif how == "dotdot":
        image = "images/../../elsewhere/secret.png"
    elif how == "symlink-file":
        (shop / "images" / "link.png").symlink_to(outside)
        image = "images/link.png"
    else:
        (shop / "images" / "sub").symlink_to(outside.parent, target_is_directory=True)
        image = "images/sub/secret.png"
    _folder(shop, ["images/a.png", image])
    with pytest.raises(DataError) as info:
        load_folder(shop)
    message = str(info.value)
    assert message.startswith(f"{shop / 'items.csv'}: image {image!r} of item 'b' (line 3) "
                              f"resolves to {os.path.realpath(outside)}, outside the dataset "
                              f"folder {os.path.realpath(shop)}")
    assert "--allow-outside" in message
    dataset = load_folder(shop, allow_outside=True)
    expected = np.asarray(Image.open(outside))
    np.testing.assert_array_equal(dataset.catalog.images[1, 0], expected)


def test_symlinks_that_stay_inside_the_folder_are_fine(shop):
    (shop / "images" / "alias.png").symlink_to(shop / "images" / "a.png")
    _folder(shop, ["images/a.png", "images/alias.png", "./images/../images/a.png"])
    dataset = load_folder(shop)
    assert len(dataset.catalog) == 3
    np.testing.assert_array_equal(dataset.catalog.images[0], dataset.catalog.images[1])


def test_a_folder_reached_through_a_symlink_still_loads(shop, tmp_path):
    _folder(shop, ["images/a.png"])
    (tmp_path / "link-to-shop").symlink_to(shop, target_is_directory=True)
    assert len(load_folder(tmp_path / "link-to-shop").catalog) == 1


def test_cli_data_info_refuses_outside_images_unless_allowed(shop, capsys):
    _folder(shop, ["images/a.png", "../elsewhere/secret.png"])
    for command in ("info", "validate"):
        assert main(["data", command, str(shop)]) == 2
        line = _one_error_line(capsys)
        assert "'../elsewhere/secret.png' of item 'b' (line 3) resolves to" in line
        assert "outside the dataset folder" in line
    assert main(["data", "info", str(shop), "--allow-outside"]) == 0
    assert "items: 2" in capsys.readouterr().out
    assert main(["data", "validate", str(shop), "--allow-outside"]) == 0
    assert f"{shop}: valid" in capsys.readouterr().out


def test_cli_simulate_refuses_outside_images_unless_allowed(shop, tmp_path, capsys):
    _folder(shop, ["images/a.png", "../elsewhere/secret.png"])
    out = tmp_path / "sim"
    assert main(["data", "simulate", "--source", str(shop), "--out", str(out)]) == 2
    assert "outside the dataset folder" in _one_error_line(capsys)
    assert not out.exists()
    # Allowed, the folder loads; two items are too few to simulate, which is the next error.
    main(["data", "simulate", "--source", str(shop), "--out", str(out), "--allow-outside"])
    assert "outside the dataset folder" not in capsys.readouterr().err


def test_a_study_refuses_outside_images_unless_its_dataset_allows_them(shop):
    from varsec.study.builtin.data import build_dataset
    from varsec.study.plan import data_config
    from varsec.study.schema import load_study_text

    _folder(shop, ["images/a.png", "../elsewhere/secret.png"])
    text = f"study: s\ndataset: {{source: '{shop}'}}\n"
    config = data_config(load_study_text(text))
    assert "allow_outside" not in config  # absent from the data stage's key unless set
    with pytest.raises(DataError, match="outside the dataset folder"):
        build_dataset(config)
    allowed = data_config(load_study_text(text.replace("}", ", allow_outside: true}")))
    assert allowed["allow_outside"] is True
    with contextlib.suppress(DataError):  # two items are too few for what follows loading
        build_dataset(allowed)


def test_open_source_passes_allow_outside(shop):
    _folder(shop, ["images/a.png", "../elsewhere/secret.png"])
    with pytest.raises(DataError, match="outside the dataset folder"):
        open_source(shop)
    assert len(open_source(shop, allow_outside=True).catalog) == 2


# -- timestamps past int64 ------------------------------------------------------------------------
@pytest.mark.parametrize("stamp", ["1e23", "-1e23", "inf", "9.3e18"])
def test_folder_timestamp_past_int64_is_an_error_naming_line_and_value(shop, stamp):
    _folder(shop, ["images/a.png", "images/a.png"], stamps=["10", stamp])
    with pytest.raises(DataError) as info:
        load_folder(shop)
    shown = f"{float(stamp):g}"
    assert str(info.value) == (
        f"{shop / 'interactions.csv'}: column 'timestamp' on line 3 holds {shown}: expected a "
        "finite number of Unix seconds within the int64 range."
    )


def test_folder_timestamp_past_int64_mixed_with_iso_dates(shop):
    _folder(shop, ["images/a.png", "images/a.png"], stamps=["2020-01-01", "1e23"])
    with pytest.raises(DataError, match="on line 3 holds 1e\\+23: expected a finite number"):
        load_folder(shop)


def test_folder_negative_and_fractional_timestamps_are_kept(shop):
    _folder(shop, ["images/a.png", "images/a.png", "images/a.png"],
            stamps=["-86400", "1.9", "2020-01-01T00:00:00Z"])
    stamps = load_folder(shop).interactions.timestamp
    assert stamps.tolist() == [-86400, 1, 1577836800]


def test_folder_nan_timestamp_is_an_error(shop):
    _folder(shop, ["images/a.png", "images/a.png"], stamps=["10", "nan"])
    with pytest.raises(DataError, match="must hold integers or ISO dates, found 'nan' on line 3"):
        load_folder(shop)


def test_cli_timestamp_past_int64_is_one_error_line(shop, capsys):
    _folder(shop, ["images/a.png", "images/a.png"], stamps=["10", "1e23"])
    assert main(["data", "info", str(shop)]) == 2
    line = _one_error_line(capsys)
    assert line == (f"error: {shop / 'interactions.csv'}: column 'timestamp' on line 3 holds "
                    "1e+23: expected a finite number of Unix seconds within the int64 range.")


@pytest.mark.parametrize("stamp", [1e23, 10**23, "1e23", float("inf")])
def test_vbpr_review_time_past_int64(tmp_path, stamp):
    path = tmp_path / "reviews.json"
    records = [{"reviewerID": "u", "asin": "a", "unixReviewTime": 5},
               {"reviewerID": "u", "asin": "b", "unixReviewTime": stamp}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with pytest.raises(DataError) as info:
        read_reviews(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 2 'unixReviewTime' is ")
    assert message.endswith(": expected a finite number of Unix seconds within the int64 range.")


def test_vbpr_review_times_in_range_are_kept(tmp_path):
    path = tmp_path / "reviews.json"
    records = [{"reviewerID": "u", "asin": "a", "unixReviewTime": -5},
               {"reviewerID": "u", "asin": "b", "unixReviewTime": 2**62}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert read_reviews(path)["timestamp"].tolist() == [-5, 2**62]


def test_dvbpr_timestamp_past_int64(tmp_path):
    parts = [{"u1": [{"productid": 0, "time": 10}, {"productid": 1, "time": 1e23}]}, {}, {}]
    with pytest.raises(DataError, match=r"user_train \(user 'u1'\) 'time' is 1e\+23: expected"):
        read_interactions(parts, 2, tmp_path / "d.npy")
    parts[0]["u1"][1]["time"] = 20
    frame, timed = read_interactions(parts, 2, tmp_path / "d.npy")
    assert timed and frame["timestamp"].tolist() == [10, 20]


# -- eps below one 8-bit level --------------------------------------------------------------------
def test_attack_cli_eps_below_one_level_fails_before_any_model_is_loaded(tmp_path, capsys):
    out = tmp_path / "attack"
    status = main(["attack", "--checkpoint", str(tmp_path / "absent.pt"), "--eps", "0.5",
                   "--out", str(out)])
    assert status == 2
    line = _one_error_line(capsys)
    assert line == ("error: eps must lie in [1, 255] 8-bit levels (eps=8 means 8/255; rounding "
                    "to uint8 undoes a budget below one level), got 0.5.")
    assert not out.exists()


def test_attack_cli_l2_eps_below_one_level_is_refused_too(tmp_path, capsys):
    status = main(["attack", "--attack", "pgd-l2", "--checkpoint", str(tmp_path / "absent.pt"),
                   "--eps", "0.5", "--out", str(tmp_path / "attack")])
    assert status == 2
    assert "an L2 norm in 8-bit levels) must be at least 1" in _one_error_line(capsys)


@pytest.mark.parametrize("argv", [
    ["robustness", "--checkpoint", "absent.pt", "--eps", "2,0.5"],
    ["train-extractor", "--mode", "pgd-at", "--eps", "0.5", "--out", "m.pt"],
    ["train-extractor", "--eval-eps", "0.5", "--out", "m.pt"],
])
def test_vision_cli_eps_below_one_level(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "eps must lie in [1, 255] 8-bit levels" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_python_apis_refuse_eps_below_one_level_but_accept_small_steps():
    import torch

    from varsec.attacks import FGSM, PGD
    from varsec.attacks.engine import AdamStep, PGDStep
    from varsec.vision import pgd_linf
    from varsec.vision.training import TrainConfig

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    for make in (lambda: PGD(model, eps=0.5), lambda: FGSM(model, eps=0.99),
                 lambda: PGDStep(0.5), lambda: PGDStep(0.5, norm="l2"), lambda: AdamStep(0.5),
                 lambda: TrainConfig(mode="pgd-at", eps=0.5)):
        with pytest.raises(ConfigError, match=r"eps .*(\[1, 255\]|at least 1)"):
            make()
    images, labels = torch.rand(2, 1, 2, 2), torch.tensor([0, 1])
    adv = pgd_linf(model, images, labels, eps=1, alpha=0.25, steps=2)
    assert (adv - images).abs().max() <= 1 / 255 + 1e-6
    assert PGDStep(8, alpha=0.5).alpha == 0.5
    assert TrainConfig(mode="pgd-at", eps=1, alpha=0.5).alpha == 0.5


def _study(tmp_path: Path, attack: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(
        "study: hostile\n"
        "extractors:\n"
        "  cnn: {epochs: 1}\n"
        "attacks:\n"
        f"  p: {{kind: pgd, extractor: cnn, source_category: Sandal, "
        f"target_category: Sneaker, {attack}}}\n"
    )
    return path


def test_study_with_eps_below_one_level_is_refused_at_load(tmp_path, capsys):
    from varsec.study.schema import load_study

    path = _study(tmp_path, "eps: [8, 0.5]")
    with pytest.raises(ConfigError, match=re.escape(
            f"{path}:5: attacks.p.eps[1]: must lie in [1, 255] 8-bit levels")):
        load_study(path)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 2
    assert f"{path}:5: attacks.p.eps[1]: must lie in [1, 255]" in _one_error_line(capsys)
    assert not out.exists()


def test_study_step_size_below_one_level_is_fine(tmp_path):
    from varsec.study.schema import load_study

    assert load_study(_study(tmp_path, "eps: [8], alpha: 0.5")).attacks["p"].alpha == 0.5


# -- special files are named, not reported as missing ---------------------------------------------
@pytest.fixture
def zero_link(tmp_path) -> Path:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    link = tmp_path / "zero.pt"
    link.symlink_to("/dev/zero")
    return link


def test_describe_non_regular(tmp_path, zero_link):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "broken").symlink_to(tmp_path / "gone")
    (tmp_path / "file").write_text("x")
    assert describe_non_regular(zero_link) == (
        "is a symlink to /dev/zero, which is a character device, not a regular file")
    assert describe_non_regular(fifo) == "is a FIFO (named pipe), not a regular file"
    assert describe_non_regular(tmp_path) == "is a directory, not a regular file"
    broken = describe_non_regular(tmp_path / "broken")
    assert broken == f"is a broken symlink to {tmp_path / 'gone'}"
    assert describe_non_regular(tmp_path / "file") is None
    assert describe_non_regular(tmp_path / "nothing") is None
    assert not_a_file_message(tmp_path / "nothing", "no such file") == (
        f"{tmp_path / 'nothing'}: no such file.")
    assert not_a_file_message(fifo, "no such file") == (
        f"{fifo} is a FIFO (named pipe), not a regular file.")


ZERO = "is a symlink to /dev/zero, which is a character device, not a regular file."


def test_dev_zero_as_data_checkpoint_or_study_is_named(tmp_path, zero_link):
    from varsec.study.schema import load_study
    from varsec.vision.checkpoint import load_checkpoint

    with pytest.raises(ModelError, match=f"^{re.escape(str(zero_link))} {ZERO}$"):
        load_checkpoint(zero_link)
    with pytest.raises(DataError, match=f"^{re.escape(str(zero_link))} {ZERO}$"):
        open_source(zero_link)
    study = tmp_path / "study.yaml"
    study.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(study))} {ZERO}$"):
        load_study(study)
    reviews = tmp_path / "reviews.json"
    reviews.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=f"^{re.escape(str(reviews))} {ZERO}$"):
        read_reviews(reviews)


def test_dev_zero_as_a_folder_csv_or_image(shop, tmp_path):
    _folder(shop, ["images/a.png"])
    (shop / "interactions.csv").unlink()
    (shop / "interactions.csv").symlink_to("/dev/zero")
    with pytest.raises(DataError, match=re.escape(f"{shop / 'interactions.csv'} {ZERO}")):
        load_folder(shop)
    _folder(tmp_path / "other", ["images/zero.png"])
    (tmp_path / "other" / "images").mkdir()
    (tmp_path / "other" / "images" / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="resolves to /dev/zero, outside the dataset folder"):
        load_folder(tmp_path / "other")
    with pytest.raises(DataError, match=re.escape(
            "zero.png' of item 'a' (line 2) is a symlink to /dev/zero, which is a character "
            "device, not a regular file.")):
        load_folder(tmp_path / "other", allow_outside=True)


def test_cli_dev_zero_is_one_error_line(tmp_path, zero_link, capsys):
    assert main(["data", "info", str(zero_link)]) == 2
    assert _one_error_line(capsys) == f"error: {zero_link} {ZERO}"
    assert main(["robustness", "--checkpoint", str(zero_link)]) == 2
    assert _one_error_line(capsys) == f"error: {zero_link} {ZERO}"
    fifo = tmp_path / "items.json"
    os.mkfifo(fifo)
    assert main(["data", "info", str(fifo)]) == 2  # never opened: it would block
    assert _one_error_line(capsys) == f"error: {fifo} is a FIFO (named pipe), not a regular file."
