"""The shipped ``transfer`` study: every family crafted on a surrogate (the merchant's own
extractor, efficientnet-lite0's public weights, a pipeline fitted on the users it observes) and
measured on the platform's models; it plans at every profile, and its quick profile runs on the
tiny stand-in market with the public weights for real (at 32 px)."""

from __future__ import annotations

import warnings

import pytest
from study_standins import tiny_data_stages

from varsec.errors import VarsecWarning
from varsec.study.commands import find_study, shipped_studies
from varsec.study.plan import plan_study, transferred
from varsec.study.report import results_from_run
from varsec.study.schema import load_study


@pytest.mark.parametrize("profile", ["quick", "default", "paper"])
def test_the_transfer_study_plans_a_transfer_cell_per_family(profile):
    assert "transfer" in shipped_studies()
    with warnings.catch_warnings():
        warnings.simplefilter("error", VarsecWarning)  # e.g. steps x lr that cannot reach eps
        config = load_study(find_study("transfer"), profile=profile)
    cells = {(s.config["scenario"], s.labels["crafted_on"], s.labels["recommender"] or
              s.labels["extractor"]) for s in plan_study(config).of_kind("evaluation")
             if transferred(config, s.labels)}
    assert cells == {("promotion", "aip-sur", "aip"), ("promotion", "aip-obs", "aip"),
                     ("category", "cnn-sur", "vbpr"),
                     ("classifier", "cnn-sur", "cnn"), ("item2item", "cnn-sur", "cnn"),
                     ("item2item", "pub", "cnn")}
    extractors = config.extractors
    assert (extractors["cnn"].catalog_half, extractors["cnn-sur"].catalog_half) == (0, 1)
    assert extractors["cnn-sur"].seed_offset > 0  # the merchant's own seed
    public = extractors["pub"]
    assert (public.backbone, public.training) == ("efficientnet-lite0", "none")
    size = public.backbone_options["input_size"]
    assert size == (32 if profile == "quick" else 64)
    pairs = {config.attacks[a].n_items for a in ("i2i", "i2i-sur", "i2i-pub")}
    assert len(pairs) == 1  # the same pairs for every surrogate


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The quick profile on the stand-in market (tiny catalog, untrained cnn stand-ins) with
    efficientnet-lite0's public weights opened for real."""
    import torch

    from varsec.study.runner import run_study

    config = load_study(find_study("transfer"), profile="quick")
    config.report.enabled = False
    for name, attack in config.attacks.items():  # fewer steps and pairs: a unit test's budget
        attack.steps = min(attack.steps, 5)
        if name.startswith("i2i"):
            attack.n_items = 12
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tiny_data_stages():
            return run_study(config, tmp_path_factory.mktemp("transfer-quick"), log=None)
    finally:
        torch.set_num_threads(before)


def test_the_quick_profile_fills_every_transfer_table(quick_run):
    from varsec.study.report.ladder import ladder_table
    from varsec.study.report.transfer import (
        category_table,
        item2item_table,
        transfer_table,
        verdict_table,
    )

    assert quick_run.count("done") == len(quick_run.plan)
    results = results_from_run(quick_run)
    assert set(transfer_table(results).columns) == {"aip", "aip-sur", "aip-obs"}
    assert set(category_table(results).columns) == {"cnn", "cnn-sur"}
    assert set(item2item_table(results).columns) == {"cnn", "cnn-sur", "pub"}
    verdicts = verdict_table(results)
    assert set(zip(verdicts.index, verdicts["measured on"], strict=True)) == {
        ("promotion", "aip"), ("category", "cnn"), ("item2item", "cnn")}
    assert len(verdicts) == 6  # two HR_cold@5; success rate and CHR@20; two success@100
    assert verdicts["p"].astype(float).between(0, 1).all()
    public = verdicts[verdicts["attack"].str.startswith("i2i-pub")]
    assert list(public["crafted on"]) == ["efficientnet-lite0's public weights at 32 px"]
    ladder = ladder_table(results)
    assert set(ladder.loc[["transfer"], "knows"]) == {
        "a surrogate model, not the platform's: aip-sur (fitted on 30% of the users, on "
        "extractor cnn-sur (trained on one half of the catalog, seed +1))",
        "a surrogate model, not the platform's: aip-obs (fitted on 30% of the users, on "
        "extractor cnn (trained on one half of the catalog))"}
