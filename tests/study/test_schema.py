"""The study schema: defaults, descriptions, one clear error per bad config, the printed schema."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel
from study_standins import PIPELINE_MODELS

from varsec.errors import ConfigError
from varsec.study.commands import find_study, shipped_studies
from varsec.study.runner import dry_run
from varsec.study.schema import (
    StudyConfig,
    attack_family,
    load_study,
    load_study_text,
    schema_yaml,
    study_from_data,
)

# The pipeline's models plus an AMR on the extractor, and an INSA attack on the pipeline.
GOOD = "\nstudy: t\n" + PIPELINE_MODELS.replace(
    "  pipe:", "  amr: {kind: amr, extractor: cnn}\n  pipe:") + """attacks:
  insa:
    kind: insa
    recommender: pipe
    eps: [8, 32]
"""

# GOOD plus a dvbpr, an attack through vbpr and an item-to-item attack on the extractor (lines
# 9, 16-17); a defenses section starts on line 18, its first entry on line 19.
RECON = GOOD.replace("  pipe:", "  d: {kind: dvbpr}\n  pipe:") + \
    "  f: {kind: fgsm, objective: bpr, recommender: vbpr}\n" \
    "  p: {kind: pgd, extractor: cnn, items: pairs}\n"


def _models(model=StudyConfig, seen=None):
    seen = set() if seen is None else seen
    if model in seen:
        return seen
    seen.add(model)
    for field in model.model_fields.values():
        for arg in [field.annotation, *typing.get_args(field.annotation)]:
            for inner in [arg, *typing.get_args(arg)]:
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    _models(inner, seen)
    return seen


def test_every_field_has_a_default_and_a_description():
    for model in _models():
        assert model.model_config.get("extra") == "forbid", model
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            assert not field.is_required(), f"{model.__name__}.{name} has no default"


def test_an_empty_study_is_valid_and_fully_defaulted():
    config = study_from_data({})
    assert config.dataset.source == "fashion-mnist" and config.seeds == [0]
    assert [p.name for p in config.evaluation.protocols] == ["full", "sampled-100"]


def test_a_good_study_loads_with_eps_lists_and_single_names():
    config = load_study_text(GOOD)
    assert config.attacks["insa"].recommender == ["pipe"]
    assert config.attacks["insa"].eps == [8.0, 32.0]
    assert attack_family(config.attacks["insa"]) == "promotion"


@pytest.mark.parametrize(("text", "message"), [
    (GOOD.replace("recommender: pipe", "recommender: vbpr2"),
     "s.yaml:13: attacks.insa.recommender: 'vbpr2' is not a recommender of this study "
     "(known: bpr, vbpr, amr, pipe)."),
    (GOOD + "dataset: {profil: quick}\n",
     "s.yaml:15: dataset.profil: unknown key 'profil' (known: source, profile, seed, split, "
     "validation, k_core, reviews, features, trust_pickle, allow_outside, image_size, mode, "
     "n_users, n_warm_items, n_cold_items, popularity_look_correlation, as_is)."),
    (GOOD.replace("{epochs: 1}", "{epochs: two}"),
     "s.yaml:4: extractors.cnn.epochs: input should be a valid integer, unable to parse string "
     "as an integer (got 'two')."),
    (GOOD.replace("[8, 32]", "[8, 300]"),
     "s.yaml:14: attacks.insa.eps[1]: must lie in [1, 255] 8-bit levels (8 means 8/255; "
     "rounding to uint8 undoes a budget below one level), got 300."),
    (GOOD.replace("[8, 32]", "[0]"), "attacks.insa.eps[0]: must lie in [1, 255]"),
    (GOOD.replace("[8, 32]", "[8, 0.5]"), "s.yaml:14: attacks.insa.eps[1]: must lie in [1, 255]"),
    (GOOD.replace("extractor: cnn}\n  amr", "extractor: cnx}\n  amr"),
     "recommenders.vbpr.extractor: 'cnx' is not an extractor of this study (known: cnn, "
     "catalog)."),
    (GOOD.replace("kind: bpr-mf}", "kind: bpr-mf, params: {factorz: 3}}"),
     "recommenders.bpr.params.factorz: unknown bpr-mf parameter 'factorz'"),
    (GOOD.replace("kind: bpr-mf}", "kind: bpr-mf, params: {factors: -1}}"),
     "recommenders.bpr.params.factors: must be an integer >= 1, got -1."),
    (GOOD.replace("ranker: vbpr", "ranker: bpr"),
     "recommenders.pipe.ranker: the ranker must be a visual recommender"),
    (GOOD.replace("recommender: pipe", "recommender: vbpr"),
     "attacks.insa.recommender: insa promotes cold items through a two-stage recommender"),
    (GOOD + "  pgd: {kind: pgd, objective: classifier-targeted, extractor: cnn}\n",
     "attacks.pgd.source_category: a targeted classifier attack needs"),
    (GOOD + "defenses:\n  j: {kind: jpeg, strengths: [101]}\n",
     "defenses.j.strengths[0]: JPEG compression parameter quality must be an integer >= 1 and "
     "<= 95, got 101."),
    (GOOD + "defenses:\n  j: {kind: jpeg, attacks: [nope]}\n",
     "defenses.j.attacks[0]: 'nope' is not an attack of this study (known: insa)."),
    (GOOD + "defenses:\n  at: {kind: adversarial-training, extractor: [cnn]}\n",
     "defenses.at.extractor[0]: extractor 'cnn' is not adversarially trained"),
    (GOOD + "seeds: [1, 1]\n", "seeds: seeds must be a non-empty list of distinct integers."),
    (RECON + "defenses:\n  r: {kind: reconstruction, attacks: [f], params: {widht: 8}}\n",
     "s.yaml:19: defenses.r.params.widht: unknown reconstruction parameter 'widht' (known: eps,"),
    (RECON + "defenses:\n  r: {kind: reconstruction, params: {width: 0}}\n",
     "s.yaml:19: defenses.r.params.width: width must be an integer >= 1, got 0."),
    (RECON + "defenses:\n  r: {kind: reconstruction, params: {seed: 3}}\n",
     "defenses.r.params.seed: seed is set by the study (seeds / device), not per defense."),
    (RECON + "defenses:\n  r:\n    kind: reconstruction\n    params:\n"
     "      random_resize_pad: 2\n",
     "s.yaml:22: defenses.r.params.random_resize_pad: must be true, false or a resize ratio in "
     "(0, 1], got 2."),
    (RECON + "defenses:\n  r: {kind: reconstruction, params: {detection_eps: [16, 300]}}\n",
     "defenses.r.params.detection_eps: must be a list of eps in [1, 255] 8-bit levels"),
    (RECON + "defenses:\n  r: {kind: reconstruction, params: {recon_epochs: 0, mix_epochs: 0}}\n",
     "defenses.r.params: the reconstruction network needs at least one epoch"),
    (RECON + "defenses:\n  r: {kind: reconstruction, attacks: [f, p]}\n",
     "defenses.r.attacks[1]: the reconstruction defense is trained against the recommender an "
     "attack goes through; 'p' attacks extractor(s) cnn."),
    (RECON + "  fd: {kind: fgsm, objective: bpr, recommender: d}\n"
     "defenses:\n  r: {kind: reconstruction, attacks: [fd]}\n",
     "defenses.r.attacks[0]: the reconstruction defense is trained against a vbpr or amr "
     "recommender on a study extractor; 'fd' goes through 'd' (a dvbpr)."),
    ("extractors: {cnn: {}}\nattacks:\n  p: {kind: pgd, extractor: cnn, items: pairs}\n"
     "defenses:\n  r: {kind: reconstruction}\n",
     "defenses.r.attacks: no attack of this study goes through a vbpr or amr recommender"),
    (GOOD + "defenses:\n  j: {kind: jpeg, params: {eot_samples: 4}}\n",
     "defenses.j.params.eot_samples: unknown jpeg parameter 'eot_samples' (it takes none)."),
    (GOOD + "defenses:\n  rp: {kind: resize-pad, adaptive: true, params: {eot_samples: 0}}\n",
     "defenses.rp.params.eot_samples: EOT draws must be an integer >= 1, got 0."),
    (GOOD.replace("cnn: {epochs: 1}", "cnn: {epochs: 1}\n  rob: {training: pgd-at}")
     + "defenses:\n  at: {kind: adversarial-training, extractor: [rob], adaptive: true}\n",
     "defenses.at.adaptive: a robust extractor is attacked white-box by the study's attacks"),
    (GOOD + "defenses:\n  j: {kind: jpeg, attacks: [insa], adaptive: [nope]}\n",
     "defenses.j.adaptive[0]: 'nope' is not an attack this defense covers (known: insa)."),
    (GOOD + "  cs: {kind: csema, recommender: pipe}\n"
     "defenses:\n  j: {kind: jpeg, attacks: [insa, cs], adaptive: true}\n",
     "defenses.j.attacks[1]: 'cs' is a c-SEMA attack (a pasted patch, no gradient)"),
    (GOOD + "study: x\n", "duplicate key 'study'"),
    ("a: [1\n", "not valid YAML"),
])
def test_bad_configs_raise_one_error_naming_the_yaml_path(text, message):
    with pytest.raises(ConfigError) as info:
        load_study_text(text, source="s.yaml")
    assert message in str(info.value)
    assert str(info.value).count("\n") == 0


def test_several_problems_are_counted_in_the_one_error():
    text = GOOD.replace("{epochs: 1}", "{epochs: two, lr: -1}")
    with pytest.raises(ConfigError, match=r"\(and 1 more problem\(s\)\)"):
        load_study_text(text)


def test_profile_overrides_are_merged_and_validated():
    text = GOOD + "overrides:\n  quick:\n    extractors:\n      cnn: {epochs: 7}\n"
    assert load_study_text(text).extractors["cnn"].epochs == 7
    assert load_study_text(text, profile="default").extractors["cnn"].epochs == 1
    bad = GOOD + "overrides:\n  quick:\n    extractors:\n      cnn: {epoch: 7}\n"
    with pytest.raises(ConfigError, match=r"s.yaml:18: extractors.cnn.epoch: unknown key"):
        load_study_text(bad, source="s.yaml")


def test_the_printed_schema_names_every_key_with_its_description():
    text = schema_yaml()
    for model in _models():
        for name, field in model.model_fields.items():
            assert f"{name}:" in text, name
            assert field.description in text
    import yaml

    assert isinstance(yaml.safe_load(text.replace("<name>", "example")), dict)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such study file"):
        load_study(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["demo", "aip", "taamr", "denoise", "item2item"])
def test_shipped_studies_validate_and_dry_run(name, tmp_path):
    assert name in shipped_studies()
    listing = dry_run(find_study(name), tmp_path).render()
    assert "to do" in listing and "data" in listing
    for profile in ("quick", "default", "paper"):
        load_study(find_study(name), profile=profile)
