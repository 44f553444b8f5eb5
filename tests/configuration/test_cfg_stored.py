"""Test and resume commands start from the configuration a run stored; explicit options override it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from Engineering.configuration import make_run_name, resolve, save_resolved
from Engineering.configuration.resolve import resolved_document
from Engineering.configuration.stored import CHECKPOINT_CONFIG_KEY, resolve_run, stored_config
from Engineering.errors import ConfigError

DEMO_JSON = "Configs/demo/dataNpath_demo.json"


@pytest.fixture
def run(repo_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A run folder as a training command leaves it: stored config, Checkpoints/ (its files are not read here)."""
    monkeypatch.chdir(repo_root)
    trained = resolve("diffae", ["--datajson_path", DEMO_JSON, f"--json§save_path={tmp_path}", "--ampmode", "32",
                                 "--trainID", "tiny", "--batch_size", "4", "--model§DiffAE§net_ch", "8"])  # fmt: skip
    folder = tmp_path / make_run_name(trained.cfg)[1]
    (folder / "Checkpoints").mkdir(parents=True)
    save_resolved(trained, folder / "resolved_config.yaml")
    return folder


def test_run_dir_alone_rebuilds_the_trained_configuration(run: Path) -> None:
    rc = resolve_run("diffae", ["--resume", "--run_mode", "2", "--run_dir", str(run)])
    hp = rc.hparams
    assert (hp.batch_size, hp.ampmode, hp.trainID, hp.save_path) == (4, "32", "tiny", str(run.parent))
    assert rc.config["model"]["DiffAE"]["net_ch"] == 8
    assert (hp.resume, hp.run_mode, hp.run_dir) == (True, 2, str(run))  # this invocation's options
    assert make_run_name(rc.cfg)[1] == run.name


def test_explicit_options_and_overrides_win_over_the_stored_ones(run: Path) -> None:
    argv = ["--resume", "--run_mode", "2", "--run_dir", str(run), "--batch_size", "1", "--model§DiffAE§net_ch", "16"]
    rc = resolve_run("diffae", argv)
    assert rc.hparams.batch_size == 1 and rc.config["model"]["DiffAE"]["net_ch"] == 16
    assert rc.hparams.ampmode == "32"  # not given: stored


def test_machine_settings_are_this_commands_own(run: Path) -> None:
    """A run trained under DDP on several devices is tested with this machine's settings, not the stored ones."""
    stored = run / "resolved_config.yaml"
    stored.write_text(
        stored.read_text().replace("ndevices: 0", "ndevices: 2").replace("num_workers: 8", "num_workers: 5")
    )
    assert "ndevices: 2" in stored.read_text() and "num_workers: 5" in stored.read_text()
    assert resolve_run("diffae", ["--resume", "--run_mode", "2", "--run_dir", str(run)]).hparams.ndevices == 0
    rc = resolve_run("diffae", ["--resume", "--run_mode", "2", "--run_dir", str(run), "--num_workers", "1"])
    assert (rc.hparams.ndevices, rc.hparams.num_workers) == (0, 1)


def test_derived_folder_is_found_or_the_closest_is_suggested(run: Path) -> None:
    base = ["--resume", "--run_mode", "2", "--datajson_path", DEMO_JSON, f"--json§save_path={run.parent}",
            "--trainID", "tiny"]  # fmt: skip
    with pytest.raises(ConfigError) as err:
        resolve_run("diffae", base)  # the default ampmode 16-mixed names another folder
    assert f"found {run.name}: add --ampmode 32, or pass --run_dir {run}" in str(err.value)
    rc = resolve_run("diffae", base + ["--ampmode", "32"])
    assert rc.hparams.batch_size == 4 and rc.hparams.run_dir == str(run)


def test_run_dir_needs_resume_and_excludes_load_model_4test(run: Path) -> None:
    with pytest.raises(ConfigError, match=r"--run_dir .* names a run to test or continue .*: add --resume"):
        resolve_run("diffae", ["--run_mode", "2", "--run_dir", str(run)])
    with pytest.raises(ConfigError, match=r"--run_dir and --load_model_4test both name a run"):
        resolve_run("diffae", ["--resume", "--run_dir", str(run), "--load_model_4test", str(run)])


def test_config_stored_in_a_checkpoint_is_used_without_the_yaml(run: Path) -> None:
    found = stored_config(run)
    assert found is not None
    document = resolved_document(found[0])
    (run / "resolved_config.yaml").unlink()
    assert stored_config(run) is None  # no YAML and no checkpoint: an older run
    torch.save({"state_dict": {}, CHECKPOINT_CONFIG_KEY: document}, run / "Checkpoints" / "last.ckpt")
    found = stored_config(run)
    assert found is not None
    stored, where = found
    assert where == f"checkpoint {run / 'Checkpoints' / 'last.ckpt'}" and stored.hparams.batch_size == 4


def test_runs_without_a_usable_stored_config_use_the_command_line(run: Path, caplog: pytest.LogCaptureFixture) -> None:
    (run / "resolved_config.yaml").write_text("hparams: {}\n", encoding="utf-8")  # an older, incomplete layout
    torch.save({"state_dict": {}, "hyper_parameters": {}}, run / "Checkpoints" / "last.ckpt")
    with caplog.at_level(logging.WARNING, logger="imlatent"):
        rc = resolve_run("diffae", ["--resume", "--run_mode", "2", "--run_dir", str(run)])
    assert rc.hparams.batch_size == 2  # the executor's default, as before stored configurations
    assert "expected keys script, argv" in caplog.text and "stores no readable configuration" in caplog.text
