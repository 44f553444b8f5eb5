"""The § override tokeniser and the YAML/JSON path overrides (with the original's tokeniser bugs fixed)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from Engineering.configuration.overrides import apply_json_overrides, apply_yaml_overrides, convert, tokenise
from Engineering.errors import ConfigError


def _cfg() -> dict[str, Any]:
    return {
        "seed": 1701,
        "model": {"latent_dim": 128, "DiffAE": {"net_ch": 32}},
        "training": {"save_recon": True, "LRDecay": {"type1": {"decay_nepoch": 25, "decay_rate": 0.1}}},
        "eval": {"metrics2use": {"ssim": True, "msssim": False}},
    }


# Worked examples: tokens → tokeniser result → the config after the YAML overrides (the original's bugs fixed).
WORKED = [
    (["--training§LRDecay§type1§decay_rate", "0.15"], {"training§LRDecay§type1§decay_rate": 0.15},
     ("training", "LRDecay", "type1", "decay_rate"), 0.15),
    (["--training§prova", "testing"], {"training§prova": "testing"}, ("training", "prova"), "testing"),
    (["--model§latent_dim=64"], {"model§latent_dim": 64}, ("model", "latent_dim"), 64),
    (["--model§DiffAE§net_ch", "64"], {"model§DiffAE§net_ch": 64}, ("model", "DiffAE", "net_ch"), 64),
    (["--eval§metrics2use§msssim", "true"], {"eval§metrics2use§msssim": True}, ("eval", "metrics2use", "msssim"), True),
    (["--no-training§save_recon"], {"training§save_recon": False}, ("training", "save_recon"), False),
    (["--brand§new§path", "1e-3"], {"brand§new§path": 0.001}, ("brand", "new", "path"), 0.001),
    (["--seed", "2023"], {"seed": 2023}, ("seed",), 2023),
    (["--training§x", "y"], {"training§x": True}, ("training", "x"), True),
    (["--training§x", "[1,2]"], {"training§x": [1, 2]}, ("training", "x"), [1, 2]),  # the original kept the string
    (["--training§x", "-5"], {"training§x": -5}, ("training", "x"), -5),  # the original read -5 as a flag
]  # fmt: skip


@pytest.mark.parametrize("tokens, parsed, path, value", WORKED)
def test_worked_examples(tokens: list[str], parsed: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    result = tokenise(tokens)
    assert result == parsed
    assert [type(v) for v in result.values()] == [type(v) for v in parsed.values()]
    cfg = _cfg()
    assert apply_yaml_overrides(cfg, result) == []
    node: Any = cfg
    for part in path:
        node = node[part]
    assert node == value and type(node) is type(value)


def test_bare_flag_followed_by_an_option() -> None:
    assert tokenise(["--training§save_recon", "--seed", "7"]) == {"training§save_recon": True, "seed": 7}


def test_stray_value_after_a_known_flag_is_junk_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="imlatent"):
        assert tokenise(["True"]) == {"True": True}
    assert "override token 'True' has no leading '-'" in caplog.text


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (["--json§save_path", "/x/Results"], {"json§save_path": "/x/Results"}),
        (["--json§foldCSV", "0"], {"json§foldCSV": 0}),
        (["--json§DS_split_time", "True"], {"json§DS_split_time": True}),
        (["--json§DS_selected_primaries", "['LAX_2Ch']"], {"json§DS_selected_primaries": ["LAX_2Ch"]}),
    ],
)
def test_json_examples(tokens: list[str], expected: dict[str, Any]) -> None:
    assert tokenise(tokens) == expected


def test_bare_flags_strip_exactly_the_no_prefix() -> None:
    assert tokenise(["--normalise"]) == {"normalise": True}
    assert tokenise(["--no-noise"]) == {"noise": False}
    assert tokenise(["--no-normalise", "--x"]) == {"normalise": False, "x": True}


@pytest.mark.parametrize(
    "tokens, expected",
    [
        (["--a", "-5"], {"a": -5}),
        (["--a=-5"], {"a": -5}),
        (["--a", "-1e-3"], {"a": -0.001}),
        (["--a", "-.5"], {"a": -0.5}),
        (["--a", "-inf", "--b", "2"], {"a": -float("inf"), "b": 2}),
        (["--a", "-x"], {"a": True, "x": True}),
        (["--a=b=c"], {"a": "b=c"}),  # split at the first '='
        (["--a", "05"], {"a": 5}),
        (["--a", "+5"], {"a": 5}),
        (["--a", "None"], {"a": None}),
        (["--a", "{'dim1': 30}"], {"a": {"dim1": 30}}),
        (["--a", "(1, 2)"], {"a": (1, 2)}),
        (["--a", "n"], {"a": False}),
        (["--a", "1"], {"a": 1}),
        (["--a", "LAX_2Ch"], {"a": "LAX_2Ch"}),
        (["--a"], {"a": True}),
    ],
)
def test_value_conversion(tokens: list[str], expected: dict[str, Any]) -> None:
    result = tokenise(tokens)
    assert result == expected
    assert [type(v) for v in result.values()] == [type(v) for v in expected.values()]


def test_malformed_literal_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"override --training§x: value '\[1,2' looks like a Python list"):
        tokenise(["--training§x", "[1,2"])
    with pytest.raises(ConfigError, match=r"override --json§DS_sanity_filters: value '\{dim1: 30\}'"):
        convert("{dim1: 30}", "json§DS_sanity_filters")


def test_empty_key_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"override token '--=5' has no key name"):
        tokenise(["--=5"])


def test_near_miss_warns_and_creates(caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg()
    with caplog.at_level(logging.WARNING, logger="imlatent"):
        warnings = apply_yaml_overrides(cfg, {"model§latnt_dim": 3, "sed": 2})
    assert warnings == [
        "model§latnt_dim: no such key 'latnt_dim' under 'model'; did you mean 'latent_dim'? creating it",
        "sed: no such key 'sed' at the top level of the YAML config; did you mean 'seed'? creating it",
    ]
    assert cfg["model"]["latnt_dim"] == 3 and cfg["sed"] == 2
    assert "did you mean 'latent_dim'" in caplog.text


def test_non_dict_intermediate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"override --seed§x: YAML config key 'seed' holds int 1701, not a mapping"):
        apply_yaml_overrides(_cfg(), {"seed§x": 1})
    # a later override of a parent with a scalar, then of its child
    with pytest.raises(ConfigError, match=r"key 'model§DiffAE' holds int 5, not a mapping; cannot set 'net_ch'"):
        apply_yaml_overrides(_cfg(), tokenise(["--model§DiffAE", "5", "--model§DiffAE§net_ch", "3"]))


def test_yaml_overrides_skip_json_keys_and_vice_versa() -> None:
    overrides = tokenise(["--json§save_path", "/x", "--seed", "3"])
    cfg, js = _cfg(), {"save_path": "../Results"}
    apply_yaml_overrides(cfg, overrides)
    apply_json_overrides(js, overrides)
    assert cfg["seed"] == 3 and "json" not in cfg and js == {"save_path": "/x"}


def test_json_overrides_are_nested() -> None:
    js = {"DS_sanity_filters": {"dim1": 50}, "save_path": "../Results"}
    assert apply_json_overrides(js, tokenise(["--json§DS_sanity_filters§dim1", "30"])) == []
    assert js == {"DS_sanity_filters": {"dim1": 30}, "save_path": "../Results"}
    apply_json_overrides(js, {"json§fulltrainID": "X", "json§DS_phenotypes§cols": "a,b"})
    assert js["fulltrainID"] == "X" and js["DS_phenotypes"] == {"cols": "a,b"}


def test_json_near_miss_and_non_dict() -> None:
    js = {"DS_sanity_filters": {"dim1": 50}, "save_path": "../Results"}
    warnings = apply_json_overrides(js, {"json§DS_sanity_filter§dim1": 30})
    assert warnings == [
        "json§DS_sanity_filter§dim1: no such key 'DS_sanity_filter' at the top level of the data JSON; "
        "did you mean 'DS_sanity_filters'? creating it"
    ]
    with pytest.raises(ConfigError, match=r"override --json§save_path§x: data JSON key 'save_path' holds str"):
        apply_json_overrides(js, {"json§save_path§x": 1})
    with pytest.raises(ConfigError, match=r"override --json§: empty path component"):
        apply_json_overrides(js, {"json§": 1})
