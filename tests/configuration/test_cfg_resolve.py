"""Resolution of CLI + YAML + JSON + overrides, the saved resolved config, and the system resources."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from Engineering.configuration.resolve import (
    ResolvedConfig,
    load_resolved,
    resolve,
    save_resolved,
    system_resources,
)
from Engineering.errors import ConfigError

DEMO_JSON = "Configs/demo/dataNpath_demo.json"


@pytest.fixture
def at_root(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(repo_root)
    return repo_root


def _write_json(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("script, task", [("recon", 0), ("diffae", 1), ("latentcls", 2)])
def test_defaults_resolve_with_shipped_files(at_root: Path, script: str, task: int) -> None:
    rc = resolve(script, [])
    assert rc.hparams.taskID == task and rc.script == script
    assert rc.config["model"]["DiffAE"] == {"net_ch": 32, "sample_every_batches": 1000, "sample_size": 4}
    assert rc.hparams.DS_sanity_filters == {"dim1": 50} and rc.hparams.save_path == "../Results"
    assert not hasattr(rc.hparams, "config_params") and rc.overrides == {} and rc.argv == []


def test_precedence_default_cli_json_override(at_root: Path, tmp_path: Path) -> None:
    base = json.loads(Path(DEMO_JSON).read_text())
    assert resolve("diffae", ["--datajson_path", DEMO_JSON]).hparams.batch_size == 2
    assert resolve("diffae", ["--datajson_path", DEMO_JSON, "--batch_size", "4"]).hparams.batch_size == 4
    js = _write_json(tmp_path / "d.json", {**base, "batch_size": 8})
    assert resolve("diffae", ["--datajson_path", js, "--batch_size", "4"]).hparams.batch_size == 8
    rc = resolve("diffae", ["--datajson_path", js, "--batch_size", "4", "--json§batch_size", "16"])
    assert rc.hparams.batch_size == 16 and rc.datajson["batch_size"] == 16


def test_overrides_reach_config_and_json(at_root: Path) -> None:
    argv = ["--datajson_path", DEMO_JSON, "--seed", "7", "--model§DiffAE§net_ch", "64",
            "--json§DS_sanity_filters§dim1", "30", "--json§save_path", "/x/Results"]  # fmt: skip
    rc = resolve("diffae", argv)
    assert rc.config["seed"] == 7 and rc.config["model"]["DiffAE"]["net_ch"] == 64
    assert rc.hparams.DS_sanity_filters == {"dim1": 30} and rc.hparams.save_path == "/x/Results"
    assert rc.argv == argv and rc.overrides["model§DiffAE§net_ch"] == 64


def test_missing_files_name_the_path(at_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"YAML config Configs/nope\.yaml not found \(relative paths resolve"):
        resolve("recon", ["--configyml_path", "Configs/nope.yaml"])
    with pytest.raises(ConfigError, match=r"data JSON nope\.json not found"):
        resolve("recon", ["--datajson_path", "nope.json"])


def test_invalid_files_name_the_path(at_root: Path, tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("a: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"YAML config {bad_yaml} is not valid: "):
        resolve("recon", ["--configyml_path", str(bad_yaml)])
    list_yaml = tmp_path / "list.yaml"
    list_yaml.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"YAML config {list_yaml}: expected a mapping at the top level, found list"):
        resolve("recon", ["--configyml_path", str(list_yaml)])
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{'run_prefix': 1}", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"data JSON {bad_json} is not valid: Expecting property name"):
        resolve("recon", ["--datajson_path", str(bad_json)])
    with pytest.raises(ConfigError, match=r"data JSON .*a\.json: expected an object at the top level, found list"):
        resolve("recon", ["--datajson_path", _write_json(tmp_path / "a.json", [1])])  # type: ignore[arg-type]


def test_required_json_keys(at_root: Path, tmp_path: Path) -> None:
    js = _write_json(tmp_path / "d.json", {"run_prefix": "x", "datadir": "d"})
    with pytest.raises(
        ConfigError, match=rf"data JSON {js}: missing required key\(s\) foldCSV, save_path for taskID 0"
    ):
        resolve("recon", ["--datajson_path", js])
    rc = resolve("recon", ["--datajson_path", js, "--json§foldCSV", "0", "--json§save_path", "r"])
    assert rc.hparams.foldCSV == "0" and rc.hparams.save_path == "r"  # typed by the key: a file name
    with pytest.raises(ConfigError, match=r"--taskID 7: expected one of 0 \(pythae AE/VAE\), 1 \(DiffAE\)"):
        resolve("recon", ["--taskID", "7"])


def test_round_trip(at_root: Path, tmp_path: Path) -> None:
    rc = resolve("diffae", ["--datajson_path", DEMO_JSON, "--model§x", "(1, 2)", "--lr", "0.5", "--no-croppad"])
    rc.hparams.not_serialisable = object()
    out = tmp_path / "sub" / "resolved.yaml"
    save_resolved(rc, out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["resolved.yaml"]
    back = load_resolved(out)
    expected = {k: v for k, v in vars(rc.hparams).items() if k != "not_serialisable"}
    assert vars(back.hparams) == expected and back.hparams.ploss_level == math.inf
    rc.config["model"]["x"] = [1, 2]  # tuples are stored as lists
    assert back.config == rc.config and back.datajson == rc.datajson
    assert back.script == "diffae" and back.argv == rc.argv and back.overrides == {"model§x": [1, 2]}


def test_replay_applies_new_overrides(at_root: Path, tmp_path: Path) -> None:
    rc = resolve("diffae", ["--datajson_path", DEMO_JSON, "--batch_size", "3", "--seed", "5"])
    saved = tmp_path / "resolved.yaml"
    save_resolved(rc, saved)
    replay = resolve("diffae", ["--resolved_config", str(saved), "--run_mode", "2", "--json§save_path", "elsewhere"])
    assert replay.hparams.batch_size == 3 and replay.config["seed"] == 5
    assert replay.hparams.run_mode == 2 and replay.hparams.save_path == "elsewhere"
    assert replay.hparams.resolved_config == str(saved)
    with pytest.raises(ConfigError, match=r"saved for script 'diffae', cannot replay it with 'recon'"):
        resolve("recon", ["--resolved_config", str(saved)])


def test_bad_resolved_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"resolved config .*none\.yaml not found"):
        load_resolved(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("script: recon\nhparams: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"expected keys script, argv, hparams, config, datajson; found script, hpar"):
        load_resolved(bad)
    rc = ResolvedConfig("recon", argparse.Namespace(a=1), {}, {})
    save_resolved(rc, bad)
    bad.write_text(bad.read_text().replace("script: recon", "script: other"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"script 'other' is not one of recon, diffae, latentcls"):
        load_resolved(bad)


MB = 1024 * 1024


@pytest.mark.parametrize(
    "env, mem_mb, cpus",
    [
        ({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_PER_TASK": "4", "SLURM_JOB_CPUS_PER_NODE": "8(x2)"}, 4000, 4),
        ({"SLURM_MEM_PER_NODE": "16000", "SLURM_CPUS_PER_TASK": "4"}, 16000, 4),
        ({"SLURM_MEM_PER_CPU": "1000"}, 1000, None),
        ({"SLURM_CPUS_PER_TASK": "2"}, None, 2),
        ({}, None, None),
    ],
)
def test_slurm_resources_any_combination(
    env: dict, mem_mb: int | None, cpus: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    resolve_module = importlib.import_module("Engineering.configuration.resolve")  # the module, not the function
    # the machine's free memory moves between calls on a busy host: pin it for this comparison
    monkeypatch.setattr(resolve_module, "_machine_resources", lambda: (7 * 1024 * MB, 3))
    machine = system_resources({})
    res = system_resources({"SLURM_JOB_ID": "1", "PATH": "/bin", **env})
    assert res.mem_limit_bytes == (mem_mb * MB if mem_mb else machine.mem_limit_bytes)
    assert res.cpus_avail == (cpus or machine.cpus_avail)
    assert "PATH" not in res.slurm_env and res.slurm_env["SLURM_JOB_ID"] == "1"


def test_slurm_derived_values() -> None:
    env = {"SLURM_JOB_ID": "1", "SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_PER_TASK": "4",
           "SLURM_JOB_CPUS_PER_NODE": "8(x2)"}  # fmt: skip
    res = system_resources(env)
    assert res.slurm_env["COMPUTED_MEM_PER_TASK"] == "4000" and res.slurm_env["COMPUTED_MEM_PER_NODE"] == "8000"


def test_machine_resources_with_and_without_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    res = system_resources({})
    assert res.slurm_env == {} and res.cpus_avail >= 1 and res.mem_limit_bytes and res.mem_limit_bytes > 0
    monkeypatch.setitem(__import__("sys").modules, "psutil", None)
    bare = system_resources({})
    assert bare.cpus_avail >= 1 and bare.mem_limit_bytes and bare.mem_limit_bytes > 0


def test_stray_value_after_bool_option_is_junk(at_root: Path) -> None:
    rc = resolve("recon", ["--resume", "True"])
    assert rc.hparams.resume is True and rc.config["True"] is True
