"""Methods a study's factory builds (``kind: external``, ``backbone: external``): built and run
like the registered ones (the same numbers when the factory builds the same method), keyed by
their factory, arguments and version, and every bad factory, every white-box attack on a
query-only model and every bad query budget stopped before compute with one line."""

from __future__ import annotations

import pytest
import torch
from study_standins import TINY_MODELS, dry_run_error, tiny_data

from varsec.study.plan import plan_study
from varsec.study.runner import run_study
from varsec.study.schema import load_study_text
from varsec.study.stages import override_stage

VBPR_PARAMS = "{factors: 8, visual_factors: 8, epochs: 2, early_stopping: false}"
STUDY = f"""
study: ext
threads: 1
extractors:
  emb: {{backbone: external, factory: "external_factories:embedder", backbone_options: {{dim: 8}}}}
recommenders:
  bpr: {{kind: bpr-mf, params: {{factors: 8, epochs: 2, early_stopping: false}}}}
  vbpr: {{kind: vbpr, extractor: emb, params: {VBPR_PARAMS}}}
  mine: {{kind: external, factory: "varsec.recsys.vbpr:VBPR", extractor: emb,
         params: {VBPR_PARAMS}}}
  pipe: {{kind: two-stage, first_stage: bpr, ranker: vbpr, k: 20}}
  pipe-mine: {{kind: two-stage, first_stage: bpr, ranker: mine, k: 20}}
attacks:
  insa: {{kind: insa, recommender: [pipe, pipe-mine], eps: [32], steps: 2, n_items: 4,
         params: {{lr: 16}}}}
defenses:
  jpeg: {{kind: jpeg, strengths: [50], attacks: [insa], adaptive: true}}
  own-jpeg: {{kind: external, factory: "varsec.defenses.jpeg:JPEG", params: {{quality: 50}},
             attacks: [insa], adaptive: true}}
evaluation:
  protocols: [{{kind: full}}]
  cold_items: 4
  bootstrap: 0
"""


@pytest.fixture(scope="module")
def external_run(tmp_path_factory):
    """The study on the tiny stand-in data; every other stage is real (the external extractor
    included)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with override_stage("data", tiny_data):
            return run_study(load_study_text(STUDY), tmp_path_factory.mktemp("ext"), log=None)
    finally:
        torch.set_num_threads(before)


def _values(table, **labels):
    rows = table
    for key, value in labels.items():
        rows = rows[rows[key] == value]
    rows = rows[rows.metric != "feature_loss"]  # measured on the extractor, not the model
    keyed = rows.set_index(["metric", "k", "protocol", "attack", "eps"])["value"]
    return keyed.sort_index()


def test_an_external_factory_that_builds_vbpr_gives_vbpr_s_numbers(external_run):
    table = external_run.table
    assert all(s.ok for s in external_run.statuses.values())
    for ours, theirs in (("vbpr", "mine"), ("pipe", "pipe-mine")):
        mine = _values(table[table.defense == "none"], recommender=theirs)
        assert len(mine) > 10
        assert mine.equals(_values(table[table.defense == "none"], recommender=ours))


def test_an_external_input_transform_defends_like_the_registered_one(external_run):
    table = external_run.table
    for model in ("pipe", "pipe-mine"):
        registered = _values(table, recommender=model, defense="jpeg=50")
        external = _values(table, recommender=model, defense="own-jpeg")
        assert len(external) > 10 and external.equals(registered)
        assert "insa+adaptive" in set(external.index.get_level_values("attack"))


def test_an_external_extractor_feeds_its_models_and_reloads_with_its_weights(external_run):
    import numpy as np

    from varsec.study.builtin.common import features_of

    stage = external_run.plan.of_kind("extractor")[0]
    output = _output(external_run, stage)
    features = np.load(output.file("features.npy"))
    data = _output(external_run, external_run.plan.of_kind("data")[0])
    images = np.load(data.file("dataset") / "images.npy", mmap_mode="r")[:5]
    assert features.shape[1] == 8  # the factory's dim
    assert np.allclose(features_of(output, np.asarray(images)), features[:5], atol=1e-6)


def _output(run, stage):
    from varsec.study.cache import StageCache

    return StageCache(run.out).output(stage, run.plan.by_key)


# -- stage keys -----------------------------------------------------------------------------------
def _keys(text: str) -> dict[str, str]:
    return {s.name: s.key for s in plan_study(load_study_text(text)).stages}


def test_the_factory_version_and_arguments_key_the_external_stages_only():
    plan = plan_study(load_study_text(STUDY))
    base = {s.name: s.key for s in plan.stages}
    bumped = _keys(STUDY.replace('factory: "varsec.recsys.vbpr:VBPR",',
                                 'factory: "varsec.recsys.vbpr:VBPR", version: "2024-06",'))
    changed = {name for name in base if base[name] != bumped[name]}
    downstream = plan.downstream([base["recommender mine (seed 0)"]])
    assert changed == {s.name for s in plan.stages if s.key in downstream}  # mine, what uses it
    assert "recommender vbpr (seed 0)" not in changed and len(changed) > 5
    wider = _keys(STUDY.replace("backbone_options: {dim: 8}", "backbone_options: {dim: 9}"))
    assert wider["extractor emb (seed 0)"] != base["extractor emb (seed 0)"]


def test_the_external_stage_configs_hold_factory_version_and_package():
    config = load_study_text(STUDY.replace('factory: "varsec.recsys.vbpr:VBPR",',
                                           'factory: "varsec.recsys.vbpr:VBPR", version: v3,'))
    stages = {s.labels.get("recommender"): s for s in plan_study(config).of_kind("recommender")}
    assert stages["mine"].config["factory"] == "varsec.recsys.vbpr:VBPR"
    assert stages["mine"].config["version"] == "v3"
    assert "factory" not in stages["vbpr"].config and "version" not in stages["vbpr"].config
    extractor = plan_study(config).of_kind("extractor")[0].config
    assert extractor["factory"] == "external_factories:embedder" and extractor["training"] == "none"
    assert "package" not in extractor  # a module of no installed distribution


# -- bad factories, one line each, before compute ----------------------------------------------
REC = "  mine: {kind: external, factory: FACTORY, params: {}}\n"
SMALL = "study: s\nextractors:\n  cnn: {epochs: 1}\nrecommenders:\n"  # models from line 5


@pytest.mark.parametrize(("factory", "where", "message"), [
    ('"nowhere_mod:build"', "recommenders.mine.factory",
     "factory 'nowhere_mod:build': module 'nowhere_mod' cannot be imported "
     "(ModuleNotFoundError: No module named 'nowhere_mod')."),
    ('"external_factories:nothing"', "recommenders.mine.factory",
     "factory 'external_factories:nothing': external_factories has no attribute 'nothing'."),
    ('"external_factories:NOT_CALLABLE"', "recommenders.mine.factory",
     "factory 'external_factories:NOT_CALLABLE' is a int, not a callable"),
    ('"external_factories:broken"', "recommenders.mine.factory",
     "factory 'external_factories:broken' failed when called with seed=0, device='cpu': "
     "RuntimeError: weights file missing."),
    ('"external_factories:returns_dict"', "recommenders.mine.factory",
     "factory 'external_factories:returns_dict' built a dict, not a varsec Recommender"),
    ('"external_factories:embedder"', "recommenders.mine.factory",
     "factory 'external_factories:embedder' built a Embedder, not a varsec Recommender"),
    ('"external_factories:NoCheckpoint"', "recommenders.mine.factory",
     "factory 'external_factories:NoCheckpoint' built a NoCheckpoint, which does not "
     "implement _build (see varsec.recsys.Recommender)."),
    ('"no-colon"', "recommenders.mine.factory",
     "a factory is 'package.module:callable'"),
])
def test_a_bad_recommender_factory_is_one_line_with_its_path(factory, where, message, tmp_path,
                                                             capsys):
    line = dry_run_error(tmp_path, capsys, SMALL + REC.replace("FACTORY", factory))
    assert f"s.yaml:5: {where}: " in line and message in line


@pytest.mark.parametrize(("entry", "where", "message"), [
    ("  mine: {kind: external}\n", "recommenders.mine.factory",
     "kind: external needs factory: 'package.module:callable' that builds it."),
    ('  mine: {kind: bpr-mf, factory: "external_factories:embedder"}\n',
     "recommenders.mine.factory", "only kind: external is built by a factory; this kind is "
     "'bpr-mf'"),
    ('  mine: {kind: external, factory: "varsec.recsys.vbpr:VBPR", params: {factorz: 3}}\n',
     "recommenders.mine.factory", "factory 'varsec.recsys.vbpr:VBPR' refused its params: VBPR "
     "has no parameter 'factorz'"),
    ('  mine: {kind: external, factory: "varsec.recsys.vbpr:VBPR", extractor: cnn, '
     'params: {seed: 3}}\n',
     "recommenders.mine.params.seed", "seed is set by the study (seeds / device), not per "
     "model."),
    ('  mine: {kind: external, factory: "varsec.recsys.vbpr:VBPR"}\n',
     "recommenders.mine.extractor", "a VBPR (external) recommender needs an extractor"),
])
def test_a_bad_external_recommender_section_is_one_line(entry, where, message, tmp_path, capsys):
    line = dry_run_error(tmp_path, capsys, SMALL + entry)
    assert f"s.yaml:5: {where}: " in line and message in line


EXT = "study: s\nextractors:\n"  # the extractor on line 3


@pytest.mark.parametrize(("entry", "where", "message"), [
    ('  emb: {backbone: external, factory: "external_factories:returns_dict"}\n',
     "extractors.emb.factory", "built a dict, not a varsec Backbone"),
    ('  emb: {backbone: external, factory: "external_factories:embedder", training: pgd-at}\n',
     "extractors.emb.training", "an external backbone is used as its factory builds it (varsec "
     "does not train it); set training: none."),
    ('  emb: {backbone: external, factory: "external_factories:embedder", checkpoint: a.pt}\n',
     "extractors.emb.checkpoint", "an external backbone comes from its factory"),
    ('  emb: {backbone: external, factory: "external_factories:embedder",\n'
     '        backbone_options: {width: 3}}\n', "extractors.emb.factory",
     "failed when called with width=3: TypeError"),
])
def test_a_bad_external_extractor_is_one_line(entry, where, message, tmp_path, capsys):
    line = dry_run_error(tmp_path, capsys, EXT + entry)
    assert f"s.yaml:3: {where}: " in line and message in line


def test_a_classifier_attack_on_an_external_backbone_without_logits_is_refused(tmp_path, capsys):
    text = EXT + ('  emb: {backbone: external, factory: "external_factories:embedder"}\n'
                  "attacks:\n  pgd: {kind: pgd, extractor: emb, items: all, eps: [8]}\n")
    line = dry_run_error(tmp_path, capsys, text)
    assert "s.yaml:5: attacks.pgd.extractor: a classifier attack needs logits; the external " \
           "backbone of 'emb' (Embedder) has no classification head" in line


DEFENDED = SMALL + "  bpr: {kind: bpr-mf}\n  vbpr: {kind: vbpr, extractor: cnn}\n" \
    "  pipe: {kind: two-stage, first_stage: bpr, ranker: vbpr}\n" \
    "attacks:\n  insa: {kind: insa, recommender: pipe, eps: [8]}\ndefenses:\n"  # line 11


@pytest.mark.parametrize(("entry", "where", "message"), [
    ('  own: {kind: external, factory: "external_factories:embedder"}\n', "defenses.own.factory",
     "built a Embedder, not a varsec input transform"),
    ('  own: {kind: external, factory: "varsec.defenses.jpeg:JPEG", strengths: [30, 50]}\n',
     "defenses.own.strengths", "an external defense runs as its factory builds it, at one "
     "level"),
    ('  own: {kind: external, factory: "varsec.defenses.jpeg:JPEG", params: {quality: 100}}\n',
     "defenses.own.factory", "refused its params: JPEG compression parameter quality must be "
     "an integer >= 1 and <= 95, got 100."),
])
def test_a_bad_external_defense_is_one_line(entry, where, message, tmp_path, capsys):
    line = dry_run_error(tmp_path, capsys, DEFENDED + entry)
    assert f"s.yaml:11: {where}: " in line and message in line


# -- what each rung needs -------------------------------------------------------------------------
QUERY_ONLY = SMALL + """  bpr: {kind: bpr-mf}
  shop: {kind: http, params: {url: "http://127.0.0.1:9"}}
  pipe: {kind: two-stage, first_stage: bpr, ranker: shop}
attacks:
"""  # the attack on line 9


@pytest.mark.parametrize(("attack", "kind"), [
    ("{kind: insa, recommender: pipe, eps: [32]}", "insa"),
    ("{kind: expa, recommender: pipe, eps: [32]}", "expa"),
    ("{kind: adam, objective: insa, recommender: pipe, eps: [32]}", "adam"),
])
def test_a_white_box_attack_on_a_query_only_model_is_one_line(attack, kind, tmp_path, capsys):
    line = dry_run_error(tmp_path, capsys, QUERY_ONLY + f"  a: {attack}\n")
    assert (f"s.yaml:9: attacks.a.kind: {kind} is a white-box attack: it backpropagates "
            "through 'shop', a query-only http model (scores, no gradients); audit it with a "
            "query-only attack (square on the insa or probe-rank objective) or csema.") in line


def test_the_query_only_rungs_and_a_transfer_evaluation_accept_a_query_only_model():
    text = QUERY_ONLY.replace("attacks:\n", "  vbpr: {kind: vbpr, extractor: cnn}\n"
                              "  sur: {kind: two-stage, first_stage: bpr, ranker: vbpr}\n"
                              "attacks:\n") + """\
  score: {kind: square, objective: insa, recommender: pipe, eps: [32], steps: 10}
  rank: {kind: square, objective: probe-rank, recommender: pipe, eps: [32], steps: 10}
  csema: {kind: csema, recommender: pipe}
  transfer: {kind: insa, recommender: sur, evaluate: [sur, pipe], eps: [32], params: {lr: 4}}
"""
    attacks = {s.labels["attack"] for s in plan_study(load_study_text(text)).of_kind("attack")}
    assert attacks == {"score", "rank", "csema", "transfer"}


def test_a_query_only_class_fact_is_read_from_what_the_factory_builds(tmp_path, capsys):
    text = SMALL + """  bpr: {kind: bpr-mf}
  shop: {kind: external, factory: "external_factories:QueryOnlyVBPR", extractor: cnn}
  pipe: {kind: two-stage, first_stage: bpr, ranker: shop}
attacks:
  a: {kind: insa, recommender: pipe, eps: [32]}
"""
    line = dry_run_error(tmp_path, capsys, text)
    assert "attacks.a.kind: insa is a white-box attack: it backpropagates through 'shop', a " \
           "query-only QueryOnlyVBPR (external) model" in line
    ok = text.replace("{kind: insa,", "{kind: square, objective: insa,")
    assert load_study_text(ok).attacks["a"].kind == "square"


@pytest.mark.parametrize(("change", "where", "message"), [
    ("steps: 0}", "attacks.rank.steps", "must be at least 1 for square, an iterative attack, "
                                         "got 0."),
    ("steps: 10.5}", "attacks.rank.steps", "input should be a valid integer, got a number with "
                                           "a fractional part (got 10.5)."),
    ("steps: 10, params: {probes: 80}}", "attacks.rank.params.probes",
     "80 probe accounts leave no other user to evaluate on: the quick profile simulates 80 "
     "users."),
])
def test_a_bad_query_budget_or_too_many_probes_is_one_line(change, where, message, tmp_path,
                                                           capsys):
    text = QUERY_ONLY.replace("study: s\n", "study: s\ndataset: {n_users: 80}\n") + (
        "  rank: {kind: square, objective: probe-rank, recommender: pipe, eps: [32], "
        "steps: 10}\n")
    line = dry_run_error(tmp_path, capsys, text.replace("steps: 10}", change))
    assert f"s.yaml:10: {where}: {message}" in line


def test_the_tiny_models_of_other_tests_are_untouched_by_the_external_fields():
    config = load_study_text("\nstudy: t\n" + TINY_MODELS)
    for stage in plan_study(config).of_kind("extractor", "recommender"):
        assert not {"factory", "version", "package"} & set(stage.config)
