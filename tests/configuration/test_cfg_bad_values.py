"""Bad settings are refused when the configuration is built: one line naming the setting, the value and what is
allowed, exit code 2, no traceback, and no folder or file created.

``CASES`` runs each bad value through the executor entry (``run_guarded(main)``, as ``Executors/main_*.py`` do) on
the demo settings; the data folder does not even exist, because nothing may be read before the settings are
checked. Values that look wrong but are typed by the key they set are accepted (``test_values_typed_by_key``).
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from Engineering.configuration import make_run_name, resolve
from Engineering.engines.base import OPTIMISERS, UNAVAILABLE_OPTIMISERS, check_optimiser
from Engineering.engines.console import LIGHTNING_LOGGERS
from Engineering.engines.runner import main
from Engineering.errors import ConfigError, run_guarded
from tests.demo_args import demo_run_args

DEMO_JSON = Path("Configs/demo/dataNpath_demo.json")
DEMO_YAML = Path("Configs/config_v1.yaml")
THIRD_PARTY_LOGGERS = ("py.warnings", *LIGHTNING_LOGGERS)


def _args(*argv: str) -> Callable[[Path], list[str]]:
    return lambda tmp: list(argv)


def _json(**changes: object) -> Callable[[Path], list[str]]:
    """The demo data JSON with ``changes``, written to ``tmp/data.json``."""

    def build(tmp: Path) -> list[str]:
        path = tmp / "data.json"
        path.write_text(json.dumps({**json.loads(DEMO_JSON.read_text()), **changes}))
        return ["--datajson_path", str(path)]

    return build


def _yaml(text: str, name: str = "bad.yaml") -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        (tmp / name).write_text(text)
        return ["--configyml_path", str(tmp / name)]

    return build


def _yaml_edit(old: str, new: str) -> Callable[[Path], list[str]]:
    """config_v1.yaml with the text ``old`` replaced by ``new``."""
    text = DEMO_YAML.read_text()
    assert old in text
    return _yaml(text.replace(old, new))


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], list[str]]
    names: tuple[str, ...]  # substrings of the one error line: the setting, its file, the value, what is allowed
    script: str = "recon"


CASES = [
    Case("lr_nan", _args("--lr", "nan"), ("--lr nan", "finite number")),
    Case("num_epochs_zero", _args("--num_epochs", "0"), ("--num_epochs 0", "greater than or equal to 1")),
    Case("run_mode_7", _args("--run_mode", "7"), ("--run_mode 7", "one of 0, 1, 2, 3, 4")),
    Case("typo_option", _args("--batchsize", "3"), ("--batchsize", "did you mean --batch_size?")),
    Case("norm_type_typo", _args("--norm_type", "zcore"), ("--norm_type 'zcore'", "zscore")),
    Case("p_augment_above_one", _args("--p_augment", "2"), ("--p_augment 2.0", "less than or equal to 1")),
    Case("grad_clip_nan", _args("--grad_clip_val", "nan"), ("--grad_clip_val nan", "finite number")),
    Case("json_batch_size_text", _json(batch_size="abc"), ("data.json", "key batch_size", "'abc'", "integer")),
    Case("json_lr_nan", _json(lr=math.nan), ("data.json", "key lr", "nan", "finite number")),
    Case("json_bool_word", _json(is_complexDS="maybe"), ("data.json", "key is_complexDS", "'maybe'", "boolean")),
    Case("json_override_text", _args("--json§batch_size", "abc"), ("--json§batch_size", "'abc'", "integer")),
    Case("yaml_model_not_mapping", _yaml("model: 5\n"), ("bad.yaml", "key model = 5", "mapping")),
    Case("yaml_empty", _yaml("", "empty.yaml"), ("empty.yaml", "is empty", "mapping")),
    Case(
        "yaml_number_as_bad_text",
        _yaml_edit("log_freq: 50", "log_freq: often"),
        ("bad.yaml", "key training.log_freq = 'often'", "integer"),
    ),
    Case(
        "yaml_nan_number",
        _args("--training§LRDecay§type2§min_lr", "nan"),
        ("--training§LRDecay§type2§min_lr", "nan", "finite number"),
    ),
    Case(
        "yaml_unknown_nested_key",
        _args("--training§LRDecay§type1§decay_ratee", "0.2"),
        ("--training§LRDecay§type1§decay_ratee", "unknown key; valid: decay_nepoch, decay_rate"),
    ),
    Case("pythae_latent_zero", _args("--modelID", "0", "--model§latent_dim", "0"), ("--model§latent_dim 0",)),
    Case("pythae_latent_negative", _args("--modelID", "0", "--model§latent_dim", "-3"), ("--model§latent_dim -3",)),
    Case(
        "diffae_latent_zero",
        _args("--model§latent_dim", "0"),
        ("--model§latent_dim 0", "DiffAE needs a positive"),
        script="diffae",
    ),
    Case("mtadam", _args("--optimiserID", "4"), ("--optimiserID 4 (MTAdam)", "Lightning's optimiser step never")),
    Case("optimiser_unknown", _args("--optimiserID", "99"), ("--optimiserID 99", "unknown")),
    Case(
        "early_stopping_without_validation",
        _args("--early_stopping_patience", "3", "--run_mode", "0"),
        ("--early_stopping_patience 3", "run_mode 0"),
    ),
]


@pytest.fixture(autouse=True)
def _fresh_log_handlers():
    """The executor binds its console handler to the sys.stderr of its first call: rebind it per test (capsys).

    It also routes Python warnings and Lightning's loggers into its log: that is undone afterwards, so later tests
    see Python's and Lightning's own handling.
    """
    root = logging.getLogger("imlatent")
    saved = list(root.handlers)
    routed = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in THIRD_PARTY_LOGGERS}
    root.handlers = []
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers = saved
    logging.captureWarnings(False)
    for name, (handlers, propagate) in routed.items():
        logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate


def _argv(tmp: Path, case_args: list[str]) -> list[str]:
    """Tiny demo-run arguments pointing at folders under ``tmp`` that must stay absent."""
    return demo_run_args(tmp / "no_data", tmp / "results", 4, 16) + case_args


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_value_is_one_line_exit_2_and_no_folder(case: Case, tmp_path, repo_root, monkeypatch, capsys) -> None:
    monkeypatch.chdir(repo_root)
    argv = _argv(tmp_path, case.build(tmp_path))
    before = sorted(p.name for p in tmp_path.iterdir())
    capsys.readouterr()
    code = run_guarded(lambda a: main(case.script, a), argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("imlatent: error:")]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    for name in case.names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no results, TensorBoard or run folder


def test_debug_shows_the_exception(tmp_path, repo_root, monkeypatch) -> None:
    monkeypatch.chdir(repo_root)
    with pytest.raises(ConfigError, match=r"--run_mode 7"):
        run_guarded(lambda a: main("recon", a), _argv(tmp_path, ["--run_mode", "7", "--debug"]))


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["--run_mode", "7"], ["--batchsize", "3"]], ids=["run_mode", "typo"])
def test_real_executor_process(extra: list[str], tmp_path, repo_root) -> None:
    cmd = [sys.executable, "Executors/main_recon.py", *_argv(tmp_path, extra)]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("imlatent: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert extra[0] in lines[0] and not list(tmp_path.iterdir())


def test_values_typed_by_key(repo_root, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(repo_root)
    rc = resolve("diffae", ["--json§fulltrainID", "f"])
    assert rc.cfg is not None and rc.cfg.run.fulltrainID == "f" and make_run_name(rc.cfg) == ("f", "f")
    base = json.loads(DEMO_JSON.read_text())
    path = tmp_path / "d.json"
    path.write_text(json.dumps({**base, "is_complexDS": "no", "batch_size": "4", "lr": "1e-3"}))
    yaml = tmp_path / "c.yaml"
    yaml.write_text(DEMO_YAML.read_text().replace("min_lr: 0", 'min_lr: "1e-6"'))
    cfg = resolve("recon", ["--datajson_path", str(path), "--configyml_path", str(yaml)]).cfg
    assert cfg is not None and cfg.data.is_complexDS is False and cfg.hparams["is_complexDS"] is False
    assert cfg.run.batch_size == 4 and cfg.training.lr == 1e-3
    assert cfg.training.lr_decay.type2.min_lr == 1e-6  # YAML reads 1e-6 as text; the key wants a number
    js = resolve("recon", ["--json§is_complexDS", "no", "--training§log_freq", "7"])
    assert js.cfg is not None and js.cfg.data.is_complexDS is False and js.cfg.training.log_freq == 7


@pytest.mark.parametrize("optimiser_id", sorted(OPTIMISERS))
def test_optimiser_check_follows_what_build_optimiser_supports(optimiser_id: int) -> None:
    if optimiser_id in UNAVAILABLE_OPTIMISERS:
        with pytest.raises(
            ConfigError, match=rf"--optimiserID {optimiser_id} \({OPTIMISERS[optimiser_id]}\) cannot be"
        ):
            check_optimiser(optimiser_id)
    else:
        check_optimiser(optimiser_id)  # DeepSpeed ids are built only under a DeepSpeed strategy, checked elsewhere
