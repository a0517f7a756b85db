"""The bounded YAML loader: alias bombs, huge and deep documents are refused with one line that
names the file and the line; ordinary documents load as ``yaml.safe_load`` loads them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from varsec.errors import ConfigError
from varsec.study import yamlfile
from varsec.study.commands import find_study, shipped_studies
from varsec.study.schema import load_study
from varsec.study.yamlfile import MAX_ALIAS_NODES, MAX_BYTES, MAX_NODES, load_yaml, load_yaml_text

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from yaml_bomb import bomb_text


def _one_line_error(call, *args):
    with pytest.raises(ConfigError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_nine_level_billion_laughs_is_refused_by_the_alias_budget(tmp_path):
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(bomb_text(9), encoding="utf-8")
    assert len(bomb.read_bytes()) < 400
    message = _one_line_error(load_study, bomb)
    # level f (line 7) aliases level e: 1 + 9 * 7,381 = 66,430 nodes
    assert message.startswith(f"{bomb}:7: alias *e expands to 66,430 YAML nodes")
    assert f"more than the {MAX_ALIAS_NODES:,} one alias may build" in message


def test_the_bomb_is_refused_by_the_cli_in_one_line(tmp_path, capsys):
    from varsec.cli import main

    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(bomb_text(9), encoding="utf-8")
    assert main(["run", str(bomb), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bomb}:7: alias *e expands")
    assert not (tmp_path / "runs").exists()


def test_many_small_aliases_are_refused_by_the_total_budget():
    four = "".join(bomb_text(4).splitlines(True)[1:])  # a..d: d expands to 7,381 nodes
    many = four + "x: [" + ", ".join(["*d"] * 14) + "]\n"
    message = _one_line_error(load_yaml_text, many, "m.yaml")
    assert message.startswith("m.yaml:5: alias *d brings the document over the "
                              f"{MAX_NODES:,} YAML nodes")


def test_a_document_of_too_many_plain_nodes_stops_at_the_budget():
    text = "k: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n"
    message = _one_line_error(load_yaml_text, text, "n.yaml")
    assert message.startswith("n.yaml:1: this node brings the document over the")


def test_a_file_larger_than_the_size_limit_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("study: x\n" + "#" * MAX_BYTES + "\n", encoding="utf-8")
    message = _one_line_error(load_yaml, big)
    assert message.startswith(f"{big}: ") and f"more than the {MAX_BYTES:,}" in message
    assert "more than the" in _one_line_error(load_yaml_text, big.read_text(), "big.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("a: " + "[" * 80 + "]" * 80 + "\n", "d.yaml:1: this node nests the document deeper than 64"),
    ("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 80)),
     "d.yaml:63: alias *a61 nests the document deeper than 64 levels."),
    ("a: &x [1, *x]\n", "d.yaml:1: alias *x refers to a node that contains it"),
    ("a: &x {b: {<<: *x}}\n", "d.yaml:1: alias *x refers to a node that contains it"),
    ("a: [*nope]\n", "d.yaml:1: alias *nope refers to no anchor defined before it."),
    ("a: {<<: 3}\n", "d.yaml:1: a merge key '<<' takes a mapping or a list of mappings."),
    ("? [1, 2]\n: 3\n", "d.yaml:1: mapping keys must be plain names, got a sequence."),
    ("a: 1\nb:\n  c: 2\n  c: 3\n", "d.yaml:4: b.c: duplicate key 'c'."),
    ("a: !!python/object:os.system {}\nb: !!python/name:os.system ''\n",
     "d.yaml:2: could not determine a constructor"),
])
def test_bad_documents_are_one_line_errors_with_the_line(text, message):
    assert message in _one_line_error(load_yaml_text, text, "d.yaml")


def test_aliases_and_merge_keys_load_as_yaml_safe_load_loads_them():
    text = ("base: &base {epochs: 1, lr: 0.1}\n"
            "other: &other {lr: 0.5, seed: 3}\n"
            "a: {<<: *base, epochs: 2}\n"
            "b: {<<: [*base, *other]}\n"
            "c: [*base, *base]\n")
    data, lines = load_yaml_text(text)
    expected = yaml.safe_load(text)
    assert {k: v for k, v in data.items() if k != "b"} == \
        {k: v for k, v in expected.items() if k != "b"}
    assert data["a"] == {"epochs": 2, "lr": 0.1}  # an explicit key overrides the merged one
    # the YAML merge spec: a mapping earlier in the list overrides later ones (PyYAML's own
    # choice depends on the identity of the key strings)
    assert data["b"] == {"epochs": 1, "lr": 0.1, "seed": 3}
    data["c"][0]["epochs"] = 9  # every alias is its own copy
    assert data["c"][1]["epochs"] == 1 and data["base"]["epochs"] == 1
    assert lines[("a", "epochs")] == 3 and lines[("a", "lr")] == 1
    assert lines[("c",)] == 5 and lines[("c", 1, "lr")] == 1  # inside an alias: its anchor
    assert lines.get(("c", 2)) is None and lines.get(("a", "nope")) is None


def test_line_numbers_are_kept_per_source_node_not_per_expanded_path():
    text = "".join(bomb_text(4).splitlines(True)[1:]) + "x: [*d, *d, *d, *d, *d, *d, *d, *d]\n"
    data, lines = load_yaml_text(text)
    assert len(data["x"]) == 8 and len(data["x"][7][8][8]) == 9  # 8 x 7,381 nodes expanded
    assert lines[("x", 7, 8, 8, 0)] == 1  # found by walking the nodes: level a is on line 1
    assert len(lines) < 100  # one path per source node


@pytest.mark.parametrize("name", ["demo", "aip", "taamr", "denoise", "item2item"])
def test_shipped_studies_load_exactly_as_yaml_safe_load_loads_them(name):
    assert name in shipped_studies()
    path = find_study(name)
    data, lines = load_yaml(path)
    assert data == yaml.safe_load(path.read_text(encoding="utf-8"))
    text = path.read_text(encoding="utf-8").splitlines()
    for key in data:  # every top-level key's line is the line that spells it
        assert text[lines[(key,)] - 1].startswith(f"{key}:")


def test_the_pure_python_parser_applies_the_same_limits(monkeypatch):
    monkeypatch.setattr(yamlfile, "_LOADER", yaml.SafeLoader)
    message = _one_line_error(load_yaml_text, bomb_text(9), "p.yaml")
    assert message.startswith("p.yaml:7: alias *e expands to 66,430 YAML nodes")
    assert load_yaml_text("a: &x {b: 1}\nc: *x\n")[0] == {"a": {"b": 1}, "c": {"b": 1}}
